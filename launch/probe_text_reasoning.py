"""Does a tiny backbone answer the synthetic questions when the scene is given in words?

    python -m launch.probe_text_reasoning --workdir probe_run [--backbone t5_tiny] [--steps 400]

Generates (or reuses) the demo's synthetic benchmark under `<workdir>/data`, pretrains the tiny
backbone as the demo does but with each question's scene written into its input, and writes
`<workdir>/text_probe_<backbone>_<steps>.md`: per question type, the backbone's exact-match score
with the scene in words next to the text-only guess's. See
`vlpet_jax/demo/text_probe.py` for why this bounds what the demo's PET runs can learn.
"""

from __future__ import annotations

import os
import time

from absl import app, flags, logging

_WORKDIR = flags.DEFINE_string("workdir", "probe_run", "where the benchmark and table go")
_BACKBONE = flags.DEFINE_string("backbone", "t5_tiny", "a tiny backbone preset")
_STEPS = flags.DEFINE_integer("steps", 400, "pre-training steps (the demo's: 400)")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)
    from vlpet_jax.data import synthetic
    from vlpet_jax.demo import text_probe
    from vlpet_jax.demo.pipeline import DemoOptions
    from vlpet_jax.models import presets
    from vlpet_jax.train.metrics_log import MetricWriter

    if not presets.is_tiny(_BACKBONE.value):
        raise app.UsageError(
            f"--backbone must be a tiny preset (bart_tiny, t5_tiny), got {_BACKBONE.value!r}"
        )
    workdir = os.path.abspath(_WORKDIR.value)
    options = DemoOptions(workdir=workdir)
    data_root = os.path.join(workdir, "data")
    synthetic.ensure_benchmark(
        data_root, seed=options.seed, kind="image", **options.synthetic_sizes
    )
    name = f"text_probe_{_BACKBONE.value}_{_STEPS.value}"
    writer = MetricWriter(os.path.join(workdir, name), _STEPS.value)
    started = time.perf_counter()
    result = text_probe.probe(_BACKBONE.value, data_root, _STEPS.value, options.seed, writer)
    writer.close()
    table = result.table()
    out = os.path.join(workdir, f"{name}.md")
    with open(out, "w") as f:
        f.write(table + "\n")
    print(table)
    print(
        f"[probe] {_BACKBONE.value}, {_STEPS.value} steps: loss {result.losses[0]:.2f} -> "
        f"{result.losses[-1]:.2f}, {time.perf_counter() - started:.0f} s; wrote {out}"
    )


if __name__ == "__main__":
    app.run(main)
