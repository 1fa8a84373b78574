"""NLVR2 in the VL-T5 format (SPEC.md §6).

File: ``<root>/nlvr/{train,valid,test}.json``, a list of
``{identifier, img0, img1, label: 0|1, sent, uid}``.

Input text ``"nlvr: " + sent`` (no truncation, as released); target ``"true"`` (label 1) or
``"false"`` (label 0). Two images per example: ``feature_keys = (img0, img1)``, pooled to 72 tokens
(SPEC.md §2).

References: ``uid``, ``identifier`` (used for the consistency metric, SPEC.md §7) and ``label``
(0/1, None when the file has none).
"""

from __future__ import annotations

from pathlib import Path

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

TASK = "nlvr"
DEFAULT_PROMPT = "nlvr: "
ANSWERS = {0: "false", 1: "true"}
FEATURE_DIR = "nlvr/clip_features/data_clip_RN101_att"


def read_nlvr2(
    root: Path, split: str, *, train: bool, prompt: str = DEFAULT_PROMPT
) -> list[Example]:
    """Read one or more comma-joined NLVR2 splits; ``train=True`` requires labels."""
    paths = [root / "nlvr" / f"{s}.json" for s in split_names(split)]
    examples: list[Example] = []
    for path in paths:
        for i, datum in enumerate(expect_list(load_json(path), path)):
            where = f"example #{i}"
            uid = str(require(datum, "uid", path, where))
            identifier = str(require(datum, "identifier", path, where))
            img0 = str(require(datum, "img0", path, where))
            img1 = str(require(datum, "img1", path, where))
            sent = str(require(datum, "sent", path, where))
            label = None
            if train or "label" in datum:
                label = require(datum, "label", path, where)
                if label not in ANSWERS or isinstance(label, bool):
                    raise DataFormatError(
                        f"{path}: {where}: field 'label' must be 0 or 1, found {label!r}"
                    )
            examples.append(
                Example(
                    task=TASK,
                    uid=uid,
                    input_text=f"{prompt}{sent}",
                    targets=(ANSWERS[label],) if label is not None else (),
                    target_scores=(1.0,) if label is not None else (),
                    feature_keys=(img0, img1),
                    references={"uid": uid, "identifier": identifier, "label": label},
                )
            )
    require_nonempty(examples, TASK, split, paths)
    return examples


SPEC = register(
    TaskSpec(
        name=TASK,
        task_id=2,
        read=read_nlvr2,
        visual="image_pair",
        loss_reduction="example",
        max_input_len=None,
        max_target_len=None,
        feature_dir=lambda split: FEATURE_DIR,
    )
)
