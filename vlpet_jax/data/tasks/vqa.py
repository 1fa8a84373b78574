"""VQAv2 (Karpathy splits) in the VL-T5 format (SPEC.md §6).

File: ``<root>/vqa/karpathy_{train,val,test}.json``, a list of
``{img_id, sent, question_id, label: {answer: score}, answer_type, question_type}``.

Input text ``"vqa: " + sent`` (≤ 20 tokens). Training draws one answer with probability ∝ its soft
score every time the example is drawn and weights that example's loss by the drawn score
(``Example.score_weighted``), as the released ``vqa_clip_data.py`` does.

References (``Example.references``): ``question_id`` (as in the file), ``label`` (answer -> soft
score), ``answer_type``, ``question_type``, and, with ``raw_answers=True``, ``answers``: the ten
human answer records ``{answer, answer_confidence, answer_id}`` of the raw VQA v2 annotations
(``<root>/vqa/v2_mscoco_{train,val}2014_annotations.json``), which the official accuracy needs
(SPEC.md §7).
"""

from __future__ import annotations

from numbers import Number
from pathlib import Path
from typing import Any

from vlpet_jax.data.annotations import (
    DataFormatError,
    expect_list,
    load_json,
    require,
    require_nonempty,
    split_names,
)
from vlpet_jax.data.examples import Example
from vlpet_jax.data.tasks.registry import TaskSpec, register

TASK = "vqa"
DEFAULT_PROMPT = "vqa: "
SPLIT_FILES = {"train": "karpathy_train", "val": "karpathy_val", "test": "karpathy_test"}
RAW_ANNOTATION_FILES = (
    "v2_mscoco_train2014_annotations.json",
    "v2_mscoco_val2014_annotations.json",
)
FEATURE_DIR = "COCO/clip_features/data_clip_RN101_att"


def check_label(label: Any, path: Path, where: str) -> dict[str, float]:
    """A soft label must map answer strings to numeric scores (VQA and GQA share the format)."""
    if not isinstance(label, dict) or not all(
        isinstance(a, str) and isinstance(s, Number) and not isinstance(s, bool)
        for a, s in label.items()
    ):
        raise DataFormatError(
            f"{path}: {where}: field 'label' must map answers to numeric scores, found {label!r}"
        )
    return {a: float(s) for a, s in label.items()}


def load_raw_answers(root: Path) -> dict[Any, list[dict[str, Any]]]:
    """question_id -> the ten raw answer records of the official VQA v2 annotation files."""
    answers: dict[Any, list[dict[str, Any]]] = {}
    for name in RAW_ANNOTATION_FILES:
        path = root / "vqa" / name
        data = load_json(path)
        records = require(data, "annotations", path, "top level")
        for i, record in enumerate(expect_list(records, path, "a list under 'annotations'")):
            where = f"annotation #{i}"
            qid = require(record, "question_id", path, where)
            answers[qid] = list(require(record, "answers", path, where))
    return answers


def read_vqa(
    root: Path,
    split: str,
    *,
    train: bool,
    prompt: str = DEFAULT_PROMPT,
    raw_answers: bool = False,
) -> list[Example]:
    """Read one or more comma-joined VQA splits (``train`` -> ``karpathy_train.json``).

    ``train=True`` requires every example to carry a label.
    """
    raw = load_raw_answers(root) if raw_answers else None
    paths = [root / "vqa" / f"{SPLIT_FILES.get(s, s)}.json" for s in split_names(split)]
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
            references: dict[str, Any] = {
                "question_id": qid,
                "label": label,
                "answer_type": datum.get("answer_type"),
                "question_type": datum.get("question_type"),
            }
            if raw is not None:
                if qid not in raw:
                    raise DataFormatError(
                        f"{path}: {where}: question_id {qid!r} is not in the raw VQA v2 "
                        f"annotations ({', '.join(RAW_ANNOTATION_FILES)} under {root / 'vqa'})"
                    )
                references["answers"] = raw[qid]
            examples.append(
                Example(
                    task=TASK,
                    uid=str(qid),
                    input_text=f"{prompt}{sent}",
                    targets=tuple(label),
                    target_scores=tuple(label.values()),
                    score_weighted=True,
                    feature_keys=(img_id,),
                    references=references,
                )
            )
    require_nonempty(examples, TASK, split, paths)
    return examples


SPEC = register(
    TaskSpec(
        name=TASK,
        task_id=0,
        read=read_vqa,
        visual="image",
        loss_reduction="example",
        max_input_len=20,
        max_target_len=10,
        feature_dir=lambda split: FEATURE_DIR,
    )
)
