"""The trainer's contracts on real runs of the tiny config (DESIGN.md "Checkpoints"):

- a `launch.train` process killed by SIGKILL right after issuing a save (the write possibly still
  in flight) loses nothing older; a run sent SIGTERM saves the step it is on and returns cleanly;
  resuming from either continues bit-for-bit: the final trainable params, optimiser state, step,
  data position, losses and evaluation equal an uninterrupted run's exactly;
- a checkpoint holds the trainable tree, its optimiser state and the step, and no frozen weight;
- evaluating a restored checkpoint reproduces the in-training evaluation record exactly;
- a non-finite loss stops the run with `NonFiniteLossError`, the last good checkpoint intact.

Every run shares one generated synthetic tree and one persistent compilation cache (the same
programs compile once across the in-process runs and the `launch.train` subprocesses; the cache
changes no number). Subprocesses get this process's XLA flags and matmul precision, so their
arithmetic is the same as the in-process runs'.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict
from jax.experimental.compilation_cache import compilation_cache

import vlpet_jax
from tests.train.tiny_run import SPEC, TINY_SYNTHETIC, cli_flags, config_with
from vlpet_jax.pet.trainability import split_params
from vlpet_jax.train import data_setup, trainer
from vlpet_jax.train.evaluator import Evaluator

REPO = Path(__file__).resolve().parents[2]
# 58 VQA training questions in batches of 16: 4 steps an epoch, 8 in all; a checkpoint every 2
# steps, all kept; one evaluation at the end. (Checkpoints of parameters split over devices and
# processes: test_trainer_multihost.py.)
OVERRIDES = {
    **TINY_SYNTHETIC,
    "data.batch_size": 16,
    "train.epochs": 2,
    "train.checkpoint_every_steps": 2,
    "train.log_every_steps": 1,
    "train.keep_last": 10,
    # In-process runs cannot change XLA flags any more; subprocesses must compile the same way.
    "train.fast_compile": False,
}
TOTAL_STEPS = 8

# `launch.train`, SIGKILLed right after its N-th checkpoint save was issued (async: the write may
# still be in flight).
CHILD = r"""
import os, runpy, signal, sys
from vlpet_jax.checkpoints.orbax_io import TrainCheckpointer

kill_after, saves = int(sys.argv[1]), [0]
save = TrainCheckpointer.save
def _save(self, *args, **kwargs):
    saved = save(self, *args, **kwargs)
    saves[0] += 1
    if saves[0] == kill_after:
        os.kill(os.getpid(), signal.SIGKILL)
    return saved
TrainCheckpointer.save = _save
sys.argv = ["launch.train", *sys.argv[2:]]
runpy.run_module("launch.train", run_name="__main__", alter_sys=True)
"""


def tiny_config():
    return config_with(OVERRIDES)


def cli_overrides() -> list[str]:
    return cli_flags(OVERRIDES)


@pytest.fixture(scope="module")
def compile_cache(tmp_path_factory):
    """A persistent compilation cache for this module's runs (in-process and subprocesses)."""
    directory = str(tmp_path_factory.mktemp("jax_cache"))
    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    previous = {name: getattr(jax.config, name) for name in names}
    for name, value in zip(names, (directory, 0.0, 0)):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield directory
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def new_workdir(tmp_path_factory):
    """`new_workdir(name)`: a run directory sharing one generated synthetic benchmark."""
    shared = tmp_path_factory.mktemp("shared")
    config = tiny_config()
    data_setup.ensure_synthetic(config, str(shared), vlpet_jax.api.backbone_config(config).family)

    def make(name: str) -> Path:
        workdir = tmp_path_factory.mktemp(name)
        (workdir / "synthetic").symlink_to(data_setup.synthetic_root(str(shared)))
        return workdir

    return make


def recording_evaluations(monkeypatch) -> list[dict[str, jax.Array]]:
    """The params of every `Evaluator.evaluate` call (`/`-joined path -> array), recorded."""
    seen, evaluate = [], Evaluator.evaluate

    def recording(self, params, out_dir=None):
        seen.append({"/".join(k): v for k, v in flatten_dict(params).items()})
        return evaluate(self, params, out_dir)

    monkeypatch.setattr(Evaluator, "evaluate", recording)
    return seen


@pytest.fixture(scope="module")
def reference(compile_cache, new_workdir):
    """An uninterrupted run: (workdir, final evaluation metrics, the params it evaluated)."""
    del compile_cache
    workdir = new_workdir("reference")
    with pytest.MonkeyPatch.context() as monkeypatch:
        evaluated = recording_evaluations(monkeypatch)
        metrics = trainer.train(tiny_config(), str(workdir))
    assert len(evaluated) == 1
    return workdir, metrics, evaluated[0]


def launch_train(
    workdir: Path, cache_dir: str, kill_after_saves: int
) -> subprocess.CompletedProcess:
    env = {
        **os.environ,
        "JAX_PLATFORMS": "cpu",
        "XLA_FLAGS": os.environ.get("XLA_FLAGS", ""),
        "JAX_COMPILATION_CACHE_DIR": cache_dir,
        "JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS": "0",
        "JAX_PERSISTENT_CACHE_MIN_ENTRY_SIZE_BYTES": "0",
        "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    }
    if jax.config.jax_default_matmul_precision is not None:
        env["JAX_DEFAULT_MATMUL_PRECISION"] = str(jax.config.jax_default_matmul_precision)
    args = ["--config", SPEC, *cli_overrides(), "--workdir", str(workdir)]
    return subprocess.run(
        [sys.executable, "-c", CHILD, str(kill_after_saves), *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def read_state(workdir: Path, step: int) -> dict[str, np.ndarray]:
    """A checkpoint's saved train state, as `/`-joined path -> array, read without a target."""
    tree = ocp.StandardCheckpointer().restore(workdir / "checkpoints" / str(step) / "state")
    flat = jax.tree_util.tree_flatten_with_path(tree)[0]
    return {
        "/".join(str(getattr(k, "key", getattr(k, "idx", k))) for k in path): np.asarray(leaf)
        for path, leaf in flat
    }


def read_json_item(workdir: Path, step: int, item: str) -> dict:
    return json.loads((workdir / "checkpoints" / str(step) / item / "metadata").read_text())


def assert_same_state(found: dict, expected: dict) -> float:
    """Exact equality, leaf by leaf; returns the largest absolute difference (0.0)."""
    assert found.keys() == expected.keys()
    worst = 0.0
    for path, value in expected.items():
        assert found[path].dtype == value.dtype, path
        np.testing.assert_array_equal(found[path], value, err_msg=path)
        if value.size:
            diff = np.abs(found[path].astype(np.float64) - value.astype(np.float64)).max()
            worst = max(worst, float(diff))
    return worst


def records(workdir: Path, split: str) -> dict[int, dict]:
    lines = (workdir / "metrics.jsonl").read_text().splitlines()
    rows = [json.loads(line) for line in lines]
    return {r["step"]: r for r in rows if r["split"] == split}


def steps_on_disk(workdir: Path) -> list[int]:
    return sorted(int(p.name) for p in (workdir / "checkpoints").iterdir() if p.name.isdigit())


def test_sigkill_then_sigterm_then_resume_match_an_uninterrupted_run(
    reference, compile_cache, new_workdir, monkeypatch, capsys
):
    ref_dir, ref_metrics, _ = reference
    workdir = new_workdir("interrupted")

    # 1. `launch.train`, SIGKILLed right after it issued the save of step 4 (the write may still
    # be in flight): what is on disk is complete and equals the uninterrupted run at that step.
    kill = launch_train(workdir, compile_cache, kill_after_saves=2)
    assert kill.returncode == -signal.SIGKILL, kill.stderr[-3000:]
    assert "[train] step 4/8" in kill.stdout and "[train] step 5/8" not in kill.stdout
    killed_at = steps_on_disk(workdir)
    assert killed_at in ([2], [2, 4]), killed_at
    for step in killed_at:
        assert_same_state(read_state(workdir, step), read_state(ref_dir, step))

    # 2. Resume; SIGTERM arrives while the first batch is prepared: that step is trained and
    # saved (an odd step, off the checkpoint schedule), and the run returns cleanly.
    resume_step = killed_at[-1]
    step_batch, handler = trainer._step_batch, signal.getsignal(signal.SIGTERM)

    def terminated(batch):
        monkeypatch.setattr(trainer, "_step_batch", step_batch)
        os.kill(os.getpid(), signal.SIGTERM)
        return step_batch(batch)

    monkeypatch.setattr(trainer, "_step_batch", terminated)
    assert trainer.train(tiny_config(), str(workdir)) == {}  # stopped before any evaluation
    assert signal.getsignal(signal.SIGTERM) == handler
    stopped_at = resume_step + 1
    out = capsys.readouterr().out
    assert f"[train] resumed from step {resume_step}" in out
    assert f"[train] SIGTERM: saved step {stopped_at}, stopping" in out
    assert steps_on_disk(workdir) == [*killed_at, stopped_at]
    assert read_json_item(workdir, stopped_at, "data")["step"] == stopped_at % 4

    # 3. Resume to the end: the same final state, losses and evaluation.
    metrics = trainer.train(tiny_config(), str(workdir))
    assert f"[train] resumed from step {stopped_at}" in capsys.readouterr().out
    assert steps_on_disk(workdir)[-1] == TOTAL_STEPS
    worst = assert_same_state(read_state(workdir, TOTAL_STEPS), read_state(ref_dir, TOTAL_STEPS))
    assert worst == 0.0
    assert read_json_item(workdir, TOTAL_STEPS, "data") == read_json_item(
        ref_dir, TOTAL_STEPS, "data"
    )
    resumed, uninterrupted = records(workdir, "train"), records(ref_dir, "train")
    for step in range(stopped_at + 1, TOTAL_STEPS + 1):
        assert resumed[step]["loss"] == uninterrupted[step]["loss"], step
        assert resumed[step]["grad_norm"] == uninterrupted[step]["grad_norm"], step
    assert metrics == ref_metrics

    # 4. Starting the finished run again trains nothing and evaluates the final state: a run that
    # SIGTERM stopped at its last step, before the evaluation, still ends with its metrics.
    lines_before = (workdir / "metrics.jsonl").read_text().count('"split": "train"')
    assert trainer.train(tiny_config(), str(workdir)) == ref_metrics
    assert f"[train] resumed from step {TOTAL_STEPS}" in capsys.readouterr().out
    assert (workdir / "metrics.jsonl").read_text().count('"split": "train"') == lines_before
    assert steps_on_disk(workdir)[-1] == TOTAL_STEPS


def test_checkpoint_holds_trainable_state_only(reference):
    ref_dir, *_ = reference
    config = tiny_config()
    abstract = vlpet_jax.abstract_params(config)
    trainable, frozen = split_params(abstract, vlpet_jax.api.trainability_rules(config))
    trainable_paths = {"/".join(k): v for k, v in flatten_dict(trainable).items()}
    frozen_paths = {"/".join(k) for k in flatten_dict(frozen)}
    saved = read_state(ref_dir, TOTAL_STEPS)

    assert {path.split("/")[0] for path in saved} == {"step", "trainable", "opt_state"}
    saved_params = {p.removeprefix("trainable/") for p in saved if p.startswith("trainable/")}
    assert saved_params == set(trainable_paths)
    # Adam's two moments mirror the trainable tree; the rest are scalar counters.
    moments = [p for p in saved if p.startswith("opt_state/") and saved[p].ndim]
    assert len(moments) == 2 * len(trainable_paths)
    for path in moments:
        assert any(path.endswith("/" + t) for t in trainable_paths), path
    assert not any(p.endswith("/" + f) or p == f for p in saved for f in frozen_paths)
    # Bytes: exactly params + two moments + scalars; the frozen backbone is nowhere.
    param_bytes = sum(int(np.prod(s.shape)) * s.dtype.itemsize for s in trainable_paths.values())
    scalar_bytes = sum(v.nbytes for v in saved.values() if v.ndim == 0)
    assert sum(v.nbytes for v in saved.values()) == 3 * param_bytes + scalar_bytes
    items = {p.name for p in (ref_dir / "checkpoints" / str(TOTAL_STEPS)).iterdir() if p.is_dir()}
    assert items == {"state", "data", "config"}


def test_evaluating_a_restored_checkpoint_reproduces_the_training_record(reference):
    ref_dir, ref_metrics, ref_params = reference
    record = records(ref_dir, "eval")[TOTAL_STEPS]
    run = trainer.Run(tiny_config(), str(ref_dir))
    params, step = trainer.trained_params(run)
    assert step == TOTAL_STEPS
    # The very parameters the in-training evaluation saw (frozen ones rebuilt from their
    # source), laid out on the mesh the same way.
    params = {"/".join(k): v for k, v in flatten_dict(params).items()}
    assert params.keys() == ref_params.keys()
    for path, value in params.items():
        np.testing.assert_array_equal(np.asarray(value), np.asarray(ref_params[path]), path)
        assert value.sharding.is_equivalent_to(ref_params[path].sharding, value.ndim), path

    out_dir = ref_dir / "predictions" / "restored"
    metrics = run.evaluator().evaluate(unflatten_dict(params, sep="/"), str(out_dir))
    assert metrics == ref_metrics
    assert metrics == {k: v for k, v in record.items() if k not in ("step", "split", "time")}
    predictions = f"step_{TOTAL_STEPS}/vqa_predictions.json"
    during = json.loads((ref_dir / "predictions" / predictions).read_text())
    assert json.loads((out_dir / "vqa_predictions.json").read_text()) == during
    assert len(during) == 20


@pytest.mark.parametrize("log_every", [1, 3])
def test_non_finite_loss_stops_with_the_last_good_checkpoint(
    reference, new_workdir, monkeypatch, log_every
):
    """Step 5's update is non-finite: the run stops there, whether or not step 5 is a logging
    step (the check must not ride on the metrics read for logging), before step 6 checkpoints."""
    ref_dir, *_ = reference
    workdir = new_workdir(f"non_finite_log{log_every}")
    step_batch, calls = trainer._step_batch, []

    def poisoned(batch):
        arrays = step_batch(batch)
        calls.append(1)
        if len(calls) == 5:  # step 5: NaN features -> NaN loss and gradients
            arrays["vis_feats"] = np.full_like(arrays["vis_feats"], np.nan)
        return arrays

    monkeypatch.setattr(trainer, "_step_batch", poisoned)
    config = tiny_config()
    config.train.log_every_steps = log_every
    with pytest.raises(trainer.NonFiniteLossError) as error:
        trainer.train(config, str(workdir))
    message = str(error.value)
    assert "non-finite loss or gradient at step 5" in message
    assert f"last checkpoint: step 4 in {workdir / 'checkpoints'}" in message
    assert steps_on_disk(workdir) == [2, 4]
    last = read_state(workdir, 4)
    assert all(np.all(np.isfinite(v)) for v in last.values())
    assert_same_state(last, read_state(ref_dir, 4))


def test_compiling_ahead_changes_no_number(reference, new_workdir):
    """The reference compiles step shapes on background threads as the prefetcher meets them;
    a run that compiles on first call instead (`train.compile_workers=0`) ends in the same
    state with the same losses, bit for bit."""
    ref_dir, ref_metrics, _ = reference
    workdir = new_workdir("compile_on_call")
    config = tiny_config()
    config.train.compile_workers = 0
    metrics = trainer.train(config, str(workdir))
    assert metrics == ref_metrics
    assert_same_state(read_state(workdir, TOTAL_STEPS), read_state(ref_dir, TOTAL_STEPS))
    losses = {step: r["loss"] for step, r in records(workdir, "train").items()}
    assert losses == {step: r["loss"] for step, r in records(ref_dir, "train").items()}
    assert len(losses) == TOTAL_STEPS
