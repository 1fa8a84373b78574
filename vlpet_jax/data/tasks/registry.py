"""Task names -> readers (STYLE.md rule 1: a registry, not if/elif).

A :class:`TaskSpec` says how to read a task's official annotations (SPEC.md §6) and the few facts
the rest of the pipeline needs about it: the kind of visual input, the token limits the released
loaders apply, the loss reduction, and where its features live in the VL-T5 ``datasets/`` tree.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from vlpet_jax.data.examples import Example

VisualKind = Literal["image", "image_pair", "video"]
LossReduction = Literal["example", "token"]
Reader = Callable[..., list[Example]]


@dataclass(frozen=True)
class TaskSpec:
    """Everything the pipeline knows about one task.

    Attributes:
      name: registry name; also the task alias of the released checkpoints (SPEC.md §9).
      task_id: stable integer id carried in every batch as ``task_ids`` (registry order, fixed).
      read: ``read(root, split, *, train, **options) -> list[Example]`` where ``root`` is the
        VL-T5 ``datasets/`` directory (video tasks live under ``root/video``).
      visual: ``image`` (36 tokens), ``image_pair`` (NLVR2, 72 tokens) or ``video`` (64 tokens).
      loss_reduction: ``example`` = per-example mean token CE (times the loss weight), then the mean
        over the batch's examples; ``token`` = mean over every target token of the batch (COCO).
      max_input_len / max_target_len: truncation, special tokens included, as the released loaders
        do it (None = no truncation).
      feature_dir: ``feature_dir(split)`` -> feature directory relative to ``root``.
    """

    name: str
    task_id: int
    read: Reader
    visual: VisualKind
    loss_reduction: LossReduction
    max_input_len: int | None
    max_target_len: int | None
    feature_dir: Callable[[str], str]

    @property
    def images_per_example(self) -> int:
        return 2 if self.visual == "image_pair" else 1

    def load(self, root: str | Path, split: str, *, train: bool, **options: Any) -> list[Example]:
        """Read ``split`` of this task from the ``datasets/`` tree at ``root``."""
        return self.read(Path(root), split, train=train, **options)


_REGISTRY: dict[str, TaskSpec] = {}


def register(spec: TaskSpec) -> TaskSpec:
    """Add a task; a duplicate name or id is a programming error and fails at import."""
    if spec.name in _REGISTRY:
        raise ValueError(f"task '{spec.name}' is already registered")
    for other in _REGISTRY.values():
        if other.task_id == spec.task_id:
            raise ValueError(
                f"task id {spec.task_id} of '{spec.name}' is already used by '{other.name}'"
            )
    _REGISTRY[spec.name] = spec
    return spec


def get_task(name: str) -> TaskSpec:
    """Look a task up by name; an unknown name lists the known ones."""
    try:
        return _REGISTRY[name]
    except KeyError:
        raise KeyError(f"unknown task '{name}'; known tasks: {', '.join(task_names())}") from None


def task_names() -> list[str]:
    """Registered task names, ordered by task id."""
    return [s.name for s in sorted(_REGISTRY.values(), key=lambda s: s.task_id)]


def get_tasks(names: Sequence[str]) -> list[TaskSpec]:
    return [get_task(n) for n in names]
