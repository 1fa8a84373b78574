"""Evaluate a trained run (its latest or a given step) or an imported official checkpoint.

    python -m launch.evaluate --config configs/image_text.py:backbone=bart_base,method=vl_pet_large \
      --workdir /runs/bart_large [--step 12000]
    python -m launch.evaluate --config ... --workdir /runs/eval_official --params /runs/imported
    python -m launch.evaluate --config ... --workdir /runs/eval_shared --pet_dir /share/pet

Decodes every task's evaluation split with the config's settings (SPEC.md §7), writes
`<workdir>/predictions/eval_step_<N>/<task>_predictions.json` and `<workdir>/eval_metrics.json`.
"""

from __future__ import annotations

import json
import os

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file:arguments", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "the run directory")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_PARAMS = flags.DEFINE_string("params", None, "a `launch.convert` output to evaluate instead")
_PET_DIR = flags.DEFINE_string(
    "pet_dir",
    None,
    "a `launch.export` PET directory to evaluate instead (on the config's backbone)",
)
_MULTIHOST = flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() first")
_COORDINATOR = flags.DEFINE_string(
    "coordinator_address", None, "host:port of process 0 (implies --multihost; default: detected)"
)
_NUM_PROCESSES = flags.DEFINE_integer("num_processes", None, "processes in the job (multi-host)")
_PROCESS_ID = flags.DEFINE_integer("process_id", None, "this process's index (multi-host)")
# Checked in main rather than with mark_flags_as_required: tests run several launchers in one
# process, where another launcher's required flags would fail absl's global validation.
_REQUIRED = ("config", "workdir")


def main(argv: list[str]) -> None:
    missing = [name for name in _REQUIRED if flags.FLAGS[name].value is None]
    if missing:
        raise app.UsageError(f"missing required flags: {', '.join('--' + m for m in missing)}")
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    from vlpet_jax.train.xla_flags import apply_run_flags

    apply_run_flags(_CONFIG.value)  # before jax starts its backend
    import jax

    from vlpet_jax.train.multihost import initialize

    initialize(_MULTIHOST.value, _COORDINATOR.value, _NUM_PROCESSES.value, _PROCESS_ID.value)
    from vlpet_jax.train.trainer import Run, trained_params

    run = Run(_CONFIG.value, _WORKDIR.value)
    if _PARAMS.value:
        from vlpet_jax.checkpoints.official_save import restore_params

        params, step, name = restore_params(_PARAMS.value), 0, "official"
    elif _PET_DIR.value:
        from vlpet_jax.pet_export import load_pet

        params = load_pet(run.initial_params(), run.config, _PET_DIR.value)
        step, name = 0, "pet_dir"
    else:
        params, step = trained_params(run, _STEP.value)
        name = f"eval_step_{step}"
    metrics = run.evaluator().evaluate(params, os.path.join(run.workdir, "predictions", name))
    if jax.process_index() == 0:
        source = _PARAMS.value or _PET_DIR.value or run.workdir
        record = {"step": step, "source": source, "metrics": metrics}
        with open(os.path.join(run.workdir, "eval_metrics.json"), "w") as f:
            json.dump(record, f, indent=2)
        print("[evaluate] " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))


if __name__ == "__main__":
    app.run(main)
