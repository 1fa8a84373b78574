"""Benchmarks: results to a JSON file and a Markdown table (summarised in README.md).

    python -m launch.benchmark --suites=decode,load --out=benchmarks/results.json

Suites:
  decode  tokens/s of our greedy and beam-5 search vs Hugging Face `generate`, same weights
          (tiny and base sizes, T5 and BART; batch 16, 56 tokens in, 20 out)
  load    load time and peak memory of reading a base-size checkpoint
  pipeline  examples/s of the input pipeline per task (synthetic benchmark, kind=both): per-file
          vs consolidated feature store, with and without the Prefetcher
"""

from __future__ import annotations

import os
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags

from vlpet_jax.bench import report, timing

SUITES = ("decode", "load", "pipeline")
_SUITES = flags.DEFINE_list("suites", list(SUITES), f"which benchmarks to run, of {SUITES}")
_SIZES = flags.DEFINE_list("sizes", ["tiny", "base"], "model sizes for the decode suite")
_FAMILIES = flags.DEFINE_list("families", ["t5", "bart"], "backbone families")
_PIPELINE_ROOT = flags.DEFINE_string(
    "pipeline_root",
    os.path.join(tempfile.gettempdir(), "vlpet_jax_pipeline_bench"),
    "pipeline suite: where the synthetic benchmark is generated once and reused",
)
_PIPELINE_BATCHES = flags.DEFINE_integer("pipeline_batches", 20, "timed batches per measurement")
_PIPELINE_BASE_BATCH = flags.DEFINE_integer(
    "pipeline_base_batch", 60, "base batch B (SPEC.md §6 per-task ratios)"
)
_OUT = flags.DEFINE_string("out", "benchmarks/results.json", "where the JSON results go")


def _run_suite(name: str) -> list[dict]:
    if name == "decode":
        from vlpet_jax.bench import decode_speed

        return [
            record
            for size in _SIZES.value
            for family in _FAMILIES.value
            for record in decode_speed.run(family, size)
        ]
    if name == "load":
        from vlpet_jax.bench import load_memory

        return [load_memory.run(family) for family in _FAMILIES.value]
    if name == "pipeline":
        from vlpet_jax.bench import input_pipeline

        root = os.path.join(_PIPELINE_ROOT.value, "synthetic-both-seed0")
        return input_pipeline.run(
            root, base_batch=_PIPELINE_BASE_BATCH.value, batches=_PIPELINE_BATCHES.value
        )
    raise app.UsageError(f"unknown suite {name!r}; known: {SUITES}")


def main(argv: list[str]) -> None:
    del argv
    records = []
    for suite in _SUITES.value:
        print(f"[benchmark] running {suite} ...", flush=True)
        suite_records = _run_suite(suite)
        for record in suite_records:
            print(f"[benchmark] {record}", flush=True)
        records.extend(suite_records)
    md_path = report.write_results(records, timing.machine_description(), _OUT.value)
    print(f"[benchmark] wrote {_OUT.value} and {md_path}")
    with open(md_path) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
