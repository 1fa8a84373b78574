"""The task-independent example record and the choice of its training target.

Every reader in ``vlpet_jax.data.tasks`` turns an official annotation file (SPEC.md §6) into a list
of :class:`Example`. Everything after that (tokenization, batching, the multi-task round-robin) is
the same for all eight tasks, so the record carries exactly what they need and nothing task-specific
beyond the free-form ``references`` used by evaluation.
"""

from __future__ import annotations

import bisect
import itertools
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class Example:
    """One model input with its candidate targets and its evaluation references.

    Attributes:
      task: registered task name (``vqa``, ``gqa``, ``nlvr``, ``caption``, ``tvqa``, ``how2qa``,
        ``tvc``, ``yc2c``).
      uid: unique id within the split, as a string (question id, NLVR2 uid, caption/desc id, ...).
      input_text: the exact encoder text, prompt included (SPEC.md §6 table).
      targets: candidate target texts; empty for unlabelled (test) data.
      target_scores: one score per target. Training draws one target with probability proportional
        to its score (VQA soft scores, SPEC.md §6); single-target tasks have score 1.0.
      score_weighted: when True the loss weight of a drawn target is its score (VQA only); otherwise
        the weight is 1.0.
      feature_keys: ids of the visual features: one image id, two for NLVR2 (img0, img1), or the
        video name.
      references: what evaluation compares against; the keys are documented by each reader.
    """

    task: str
    uid: str
    input_text: str
    targets: tuple[str, ...] = ()
    target_scores: tuple[float, ...] = ()
    score_weighted: bool = False
    feature_keys: tuple[str, ...] = ()
    references: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if len(self.targets) != len(self.target_scores):
            raise ValueError(
                f"{self.task} example {self.uid}: {len(self.targets)} targets but "
                f"{len(self.target_scores)} scores"
            )


def draw_target(example: Example, u: float) -> tuple[str, float]:
    """Pick the training target of ``example`` from one uniform number ``u`` in [0, 1).

    Returns ``(text, loss_weight)``. The target is drawn with probability proportional to its score
    by inverting the cumulative distribution, so the caller owns the randomness (an explicit,
    seeded generator; see ``multitask.py``) and a resumed run draws the same targets.

    Released behaviour kept (VL-T5 ``vqa_clip_data.py``): a label whose scores sum to 0, or a missing
    label, gives the empty target with loss weight 0. VQA weights the loss by the drawn score;
    other tasks weight by 1 (SPEC.md §6 "loss" column).
    """
    total = float(sum(example.target_scores))
    if not example.targets or total <= 0.0:
        return "", 0.0
    cumulative = list(itertools.accumulate(s / total for s in example.target_scores))
    index = min(bisect.bisect_right(cumulative, u), len(cumulative) - 1)
    # Skip zero-score candidates that bisect can land on only through rounding.
    while example.target_scores[index] <= 0.0 and index > 0:
        index -= 1
    score = float(example.target_scores[index])
    return example.targets[index], (score if example.score_weighted else 1.0)


def best_target(example: Example) -> tuple[str, float]:
    """The deterministic target used at evaluation: the highest score, first on ties."""
    if not example.targets or sum(example.target_scores) <= 0.0:
        return "", 0.0
    index = max(range(len(example.targets)), key=lambda i: (example.target_scores[i], -i))
    score = float(example.target_scores[index])
    return example.targets[index], (score if example.score_weighted else 1.0)
