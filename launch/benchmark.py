"""Benchmarks: results to a JSON file, a Markdown table and a PNG plot (summarised in README.md).

    python -m launch.benchmark --out=benchmarks/results.json          # every suite
    python -m launch.benchmark --suites=train,optstate,scaling --merge  # replace only these
    python -m launch.benchmark --suites=train,decode --sizes=base --merge --readme=README.md

`--readme=README.md` also rewrites README.md's summary table (between the lines
`<!-- benchmark-table -->` and `<!-- /benchmark-table -->`) from the final records, so one command
produces the JSON, the PNG and the README table; the same block heads the Markdown file.

Suites:
  decode  tokens/s of our greedy and beam-5 search vs Hugging Face `generate`, same weights
          (tiny and base sizes, T5 and BART; batch 16, 56 tokens in, 20 out)
  load    load time and peak memory of reading a base-size checkpoint
  pipeline  examples/s of the input pipeline per task (synthetic benchmark, kind=both): per-file
          vs consolidated feature store, with and without the Prefetcher
  train   VL-PET-large train step on BART-base and T5-base sized models (random weights saved
          with Hugging Face `save_pretrained`, read by our loader): batch 16 of 20 text + 36 visual
          tokens (2048-d features + boxes) in, 10 target tokens out, dropout 0.1. Examples/s (from
          the fastest of `--train_repeats` timed steps after a warm-up step; the median is
          recorded too) and peak memory (resident-set peak during the steps minus the resident set
          once the framework is loaded; ours also XLA's buffer estimate) of our jitted trainer step with the frozen backbone in bf16 (`ours_bf16`)
          and fp32 (`ours_fp32`), our full fine-tuning (`ours_full_ft`), a PyTorch VL-PET
          reference (HF BART/T5 + the SPEC.md §3-4 modules in PyTorch, eager fp32, AdamW on the
          trainable set: `torch_vl_pet`) and HF PEFT LoRA on the same backbone (`peft_lora`).
          Before timing, ours and the PyTorch reference must compute the same loss on the same
          weights and batch (dropout off; relative 1e-4 in fp32, bf16-frozen within 2e-2 of
          fp32), or the suite fails. A `train_summary` record per family gives the ratios (ours /
          PyTorch, ours / PEFT, PET / full-FT step time), the model FLOPs counted three ways
          (analytic, jaxpr, XLA) and the MFU against the measured matmul rate. Each variant runs
          in its own process (`--train_isolate`), so its peak RSS is its own.
  optstate  optimiser-state bytes of every registered method (trainable leaves only, abstract
          shapes) and their share of full fine-tuning's
  scaling our step time vs batch size (4, 8, 16, 32) and vs text length (20, 40, 80, 160) on
          BART-base, with model FLOPs and MFU per point
The train and scaling suites also write a `matmul` record: this machine's jnp.dot rate (fp32,
bf16 inputs with f32 accumulation) and torch's fp32 rate on 2048x2048 matrices, the MFU
denominators. The PNG (ex/s bars, scaling curves) goes next to the JSON. A quick smoke run:

    python -m launch.benchmark --suites=train,scaling --train_size=tiny --train_batch=2 \
      --train_text_len=6 --train_vis_len=4 --train_target_len=3 --train_repeats=1 \
      --scaling_batch_sizes=2 --scaling_text_lengths=6 --fast_compile --out=/tmp/b/results.json
"""

from __future__ import annotations

import os
import sys
import tempfile

os.environ.setdefault("JAX_PLATFORMS", "cpu")

from absl import app, flags

from vlpet_jax.bench import report, summary, timing

SUITES = ("decode", "load", "pipeline", "train", "optstate", "scaling")
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
_TRAIN_SIZE = flags.DEFINE_enum(
    "train_size", "base", ["base", "tiny"], "train/optstate/scaling sizes"
)
_TRAIN_BATCH = flags.DEFINE_integer("train_batch", 16, "train suite: batch size")
_TRAIN_TEXT = flags.DEFINE_integer("train_text_len", 20, "train suite: text tokens in")
_TRAIN_VIS = flags.DEFINE_integer("train_vis_len", 36, "train suite: visual tokens in")
_TRAIN_TARGET = flags.DEFINE_integer("train_target_len", 10, "train suite: target tokens out")
_TRAIN_REPEATS = flags.DEFINE_integer("train_repeats", 3, "timed steps per measurement (median)")
_TRAIN_VARIANTS = flags.DEFINE_list(
    "train_variants", ["ours_bf16", "ours_fp32", "ours_full_ft", "torch_vl_pet", "peft_lora"],
    "train suite variants",
)  # fmt: skip
_TRAIN_ISOLATE = flags.DEFINE_bool("train_isolate", True, "one process per train variant")
_FAST_COMPILE = flags.DEFINE_bool(
    "fast_compile", False, "XLA backend optimisation level 0 (smoke runs; slower steps)"
)
_MATMUL_SIZE = flags.DEFINE_integer("matmul_size", 2048, "n of the n x n matmul-rate probe")
_SCALING_BATCHES = flags.DEFINE_list("scaling_batch_sizes", ["4", "8", "16", "32"], "batch sweep")
_SCALING_TEXT = flags.DEFINE_list("scaling_text_lengths", ["20", "40", "80", "160"], "text sweep")
_SCALING_VARIANTS = flags.DEFINE_list("scaling_variants", ["ours_fp32"], "ours_fp32 / ours_bf16")
_SCALING_FAMILIES = flags.DEFINE_list("scaling_families", ["bart"], "scaling suite families")
_OPTSTATE_METHODS = flags.DEFINE_list(
    "optstate_methods", [], "optstate suite: methods (default every registered one)"
)
_MERGE = flags.DEFINE_bool(
    "merge", False, "keep the records of suites not run now from the existing --out file"
)
_OUT = flags.DEFINE_string("out", "benchmarks/results.json", "where the JSON results go")
_README = flags.DEFINE_string(
    "readme", "", "rewrite this README's benchmark summary block from the results ('' = leave it)"
)


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
    if name in ("train", "optstate", "scaling"):
        from vlpet_jax.bench import train_step

        shapes = train_step.Shapes(
            batch_size=_TRAIN_BATCH.value, text_len=_TRAIN_TEXT.value,
            vis_len=_TRAIN_VIS.value, target_len=_TRAIN_TARGET.value,
        )  # fmt: skip
        size, fast = _TRAIN_SIZE.value, _FAST_COMPILE.value
        if name == "optstate":
            return train_step.run_optstate(_FAMILIES.value, size, _OPTSTATE_METHODS.value or None)
        if name == "train":
            return [
                record
                for family in _FAMILIES.value
                for record in train_step.run_train(
                    family,
                    size,
                    shapes,
                    repeats=_TRAIN_REPEATS.value,
                    variants=_TRAIN_VARIANTS.value,
                    isolate=_TRAIN_ISOLATE.value,
                    fast_compile=fast,
                    matmul_size=_MATMUL_SIZE.value,
                )
            ]
        return [
            record
            for family in _SCALING_FAMILIES.value
            for record in train_step.run_scaling(
                family,
                size,
                [int(b) for b in _SCALING_BATCHES.value],
                [int(t) for t in _SCALING_TEXT.value],
                _SCALING_VARIANTS.value,
                repeats=_TRAIN_REPEATS.value,
                base=shapes,
                fast_compile=fast,
                matmul_size=_MATMUL_SIZE.value,
            )
        ]
    raise app.UsageError(f"unknown suite {name!r}; known: {SUITES}")


def main(argv: list[str]) -> None:
    del argv
    unknown = [s for s in _SUITES.value if s not in SUITES]
    if unknown:
        raise app.UsageError(f"unknown suites {unknown}; known: {SUITES}")
    if _README.value:  # fail before hours of benchmarks, not after, if the markers are missing
        with open(_README.value) as f:
            summary.replace_readme_block(f.read(), "", _README.value)
    records = []
    if {"train", "scaling"} & set(_SUITES.value):
        from vlpet_jax.bench import train_step

        records.extend(train_step.matmul_records(_MATMUL_SIZE.value))
        print(f"[benchmark] {records[-1]}", flush=True)
    for suite in _SUITES.value:
        print(f"[benchmark] running {suite} ...", flush=True)
        suite_records = _run_suite(suite)
        for record in suite_records:
            print(f"[benchmark] {record}", flush=True)
        records.extend(suite_records)
    if _MERGE.value:
        records = report.merge_records(_OUT.value, records)
    machine = timing.machine_description()
    command = " ".join(["python -m launch.benchmark", *sys.argv[1:]])
    block = summary.readme_summary(
        records, machine, command, size=_TRAIN_SIZE.value, results_path=_OUT.value
    )
    md_path = report.write_results(records, machine, _OUT.value, summary=block)
    from vlpet_jax.bench import plot

    png_path = plot.write_plot(records, os.path.splitext(_OUT.value)[0] + ".png")
    print(f"[benchmark] wrote {_OUT.value}, {md_path}" + (f" and {png_path}" if png_path else ""))
    if _README.value:
        with open(_README.value) as f:
            readme = f.read()
        updated = summary.replace_readme_block(readme, block, _README.value)
        report.atomic_write_text(_README.value, updated)
        print(f"[benchmark] rewrote the summary block of {_README.value}")
    with open(md_path) as f:
        print(f.read())


if __name__ == "__main__":
    app.run(main)
