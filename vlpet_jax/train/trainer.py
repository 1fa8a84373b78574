"""The training loop: multitask batches -> one jitted, sharded step -> metrics, checkpoints, eval.

    metrics = train(config, workdir)

Resuming is automatic: when `<workdir>/checkpoints` holds a finished step, the trainable params,
optimiser state, step and data-iterator position are restored and training continues exactly
where it stopped (the frozen backbone is re-read from its source). SIGTERM saves a checkpoint
and stops cleanly (every process of a multi-host run after the same step, even when only some
were signalled). A non-finite loss is never applied (the step keeps the previous state); the run
stops with a message naming the step and the last checkpoint. The host reads each step's
`finite` flag after queueing the next step (and always before a checkpoint), not right away.
"""

from __future__ import annotations

import json
import os
import signal
from collections.abc import Callable
from typing import Any

import jax
import numpy as np

from vlpet_jax import api
from vlpet_jax.checkpoints.orbax_io import TrainCheckpointer, abstract_like
from vlpet_jax.data.multitask import MultitaskIterator
from vlpet_jax.data.prefetch import Prefetcher
from vlpet_jax.data.tasks.registry import get_task
from vlpet_jax.pet.trainability import param_paths, split_params
from vlpet_jax.train import data_setup, device_data, partition, sharding
from vlpet_jax.train.compile_ahead import StepCompiler
from vlpet_jax.train.evaluator import Evaluator
from vlpet_jax.train.metrics_log import MetricWriter
from vlpet_jax.train.optim import make_optimizer
from vlpet_jax.train.step import make_train_step


class NonFiniteLossError(FloatingPointError):
    pass


class _StopFlag:
    """Set by SIGTERM (preemption): the loop saves and returns at the next step boundary."""

    def __init__(self):
        self.stop = False
        self._previous = None

    def __enter__(self):
        try:
            self._previous = signal.signal(signal.SIGTERM, self._handle)
        except ValueError:  # not the main thread: no signal handling
            self._previous = None
        return self

    def _handle(self, signum, frame):
        del signum, frame
        self.stop = True

    def __exit__(self, *exc):
        if self._previous is not None:
            signal.signal(signal.SIGTERM, self._previous)

    def requested(self) -> bool:
        """Whether any process got SIGTERM. Hosts are signalled at different moments and must
        all stop after the same step (one that went on would wait forever in a collective the
        others never join), so with several processes the flags are gathered every step."""
        if jax.process_count() == 1:
            return self.stop
        from jax.experimental import multihost_utils

        return bool(np.any(multihost_utils.process_allgather(np.asarray(self.stop))))


def config_to_json(config: Any) -> dict[str, Any]:
    return (
        json.loads(config.to_json_best_effort()) if hasattr(config, "to_json_best_effort") else {}
    )


def _step_batch(batch: Any) -> dict[str, np.ndarray]:
    arrays = {k: v for k, v in batch.arrays.items() if k not in device_data.HOST_ONLY}
    arrays["token_level"] = np.float32(get_task(batch.task).loss_reduction == "token")
    return arrays


class Run:
    """Everything a training or evaluation run builds from a config, before the loop."""

    def __init__(self, config: Any, workdir: str, with_eval: bool = True):
        self.config, self.workdir = config, os.path.abspath(workdir)
        os.makedirs(self.workdir, exist_ok=True)
        self.backbone_cfg = api.backbone_config(config)
        self.mesh = sharding.make_mesh(dict(config.mesh))
        self.data = data_setup.prepare(config, self.workdir, self.backbone_cfg.family, with_eval)
        self.model = api.build_model(config)
        self.method = api.pet_method(config)
        self.rules = api.trainability_rules(config, self.method)
        batch_devices = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        self.iterator = MultitaskIterator(
            self.data.train_sources,
            self.data.collator,
            seed=int(config.train.seed),
            process_index=jax.process_index(),
            process_count=jax.process_count(),
            batch_multiple=data_setup.batch_multiple(batch_devices),
            drop_remainder=bool(config.data.drop_remainder),
            num_epochs=int(config.train.epochs),
            vis_dtype=data_setup.visual_dtype(config),
        )
        self.steps_per_epoch = self.iterator.steps_per_epoch
        self.total_steps = int(config.train.epochs) * self.steps_per_epoch

    def initial_params(self) -> Any:
        rng = jax.random.key(int(self.config.train.seed))
        params = api.init_params(self.config, rng)
        frozen_dtype = api.dtype_of(self.config.model.frozen_dtype)
        return api.cast_frozen(params, self.rules, frozen_dtype)

    def optimizer(self, trainable: Any, params: Any) -> tuple[Any, Any]:
        """(optax transform, learning-rate schedule) of this run over its trainable tree."""
        return make_optimizer(
            self.config.optim,
            self.total_steps,
            trainable,
            api.decay_rules(self.config, self.method),
            param_paths(params),
        )

    def evaluator(self) -> Evaluator:
        return Evaluator(
            self.model, self.config, self.data.tokenizer, self.data.collator,
            self.data.eval_sources, self.mesh,
        )  # fmt: skip


def train(config: Any, workdir: str) -> dict[str, float]:
    """Train (or resume) the run in `workdir`; returns the final evaluation metrics."""
    run = Run(config, workdir, with_eval=bool(config.train.eval_every_epochs))
    params = run.initial_params()
    trainable, _ = split_params(params, run.rules)
    tx, schedule = run.optimizer(trainable, params)
    abstract = api.abstract_variables(config)["params"]
    placement = partition.plan_placement(abstract, run.rules, tx, run.mesh)
    state, frozen = partition.init_train_state(params, run.rules, tx, placement)
    del params, trainable

    checkpointer = TrainCheckpointer(run.workdir, int(config.train.keep_last))
    config_json = config_to_json(config)
    start_step = 0
    if checkpointer.latest_step() is not None:
        state, data_state, _, start_step = checkpointer.restore(abstract_like(state))
        run.iterator.set_state(data_state)
        print(f"[train] resumed from step {start_step} in {checkpointer.directory}", flush=True)

    writer = MetricWriter(run.workdir, run.total_steps)
    rng = jax.random.key(int(config.train.seed) + 1, impl=config.train.dropout_rng_impl)
    compile_workers = _compile_workers(config)
    if compile_workers:  # single process: an executable compiled ahead takes it replicated
        rng = jax.device_put(rng, sharding.replicated(run.mesh))
    step_fn = make_train_step(run.model, tx, schedule)
    compiler = StepCompiler(
        lambda arrays: partition.jit_train_step(step_fn, placement, arrays),
        (abstract_like(state), abstract_like(frozen)),
        (abstract_like(rng),),
        lambda arrays: device_data.abstract_host_shards(arrays, run.mesh),
        workers=compile_workers,
    )
    log_every = max(int(config.train.log_every_steps), 1)
    ckpt_every = max(int(config.train.checkpoint_every_steps), 1)
    eval_every = int(config.train.eval_every_epochs)
    evaluator = run.evaluator() if eval_every else None
    step, last_saved = start_step, start_step
    final_metrics: dict[str, float] = {}
    evaluated_at, stopped = None, False

    def prepare(batch):
        """On the prefetch thread: the step's arrays, and a compile started for a new shape."""
        arrays = _step_batch(batch)
        compiler.ahead(arrays)
        return batch, arrays

    prefetch = Prefetcher(
        iter(run.iterator), buffer_size=int(config.data.prefetch), transform=prepare
    )
    finite_check = _FiniteCheck(lambda: (last_saved, checkpointer.directory))
    try:
        with _StopFlag() as flag:
            for batch, arrays in prefetch:
                device_batch = device_data.from_host_shards(arrays, run.mesh)
                train_step = compiler.executable(arrays)
                state, metrics = train_step(state, frozen, device_batch, rng)
                step += 1
                writer.count_examples(float(np.sum(arrays["example_mask"])) * jax.process_count())
                # The previous step's flag is read only now, with this step already queued, so
                # the device never idles while the host waits for it; a non-finite update is
                # never applied, so the step queued after it starts from a good state.
                finite_check.read_previous()
                finite_check.hold(step, batch.task, metrics["finite"])
                if step % log_every == 0 or step == run.total_steps:
                    finite_check.read_previous()
                    shown = {k: v for k, v in jax.device_get(metrics).items() if k != "finite"}
                    shown.update(writer.progress(step, shown))
                    writer.write(step, shown)
                stop = flag.requested()
                if step % ckpt_every == 0 or stop or step == run.total_steps:
                    finite_check.read_previous()  # a checkpoint never follows an unread flag
                    checkpointer.save(step, state, prefetch.state, config_json, force=True)
                    last_saved = step
                if stop:
                    print(f"[train] SIGTERM: saved step {step}, stopping", flush=True)
                    stopped = True
                    break
                if evaluator is not None and step % (eval_every * run.steps_per_epoch) == 0:
                    final_metrics = _evaluate(evaluator, state, frozen, writer, step, run)
                    evaluated_at = step
            finite_check.read_previous()
            if evaluator is not None and not stopped and evaluated_at != step:
                # The last step's state was not evaluated in this call: the run was resumed at
                # its end (SIGTERM came with the last step, before its evaluation, or a finished
                # run was started again), or the epochs are not a multiple of eval_every_epochs.
                # Without this a run stopped at its last step would never report final metrics.
                final_metrics = _evaluate(evaluator, state, frozen, writer, step, run)
    finally:
        prefetch.close()
        compiler.close()
        checkpointer.wait()
        checkpointer.close()
        writer.close()
    return final_metrics


class _FiniteCheck:
    """The train step's `finite` flag of the last step, read by the host one step late."""

    def __init__(self, last_checkpoint: Callable[[], tuple[int, str]]):
        self._last_checkpoint = last_checkpoint
        self._held: tuple[int, str, Any] | None = None

    def hold(self, step: int, task: str, finite: Any) -> None:
        self._held = (step, task, finite)

    def read_previous(self) -> None:
        """Raise `NonFiniteLossError` if the held step's update was non-finite."""
        held, self._held = self._held, None
        if held is not None and not bool(held[2]):
            saved, directory = self._last_checkpoint()
            raise NonFiniteLossError(
                f"non-finite loss or gradient at step {held[0]} (task {held[1]}); the update was "
                f"not applied; last checkpoint: step {saved} in {directory}"
            )


def _compile_workers(config: Any) -> int:
    """Threads compiling step shapes ahead (`config.train.compile_workers`); none with several
    processes, which must all compile the same programs in the same order."""
    if jax.process_count() > 1:
        return 0
    return int(config.train.compile_workers)


def trained_params(run: Run, step: int | None = None) -> tuple[Any, int]:
    """The full param tree of a finished step, laid out on `run.mesh` exactly as in training:
    frozen parts rebuilt from their source (the seeded init and the backbone checkpoint) and
    trainable parts restored from `<workdir>/checkpoints`, each host reading only its shards."""
    from vlpet_jax.train.step import merge_trees

    params = run.initial_params()
    trainable, frozen = split_params(params, run.rules)
    tx, _ = run.optimizer(trainable, params)
    abstract = api.abstract_variables(run.config)["params"]
    placement = partition.plan_placement(abstract, run.rules, tx, run.mesh)
    frozen = jax.device_put(frozen, placement.frozen)
    checkpointer = TrainCheckpointer(run.workdir)
    try:
        state, _, _, step = checkpointer.restore(
            partition.abstract_state(trainable, tx, placement), step
        )
    finally:
        checkpointer.close()
    return merge_trees(state.trainable, frozen), step


def _evaluate(evaluator, state, frozen, writer, step, run) -> dict[str, float]:
    from vlpet_jax.train.step import merge_trees

    params = merge_trees(state.trainable, frozen)
    out_dir = os.path.join(run.workdir, "predictions", f"step_{step}")
    metrics = evaluator.evaluate(params, out_dir)
    writer.write(step, metrics, prefix="eval")
    if jax.process_index() == 0:
        shown = " ".join(f"{k}={v:.2f}" for k, v in metrics.items())
        print(f"[eval] step {step} {shown}", flush=True)
    return metrics
