#!/usr/bin/env bash
# Train on a Cloud TPU VM pod slice: every worker runs the same `launch.train --multihost`
# command; jax.distributed.initialize() finds the coordinator, the process count and this
# worker's index from the TPU VM metadata, and each process drives its host's TPU chips.
#
#   TPU_NAME=vlpet-v4-32 ZONE=us-central2-b WORKDIR=/mnt/shared/runs/bart_large \
#     bash launch/tpu_pod.sh \
#       --config configs/image_text.py:backbone=bart_base,method=vl_pet_large \
#       --config.model.checkpoint=/mnt/shared/ckpt/bart-base \
#       --config.data.root=/mnt/shared/datasets
#
# Arguments after the script name go to launch.train unchanged (quoted for the remote shell).
# Every worker needs: this repository at REPO_DIR with its virtualenv at REPO_DIR/.venv
# (`pip install -r requirements.txt` plus `jax[tpu]`), and the checkpoint and datasets at the
# same paths. WORKDIR must be one directory that all workers share (an NFS/Filestore mount or a
# gcsfuse-mounted bucket): checkpoints are written there by every host, metrics by host 0.
# Re-running the same command resumes from the last checkpoint; a preempted worker gets
# SIGTERM, and the run saves and stops.
# Optional: PROJECT (gcloud project), REPO_DIR (default ~/vlpet_jax), PYTHON (default python).
set -euo pipefail

: "${TPU_NAME:?set TPU_NAME to the TPU VM name}"
: "${ZONE:?set ZONE to the TPU VM zone}"
: "${WORKDIR:?set WORKDIR to a directory every worker shares}"
REPO_DIR="${REPO_DIR:-~/vlpet_jax}"
PYTHON="${PYTHON:-python}"

train_args=""
for arg in "$@"; do
  train_args+=" $(printf '%q' "$arg")"
done
remote="cd ${REPO_DIR} && source .venv/bin/activate && ${PYTHON} -m launch.train --multihost"
remote+=" --workdir=$(printf '%q' "$WORKDIR")${train_args}"

gcloud_args=(compute tpus tpu-vm ssh "$TPU_NAME" "--zone=$ZONE" --worker=all)
if [[ -n "${PROJECT:-}" ]]; then
  gcloud_args+=("--project=$PROJECT")
fi
exec gcloud "${gcloud_args[@]}" --command="$remote"
