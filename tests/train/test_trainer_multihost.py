"""Two processes, one CPU device each, train one job through `launch.train --coordinator_address`.

The mesh is fsdp=2, so the batch and every `embed`-sharded parameter are split across the two
processes. Each process records, while training, the global batch the step saw and (at each
save) the gathered train state; afterwards it restores the last checkpoint onto the same
shardings and checks it equals what was saved. SIGTERM reaches process 1 only: both must stop
after the same step (else one waits forever in a collective the other never joins). Here we check
that both exit 0 after step 2, that the global batches are the single-host pipeline's batches
(the hosts fed disjoint rows that together make the batch), that the checkpoint read back on one
host equals the saved state, and that only process 0 logged.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp

import vlpet_jax
from tests.train.tiny_run import SPEC, TINY_SYNTHETIC, cli_flags, config_with
from vlpet_jax.data.multitask import MultitaskIterator
from vlpet_jax.train import data_setup

REPO = Path(__file__).resolve().parents[2]
# 58 VQA training questions in global batches of 32: two steps an epoch, four in all, a checkpoint
# after each; SIGTERM reaches process 1 alone, while it moves its 2nd batch to the devices.
OVERRIDES = {
    **TINY_SYNTHETIC,
    "data.batch_size": 32,
    "train.epochs": 2,
    "train.checkpoint_every_steps": 1,
    "train.log_every_steps": 1,
    "train.eval_every_epochs": 0,
    "mesh.data": 1,
    "mesh.fsdp": 2,
}
RECORDED = ("input_ids", "labels", "example_mask", "loss_weights")
TIMEOUT_S = 300

CHILD = r"""
import os, runpy, signal, sys
import jax
import numpy as np
from absl import flags
from jax.sharding import NamedSharding, PartitionSpec
from vlpet_jax.checkpoints.orbax_io import TrainCheckpointer, abstract_like
from vlpet_jax.train import device_data

def gather(tree):
    # Global arrays -> NumPy on every host (one program for the whole tree; all processes call).
    mesh = jax.tree.leaves(tree)[0].sharding.mesh
    whole = jax.jit(lambda t: t, out_shardings=NamedSharding(mesh, PartitionSpec()))(tree)
    return jax.tree.map(lambda a: np.asarray(a.addressable_data(0)), whole)

RECORDED = ("input_ids", "labels", "example_mask", "loss_weights")
batches, saved = [], {}
from_host_shards = device_data.from_host_shards
def _from_host_shards(batch, mesh):
    if jax.process_index() == 1 and len(batches) == 1:
        os.kill(os.getpid(), signal.SIGTERM)
    arrays = from_host_shards(batch, mesh)
    batches.append(gather({k: arrays[k] for k in RECORDED}))
    return arrays
device_data.from_host_shards = _from_host_shards
save = TrainCheckpointer.save
def _save(self, step, state, data_state, *args, **kwargs):
    saved[step] = (gather(state), abstract_like(state), dict(data_state))
    return save(self, step, state, data_state, *args, **kwargs)
TrainCheckpointer.save = _save

sys.argv = ["launch.train", *sys.argv[1:]]
try:
    runpy.run_module("launch.train", run_name="__main__", alter_sys=True)
except SystemExit as exit:
    assert not exit.code, f"launch.train exited with {exit.code}"

step = max(saved)
state, abstract, data_state = saved[step]
checkpointer = TrainCheckpointer(flags.FLAGS.workdir)
restored, restored_data, _, restored_step = checkpointer.restore(abstract)
checkpointer.close()
shardings_kept = all(
    a.sharding == b.sharding for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(abstract))
)
restored = gather(restored)
equal = [np.array_equal(a, b) for a, b in zip(jax.tree.leaves(restored), jax.tree.leaves(state))]
assert restored_step == step and all(equal) and shardings_kept, (restored_step, equal)
assert restored_data == data_state, (restored_data, data_state)
split = sum(not a.sharding.is_fully_replicated for a in jax.tree.leaves(abstract))
print(
    f"MULTIHOST_OK process={jax.process_index()}/{jax.process_count()} "
    f"devices={jax.local_device_count()}/{jax.device_count()} steps={sorted(saved)} "
    f"restored={restored_step} split_leaves={split}",
    flush=True,
)
if jax.process_index() == 0:
    name = lambda k: str(getattr(k, "key", getattr(k, "idx", getattr(k, "name", k))))
    flat = jax.tree_util.tree_flatten_with_path(state)[0]
    out = {"state/" + "/".join(map(name, path)): leaf for path, leaf in flat}
    for i, batch in enumerate(batches):
        out.update({f"batch{i + 1}/{k}": v for k, v in batch.items()})
    np.savez(os.path.join(flags.FLAGS.workdir, "recorded.npz"), **out)
"""


def _config():
    return config_with(OVERRIDES)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _run_two_processes(workdir: Path) -> list[tuple[int, str]]:
    """Both processes under one deadline; on timeout both are killed (a lone one would hang).
    Output goes to files: a full pipe would block one process and, through it, the other."""
    address = f"127.0.0.1:{_free_port()}"
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": "--xla_force_host_platform_device_count=1",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    args = cli_flags(OVERRIDES)
    logs = [workdir / f"process_{i}.log" for i in range(2)]
    procs = []
    try:
        for i, log in enumerate(logs):
            command = [
                sys.executable, "-c", CHILD, "--config", SPEC, *args, "--workdir", str(workdir),
                f"--coordinator_address={address}", "--num_processes=2", f"--process_id={i}",
            ]  # fmt: skip
            with open(log, "w") as out:
                procs.append(
                    subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=out, text=True)
                )
        deadline = time.monotonic() + TIMEOUT_S
        for proc in procs:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 1))
            except subprocess.TimeoutExpired:
                break  # both are killed below; their logs tell where they were
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return [(proc.returncode, log.read_text()) for proc, log in zip(procs, logs)]


def test_two_processes_train_save_and_restore(tmp_path):
    config = _config()
    family = vlpet_jax.api.backbone_config(config).family
    data_setup.ensure_synthetic(config, str(tmp_path), family)  # process 0 would make it too

    results = _run_two_processes(tmp_path)
    for index, (code, output) in enumerate(results):
        assert code == 0, f"process {index} exited with {code}:\n{output[-4000:]}"
        # Both stop at the same step, though only process 1 was signalled.
        assert "[train] SIGTERM: saved step 2, stopping" in output, output[-4000:]
        ok = [line for line in output.splitlines() if line.startswith("MULTIHOST_OK")]
        assert ok == [
            f"MULTIHOST_OK process={index}/2 devices=1/2 steps=[1, 2] restored=2 split_leaves="
            + ok[0].rsplit("=", 1)[-1]
        ], output[-4000:]
        assert int(ok[0].rsplit("=", 1)[-1]) > 0  # some leaves really are split over processes
    recorded = np.load(tmp_path / "recorded.npz")

    # The global batches are the single-host pipeline's: disjoint host rows, nothing lost.
    data = data_setup.prepare(config, str(tmp_path), family, with_eval=False)
    single_host = MultitaskIterator(
        data.train_sources, data.collator, seed=int(config.train.seed), batch_multiple=2,
        num_epochs=1,
    )  # fmt: skip
    for step, batch in zip((1, 2), single_host):
        for key in RECORDED:
            np.testing.assert_array_equal(recorded[f"batch{step}/{key}"], batch.arrays[key])
    assert "batch3/input_ids" not in recorded.files

    # The checkpoint on disk, read on one host, is the state the two processes saved.
    directory = tmp_path / "checkpoints" / "2" / "state"
    checkpointer = ocp.StandardCheckpointer()
    one_device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(
        lambda meta: jax.ShapeDtypeStruct(meta.shape, meta.dtype, sharding=one_device),
        checkpointer.metadata(directory).item_metadata,
    )
    on_disk = checkpointer.restore(directory, target)
    flat = jax.tree_util.tree_flatten_with_path(on_disk)[0]
    saved = {k: recorded[k] for k in recorded.files if k.startswith("state/")}
    assert len(flat) == len(saved) > 0
    for path, leaf in flat:
        key = "state/" + "/".join(str(getattr(p, "key", getattr(p, "idx", p))) for p in path)
        np.testing.assert_array_equal(np.asarray(leaf), saved[key], key)

    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert [json.loads(line)["step"] for line in lines] == [1, 2]  # process 0 only
