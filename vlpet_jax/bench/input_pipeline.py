"""Input-pipeline throughput: examples/s of MultitaskIterator + batching + feature loading.

For each of the eight tasks of the synthetic benchmark (``kind="both"``, default sizes, SPEC.md §6
readers, §2 pooling) and each combination of

- ``store``: ``files`` (one HDF5 / npz per image or video) or ``consolidated`` (one file,
  ``vlpet_jax.data.consolidated``), and
- ``prefetch``: the batches built on the calling thread, or on a :class:`Prefetcher` thread,

the suite times ``batches`` training batches (after one untimed warm-up batch) of the task's
SPEC.md §6 batch size and reports real (unpadded) examples per second. The feature LRU cache is off
(``cache_items=0``): at full scale (123k COCO images) a host cache serves few reads, so every
example pays its feature read, as it would there. Both stores read from a warm page cache (the
benchmark is small); on a cold disk the gap between them grows. The consumer does no work, so the
Prefetcher rows measure its overhead; its gain appears when a train step overlaps the next batch.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlpet_jax.data.batching import TextCollator
from vlpet_jax.data.consolidated import consolidate_features
from vlpet_jax.data.features import STORED_DTYPE
from vlpet_jax.data.multitask import MultitaskIterator, load_task_source, task_batch_sizes
from vlpet_jax.data.prefetch import Prefetcher
from vlpet_jax.data.tasks import get_task, task_names

IMAGE_TASKS = ("vqa", "gqa", "nlvr", "caption")
VIDEO_TASKS = ("tvqa", "how2qa", "tvc", "yc2c")


def consolidate_all(root: str | os.PathLike, tasks: Sequence[str]) -> list[dict[str, Any]]:
    """Write ``<feature_dir>.h5`` for the train split of every task; one record per directory."""
    directories = {
        (get_task(t).feature_dir("train"), "video" if get_task(t).visual == "video" else "image")
        for t in tasks
    }
    records = []
    for relative, kind in sorted(directories):
        started = time.perf_counter()
        summary = consolidate_features(Path(root) / relative, kind)
        records.append(
            {
                "benchmark": "pipeline_consolidate",
                "feature_dir": relative,
                "kind": kind,
                "items": summary["items"],
                "mib": round(summary["bytes"] / 2**20, 1),
                "seconds": round(time.perf_counter() - started, 2),
            }
        )
    return records


def measure(
    root: str | os.PathLike,
    task: str,
    collator: TextCollator,
    batch_size: int,
    *,
    store: str,
    prefetch: bool,
    batches: int,
    seed: int = 0,
) -> dict[str, Any]:
    """Time ``batches`` batches of one task after one warm-up batch (module docstring)."""
    source = load_task_source(
        task, root, "train", train=True, batch_size=batch_size, cache_items=0,
        consolidated=store == "consolidated",
    )  # fmt: skip
    # Batches keep the features' stored dtype, as the trainer's do (`data_setup.visual_dtype`).
    kind = "video" if get_task(task).visual == "video" else "image"
    iterator: Any = MultitaskIterator([source], collator, seed=seed, vis_dtype=STORED_DTYPE[kind])
    if prefetch:
        iterator = Prefetcher(iterator, buffer_size=2)
    try:
        next(iterator)  # tokenizer and file-handle warm-up
        examples, started = 0, time.perf_counter()
        for _ in range(batches):
            examples += int(next(iterator).arrays["example_mask"].sum())
        seconds = time.perf_counter() - started
    finally:
        if prefetch:
            iterator.close()
    return {
        "benchmark": "pipeline",
        "task": task,
        "store": store,
        "prefetch": prefetch,
        "batch_size": batch_size,
        "batches": batches,
        "examples_per_s": round(examples / seconds, 1),
        "ms_per_batch": round(1000 * seconds / batches, 2),
    }


def run(
    root: str | os.PathLike,
    *,
    base_batch: int = 60,
    batches: int = 20,
    family: str = "t5",
    seed: int = 0,
) -> list[dict[str, Any]]:
    """The whole suite: preparation records, then one record per task × store × prefetch."""
    from vlpet_jax.checkpoints.tokenizer import load_tokenizer
    from vlpet_jax.data import synthetic

    synthetic.ensure_benchmark(root, seed=seed, kind="both")  # generated once, then reused
    records = consolidate_all(root, task_names())
    collator = TextCollator(load_tokenizer(synthetic.tokenizer_path(root, family)), family)
    sizes = {
        **task_batch_sizes(IMAGE_TASKS, base_batch),
        **task_batch_sizes(VIDEO_TASKS, base_batch),
    }
    for task in task_names():
        for store in ("files", "consolidated"):
            for prefetch in (False, True):
                records.append(
                    measure(root, task, collator, sizes[task], store=store, prefetch=prefetch,
                            batches=batches, seed=seed)
                )  # fmt: skip
    return records
