"""The multi-host recipes (launch/tpu_pod.sh, launch/slurm_gpu.sbatch) run the same
`launch.train --multihost` command everywhere, with the user's arguments intact.

`gcloud` and `srun` are replaced by stubs that print their arguments, one per line, so the
commands are checked as the cluster would receive them (the real multi-host run:
test_trainer_multihost.py).
"""

from __future__ import annotations

import os
import shlex
import subprocess
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ARGS = [
    "--config",
    "configs/image_text.py:backbone=bart_base,method=vl_pet_large",
    "--config.data.root=/data/my datasets",  # a space must survive the remote shell
]


def _run_with_stub(tmp_path: Path, stub: str, script: str, env: dict[str, str]) -> list[str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / stub).write_text('#!/usr/bin/env bash\nprintf "%s\\n" "$@"\n')
    (bin_dir / stub).chmod(0o755)
    result = subprocess.run(
        ["bash", str(REPO / "launch" / script), *ARGS],
        env={**os.environ, **env, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
        capture_output=True, text=True, timeout=30, cwd=tmp_path,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    return result.stdout.splitlines()


def test_tpu_pod_runs_the_same_command_on_every_worker(tmp_path):
    env = {"TPU_NAME": "vlpet-v4-32", "ZONE": "us-central2-b", "WORKDIR": "/mnt/shared/run 1"}
    argv = _run_with_stub(tmp_path, "gcloud", "tpu_pod.sh", env)
    command = next(a for a in argv if a.startswith("--command="))
    assert argv[:6] == ["compute", "tpus", "tpu-vm", "ssh", "vlpet-v4-32", "--zone=us-central2-b"]
    assert "--worker=all" in argv
    remote = command.removeprefix("--command=")
    words = shlex.split(remote.split("&&")[-1])  # as the worker's shell splits it
    assert words == [
        "python", "-m", "launch.train", "--multihost", "--workdir=/mnt/shared/run 1", *ARGS,
    ]  # fmt: skip


def test_tpu_pod_names_what_is_missing(tmp_path):
    result = subprocess.run(
        ["bash", str(REPO / "launch" / "tpu_pod.sh")],
        env={k: v for k, v in os.environ.items() if k not in ("TPU_NAME", "ZONE", "WORKDIR")},
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert result.returncode != 0 and "TPU_NAME" in result.stderr


def test_slurm_runs_launch_train_in_every_task(tmp_path):
    argv = _run_with_stub(tmp_path, "srun", "slurm_gpu.sbatch", {"SLURM_SUBMIT_DIR": str(REPO)})
    assert argv == [
        "--kill-on-bad-exit=1", "python", "-m", "launch.train", "--multihost", *ARGS,
    ]  # fmt: skip
    header = (REPO / "launch" / "slurm_gpu.sbatch").read_text()
    assert "#SBATCH --ntasks-per-node=1" in header and "#SBATCH --signal=TERM@" in header
