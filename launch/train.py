"""Train a PET method on a frozen T5/BART (single host or many).

    python -m launch.train \
      --config configs/image_text.py:backbone=bart_base,method=vl_pet_large \
      --config.model.checkpoint=/ckpt/bart-base --config.data.root=/data/datasets \
      --workdir /runs/vlpet_bart

    # seconds on a CPU, on the built-in synthetic benchmark:
    python -m launch.train --config configs/image_text.py:backbone=bart_base,method=vl_pet_large,runlocal=True --workdir /tmp/run

Re-running the same command resumes from the last checkpoint in --workdir. Multi-host: run the
same command on every host with --multihost (jax.distributed.initialize reads the coordinator
from the cluster environment: TPU VM metadata, SLURM, or the JAX_COORDINATOR_ADDRESS /
JAX_NUM_PROCESSES / JAX_PROCESS_ID variables), or name it explicitly:

    python -m launch.train --config ... --workdir /shared/run --multihost \
      --coordinator_address=10.0.0.1:1234 --num_processes=2 --process_id=0   # 1 on the other
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file:arguments", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, predictions)")
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
    from vlpet_jax.train.trainer import train

    metrics = train(_CONFIG.value, _WORKDIR.value)
    if jax.process_index() == 0 and metrics:
        print("[train] final " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))


if __name__ == "__main__":
    app.run(main)
