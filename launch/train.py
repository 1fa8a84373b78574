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
JAX_NUM_PROCESSES / JAX_PROCESS_ID variables).
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file("config", None, "config file:arguments", lock_config=True)
_WORKDIR = flags.DEFINE_string("workdir", None, "run directory (checkpoints, metrics, predictions)")
_MULTIHOST = flags.DEFINE_bool("multihost", False, "call jax.distributed.initialize() first")
flags.mark_flags_as_required(["config", "workdir"])


def main(argv: list[str]) -> None:
    del argv
    logging.set_verbosity(logging.WARNING)  # Orbax logs every save at INFO
    from vlpet_jax.train.xla_flags import apply_run_flags

    apply_run_flags(_CONFIG.value)  # before jax starts its backend
    import jax

    if _MULTIHOST.value:
        jax.distributed.initialize()
    from vlpet_jax.train.trainer import train

    metrics = train(_CONFIG.value, _WORKDIR.value)
    if jax.process_index() == 0 and metrics:
        print("[train] final " + " ".join(f"{k}={v:.2f}" for k, v in metrics.items()))


if __name__ == "__main__":
    app.run(main)
