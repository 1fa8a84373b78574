"""The multi-task round-robin of SPEC.md §6, deterministic, resumable and sharded per host.

Each epoch lists every task once per batch of its own loader (⌈N_t / b_t⌉ times, or ⌊·⌋ with
``drop_remainder``), shuffles that list with a generator seeded by ``(seed, epoch)``, and each step
takes the next batch of one task. Within a task, an epoch visits a fresh permutation of its examples,
seeded by ``(seed, epoch, task_id)``; the VQA answer of every row is drawn ∝ its soft score from a
generator seeded by ``(seed, epoch, task_id, batch_index)``. Everything is therefore a pure function
of ``(seed, epoch, step)``, which is the whole iterator state: ``get_state()`` returns a small
JSON-able dict and ``set_state()`` continues bit-for-bit.

A global batch of task t has b_t examples, padded with masked rows (``example_mask`` 0) up to a
multiple of ``batch_multiple`` (default: the host count; pass the number of data-parallel devices
so every device gets the same rows). Host p of P yields rows [p·R/P, (p+1)·R/P) of it; the hosts'
slices are disjoint and together are the global batch. The released code's last, smaller batch
per task and epoch is kept (padded) unless ``drop_remainder``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from vlpet_jax.data.batching import Batch, TextCollator, VisualSource, build_batch
from vlpet_jax.data.consolidated import open_feature_store
from vlpet_jax.data.examples import Example, best_target, draw_target
from vlpet_jax.data.features import ImageVisuals, VideoVisuals
from vlpet_jax.data.tasks import get_task
from vlpet_jax.data.tasks.registry import TaskSpec

# Per-task batch sizes of the image mixture relative to the base batch B (SPEC.md §6).
IMAGE_BATCH_RATIOS = {"vqa": (60, 60), "gqa": (100, 60), "nlvr": (20, 60), "caption": (50, 60)}

# Independent random streams of one seed.
_SCHEDULE_STREAM, _ORDER_STREAM, _TARGET_STREAM = 0, 1, 2
_STATE_VERSION = 1


def task_batch_sizes(tasks: Sequence[str], base_batch: int) -> dict[str, int]:
    """Global batch size per task: image tasks ⌊B·r⌋ with SPEC.md §6's ratios, video tasks B."""
    sizes = {}
    for name in tasks:
        spec = get_task(name)
        if spec.visual == "video":
            sizes[name] = base_batch
        else:
            num, den = IMAGE_BATCH_RATIOS[name]
            sizes[name] = base_batch * num // den
        if sizes[name] < 1:
            raise ValueError(f"base batch {base_batch} gives task '{name}' an empty batch")
    return sizes


@dataclass
class TaskSource:
    """One task's examples, global batch size and feature access."""

    spec: TaskSpec
    examples: Sequence[Example]
    batch_size: int
    visuals: VisualSource

    def __post_init__(self) -> None:
        if not self.examples:
            raise ValueError(f"task '{self.spec.name}' has no examples")
        if self.batch_size < 1:
            raise ValueError(f"task '{self.spec.name}': batch size must be >= 1")


def load_task_source(
    name: str,
    root: str | Path,
    split: str,
    *,
    train: bool,
    batch_size: int,
    feature_dir: str | Path | None = None,
    cache_items: int = 1024,
    options: Mapping[str, Any] | None = None,
    consolidated: bool | str | Path | None = None,
) -> TaskSource:
    """Read ``split`` of task ``name`` from a VL-T5 ``datasets/`` tree and open its feature store.

    ``feature_dir`` overrides the task's default location under ``root``. ``consolidated`` picks
    the one-file store (``vlpet_jax.data.consolidated.open_feature_store``): None uses
    ``<feature_dir>.h5`` when it exists, True requires it, False reads the per-item files, a path
    names the file.
    """
    spec = get_task(name)
    examples = spec.load(root, split, train=train, **dict(options or {}))
    directory = (
        Path(feature_dir) if feature_dir is not None else Path(root) / spec.feature_dir(split)
    )
    visuals: VisualSource
    if spec.visual == "video":
        store = open_feature_store(
            "video", directory, consolidated=consolidated, cache_items=cache_items
        )
        visuals = VideoVisuals(store)
    else:
        # Images are cached once, pooled (36 rows, not the 49 read), by ImageVisuals.
        store = open_feature_store("image", directory, consolidated=consolidated, cache_items=0)
        visuals = ImageVisuals(store, cache_items=cache_items)
    return TaskSource(spec, examples, batch_size, visuals)


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


class MultitaskIterator:
    """Round-robin training batches over several tasks (module docstring).

    Args:
      sources: the tasks, each with its global batch size.
      collator: tokenizer + backbone format + length buckets.
      seed: non-negative integer; the whole stream is a function of it.
      process_index / process_count: this host and the number of hosts.
      batch_multiple: global batches are padded to a multiple of this (default process_count).
      drop_remainder: skip each task's last partial batch of an epoch.
      num_epochs: stop after this many epochs (None: run forever).
      vis_dtype: dtype of ``vis_feats`` (float16 halves host-to-device traffic and is lossless for
        the float16 CLIP features).
    """

    def __init__(
        self,
        sources: Sequence[TaskSource],
        collator: TextCollator,
        *,
        seed: int,
        process_index: int = 0,
        process_count: int = 1,
        batch_multiple: int | None = None,
        drop_remainder: bool = False,
        num_epochs: int | None = None,
        vis_dtype: Any = np.float32,
    ) -> None:
        if not sources:
            raise ValueError("no tasks given")
        names = [s.spec.name for s in sources]
        if len(set(names)) != len(names):
            raise ValueError(f"a task appears twice: {names}")
        if seed < 0:
            raise ValueError(f"seed must be >= 0, got {seed}")
        multiple = process_count if batch_multiple is None else batch_multiple
        if multiple % process_count:
            raise ValueError(
                f"batch_multiple {multiple} must be a multiple of process_count {process_count}"
            )
        self.sources = list(sources)
        self.collator = collator
        self.seed = seed
        self.process_index = process_index
        self.process_count = process_count
        self.batch_multiple = multiple
        self.drop_remainder = drop_remainder
        self.num_epochs = num_epochs
        self.vis_dtype = vis_dtype
        self.batches_per_task = []
        for s in self.sources:
            n, b = len(s.examples), s.batch_size
            count = n // b if drop_remainder else -(-n // b)
            if count == 0:
                raise ValueError(
                    f"task '{s.spec.name}' has {n} examples, fewer than its batch size {b}, "
                    "so drop_remainder leaves it no batch"
                )
            self.batches_per_task.append(count)
        self._epoch = 0
        self._step = 0
        self._cached_epoch: int | None = None
        self._schedule: np.ndarray = np.zeros(0, np.int64)
        self._batch_index: np.ndarray = np.zeros(0, np.int64)
        self._orders: dict[int, np.ndarray] = {}

    @property
    def steps_per_epoch(self) -> int:
        return sum(self.batches_per_task)

    def rows_per_batch(self, task: str) -> int:
        """Rows of a global batch of ``task`` (its batch size padded to ``batch_multiple``)."""
        source = next(s for s in self.sources if s.spec.name == task)
        return _round_up(source.batch_size, self.batch_multiple)

    # ---- determinism ---------------------------------------------------------------------------

    def _rng(self, *keys: int) -> np.random.Generator:
        return np.random.default_rng([self.seed, *keys])

    def epoch_schedule(self, epoch: int) -> np.ndarray:
        """Task index (into ``sources``) of every step of ``epoch``."""
        listed = np.repeat(np.arange(len(self.sources)), self.batches_per_task)
        return self._rng(_SCHEDULE_STREAM, epoch).permutation(listed)

    def _prepare_epoch(self, epoch: int) -> None:
        if self._cached_epoch == epoch:
            return
        schedule = self.epoch_schedule(epoch)
        batch_index = np.zeros_like(schedule)
        seen = np.zeros(len(self.sources), np.int64)
        for k, t in enumerate(schedule):
            batch_index[k] = seen[t]
            seen[t] += 1
        self._schedule, self._batch_index = schedule, batch_index
        self._orders = {}
        self._cached_epoch = epoch

    def _order(self, epoch: int, t: int) -> np.ndarray:
        if t not in self._orders:
            spec = self.sources[t].spec
            rng = self._rng(_ORDER_STREAM, epoch, spec.task_id)
            self._orders[t] = rng.permutation(len(self.sources[t].examples))
        return self._orders[t]

    # ---- state ---------------------------------------------------------------------------------

    def _fingerprint(self) -> list[list[Any]]:
        return [[s.spec.name, len(s.examples), s.batch_size] for s in self.sources]

    def get_state(self) -> dict[str, Any]:
        """Position of the iterator: a small JSON-able dict, saved with checkpoints."""
        return {
            "version": _STATE_VERSION,
            "seed": self.seed,
            "epoch": self._epoch,
            "step": self._step,
            "tasks": self._fingerprint(),
            "drop_remainder": self.drop_remainder,
        }

    def set_state(self, state: Mapping[str, Any]) -> None:
        """Continue exactly after the batch whose ``state`` this is."""
        expected = self.get_state()
        for key in ("version", "seed", "tasks", "drop_remainder"):
            found = state.get(key)
            if isinstance(found, (list, tuple)):
                found = [list(x) if isinstance(x, (list, tuple)) else x for x in found]
            if found != expected[key]:
                raise ValueError(
                    f"iterator state does not fit this data: '{key}' is {state.get(key)!r} in the "
                    f"saved state, {expected[key]!r} here"
                )
        epoch, step = int(state["epoch"]), int(state["step"])
        if not (epoch >= 0 and 0 <= step < self.steps_per_epoch):
            raise ValueError(f"iterator state out of range: epoch {epoch}, step {step}")
        self._epoch, self._step = epoch, step

    # ---- iteration -----------------------------------------------------------------------------

    def __iter__(self) -> Iterator[Batch]:
        return self

    def __next__(self) -> Batch:
        if self.num_epochs is not None and self._epoch >= self.num_epochs:
            raise StopIteration
        epoch, step = self._epoch, self._step
        self._prepare_epoch(epoch)
        t = int(self._schedule[step])
        j = int(self._batch_index[step])
        source = self.sources[t]
        b = source.batch_size
        indices = self._order(epoch, t)[j * b : (j + 1) * b]
        uniforms = self._rng(_TARGET_STREAM, epoch, source.spec.task_id, j).random(len(indices))
        rows: list[Example | None] = [source.examples[i] for i in indices]
        drawn: list[tuple[str, float] | None] = [
            draw_target(ex, float(u)) for ex, u in zip(rows, uniforms) if ex is not None
        ]
        padding = _round_up(b, self.batch_multiple) - len(rows)
        rows += [None] * padding
        drawn += [None] * padding
        batch = build_batch(
            source.spec,
            self.collator,
            source.visuals,
            rows,
            drawn,
            process_index=self.process_index,
            process_count=self.process_count,
            vis_dtype=self.vis_dtype,
        )
        self._step += 1
        if self._step == self.steps_per_epoch:
            self._epoch, self._step = epoch + 1, 0
        batch.state = self.get_state()
        return batch


def eval_batches(
    source: TaskSource,
    collator: TextCollator,
    *,
    process_index: int = 0,
    process_count: int = 1,
    batch_multiple: int | None = None,
    vis_dtype: Any = np.float32,
) -> Iterator[Batch]:
    """Every example once, in file order, in padded global batches (the last one masked).

    The target of each row (for an evaluation loss) is its best-scoring one, deterministically.
    """
    multiple = process_count if batch_multiple is None else batch_multiple
    rows_per_batch = _round_up(source.batch_size, multiple)
    examples = list(source.examples)
    for start in range(0, len(examples), source.batch_size):
        rows: list[Example | None] = list(examples[start : start + source.batch_size])
        drawn: list[tuple[str, float] | None] = [best_target(ex) for ex in rows if ex is not None]
        padding = rows_per_batch - len(rows)
        yield build_batch(
            source.spec,
            collator,
            source.visuals,
            rows + [None] * padding,
            drawn + [None] * padding,
            process_index=process_index,
            process_count=process_count,
            vis_dtype=vis_dtype,
        )
