"""From a config to the data side of a run: tokenizer, collator, train and evaluation sources.

`config.data.root` is a VL-T5-style `datasets/` tree, or `synthetic` for the built-in benchmark,
which is generated (deterministically, once) under `<workdir>/synthetic` with its own tokenizer.
The tokenizer otherwise comes from the backbone checkpoint directory.
"""

from __future__ import annotations

import dataclasses
import math
import os
import time
from typing import Any

import jax
import numpy as np

from vlpet_jax.checkpoints.tokenizer import load_tokenizer
from vlpet_jax.data.batching import TextCollator
from vlpet_jax.data.features import STORED_DTYPE
from vlpet_jax.data.multitask import TaskSource, load_task_source, task_batch_sizes

SYNTHETIC = "synthetic"


@dataclasses.dataclass
class RunData:
    root: str
    tokenizer: Any
    collator: TextCollator
    train_sources: list[TaskSource]
    eval_sources: dict[str, TaskSource]


def synthetic_root(workdir: str) -> str:
    return os.path.join(os.path.abspath(workdir), "synthetic")


def ensure_synthetic(config: Any, workdir: str, family: str) -> tuple[str, str]:
    """(datasets root, tokenizer dir) of the built-in benchmark under the workdir, generated
    once by process 0 (the others wait for it on the shared filesystem)."""
    from vlpet_jax.data import synthetic

    root = synthetic_root(workdir)
    kind = "video" if config.get("modality", "image") == "video" else "image"
    sizes = dict(config.data.get("synthetic", {}) or {})
    seed = int(sizes.pop("seed", 0))
    if jax.process_index() == 0:
        synthetic.ensure_benchmark(root, seed=seed, kind=kind, **sizes)
    tokenizer = synthetic.tokenizer_path(root, family)
    _wait_for(os.path.join(tokenizer, "tokenizer.json"))
    return root, tokenizer


def _wait_for(path: str, timeout_s: float = 600.0) -> None:
    """Other hosts wait for process 0's files (a shared filesystem is assumed)."""
    deadline = time.monotonic() + timeout_s
    while not os.path.exists(path):
        if time.monotonic() > deadline:
            raise TimeoutError(f"{path}: not written by process 0 within {timeout_s:.0f} s")
        time.sleep(0.5)


def run_tokenizer(config: Any, workdir: str, family: str) -> tuple[str, Any]:
    """(datasets root, tokenizer): the checkpoint's tokenizer, else the synthetic one."""
    if config.data.root == SYNTHETIC:
        root, synthetic_tokenizer = ensure_synthetic(config, workdir, family)
    else:
        root, synthetic_tokenizer = config.data.root, None
    if config.model.checkpoint:
        return root, load_tokenizer(config.model.checkpoint)
    if synthetic_tokenizer is not None:
        return root, load_tokenizer(synthetic_tokenizer)
    raise ValueError(
        "config.model.checkpoint is empty: set it to a Hugging Face directory with a tokenizer "
        "(or use --config.data.root=synthetic, which brings its own)"
    )


def batch_multiple(mesh_batch_devices: int) -> int:
    """Global batches must split over hosts and over the (data, fsdp) devices."""
    return math.lcm(jax.process_count(), mesh_batch_devices)


def visual_dtype(config: Any) -> Any:
    """The host dtype of a batch's ``vis_feats``: ``config.data.vis_dtype``, by default the
    modality's stored dtype (``features.STORED_DTYPE``)."""
    default = np.dtype(STORED_DTYPE[config.modality]).name
    name = str(config.data.get("vis_dtype", default))
    if name not in ("float16", "float32"):
        raise ValueError(f"config.data.vis_dtype must be 'float16' or 'float32', got {name!r}")
    return np.dtype(name).type


def prepare(config: Any, workdir: str, family: str, with_eval: bool = True) -> RunData:
    root, tokenizer = run_tokenizer(config, workdir, family)
    collator = TextCollator(tokenizer, family)
    tasks = list(config.data.tasks)
    sizes = task_batch_sizes(tasks, int(config.data.batch_size))
    train_sources, eval_sources = [], {}
    for task in tasks:
        task_cfg = config.data[task]
        options = {"prompt": task_cfg.prompt} if task_cfg.get("prompt") else {}
        train_sources.append(
            load_task_source(
                task, root, task_cfg.train_split, train=True, batch_size=sizes[task],
                options=options,
            )
        )  # fmt: skip
        if with_eval:
            eval_sources[task] = load_task_source(
                task, root, task_cfg.val_split, train=False,
                batch_size=int(config.eval.batch_size), options=options,
            )  # fmt: skip
    return RunData(root, tokenizer, collator, train_sources, eval_sources)
