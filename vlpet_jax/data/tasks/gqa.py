"""GQA in the VL-T5 format (SPEC.md §6).

File: ``<root>/GQA/{train,valid,testdev}.json``, a list of
``{img_id, sent, question_id, label: {answer: 1.0}}``.

Input text ``"gpa: " + sent``: the released code's prefix (a typo of "gqa: " that the released
checkpoints were trained with); pass ``prompt="gqa: "`` to change it. ≤ 20 input tokens. The target
is the answer (drawn ∝ score like VQA, but every GQA label has a single answer); the loss is not
weighted by the score.

Features: train/valid images are Visual Genome images (``VG/clip_features/...``); testdev/submit
images live under ``GQA/clip_features/...``, as in the released loader.

References: ``question_id`` (as in the file) and ``label`` (answer -> score); evaluation is exact
match against the label's answers.
"""

from __future__ import annotations

from pathlib import Path

from vlpet_jax.data.annotations import (
    expect_list,
    load_json,
    require,
    require_nonempty,
    split_names,
)
from vlpet_jax.data.examples import Example
from vlpet_jax.data.tasks.registry import TaskSpec, register
from vlpet_jax.data.tasks.vqa import check_label

TASK = "gqa"
DEFAULT_PROMPT = "gpa: "
VG_FEATURE_DIR = "VG/clip_features/data_clip_RN101_att"
GQA_FEATURE_DIR = "GQA/clip_features/data_clip_RN101_att"


def feature_dir(split: str) -> str:
    first = split_names(split)[0]
    return GQA_FEATURE_DIR if first in ("testdev", "submit") else VG_FEATURE_DIR


def read_gqa(root: Path, split: str, *, train: bool, prompt: str = DEFAULT_PROMPT) -> list[Example]:
    """Read one or more comma-joined GQA splits; ``train=True`` requires labels."""
    paths = [root / "GQA" / f"{s}.json" for s in split_names(split)]
    examples: list[Example] = []
    for path in paths:
        for i, datum in enumerate(expect_list(load_json(path), path)):
            where = f"example #{i}"
            img_id = str(require(datum, "img_id", path, where))
            sent = str(require(datum, "sent", path, where))
            qid = require(datum, "question_id", path, where)
            has_label = train or "label" in datum
            label = (
                check_label(require(datum, "label", path, where), path, where) if has_label else {}
            )
            examples.append(
                Example(
                    task=TASK,
                    uid=str(qid),
                    input_text=f"{prompt}{sent}",
                    targets=tuple(label),
                    target_scores=tuple(label.values()),
                    score_weighted=False,
                    feature_keys=(img_id,),
                    references={"question_id": qid, "label": label},
                )
            )
    require_nonempty(examples, TASK, split, paths)
    return examples


SPEC = register(
    TaskSpec(
        name=TASK,
        task_id=1,
        read=read_gqa,
        visual="image",
        loss_reduction="example",
        max_input_len=20,
        max_target_len=None,
        feature_dir=feature_dir,
    )
)
