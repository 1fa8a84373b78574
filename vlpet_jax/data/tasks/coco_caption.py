"""COCO Caption, Karpathy split (SPEC.md §6).

File: ``<root>/COCO/dataset_coco.json`` = ``{images: [{filename, split, sentences: [{raw, ...}],
cocoid, sentids, ...}]}``; ``split`` is one of train / restval / val / test.

Split ``train`` means Karpathy train + restval (113,287 images). With ``train=True`` there is one
example per caption (its target is that caption, ≤ 40 tokens); with ``train=False`` one example per
image, whose targets are all of its captions (the first is used for an evaluation loss). Input text
``"caption: "``. The image id is the file name without extension
(``COCO_val2014_000000391895``), which names the feature file.

References: ``img_id``, ``cocoid`` and ``captions`` (every raw caption of the image, stripped),
the reference set of the caption metrics (SPEC.md §7).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlpet_jax.data.annotations import (
    expect_list,
    load_json,
    require,
    require_nonempty,
    split_names,
)
from vlpet_jax.data.examples import Example
from vlpet_jax.data.tasks.registry import TaskSpec, register

TASK = "caption"
DEFAULT_PROMPT = "caption: "
ANNOTATION_FILE = "COCO/dataset_coco.json"
KARPATHY_SPLITS = {"train": ("train", "restval"), "val": ("val",), "test": ("test",)}
FEATURE_DIR = "COCO/clip_features/data_clip_RN101_att"


def read_coco_caption(
    root: Path, split: str, *, train: bool, prompt: str = DEFAULT_PROMPT
) -> list[Example]:
    """Read the Karpathy split(s) of COCO; one example per caption when ``train``."""
    path = root / ANNOTATION_FILE
    wanted = {k for s in split_names(split) for k in KARPATHY_SPLITS.get(s, (s,))}
    images = expect_list(
        require(load_json(path), "images", path, "top level"), path, "a list under 'images'"
    )
    examples: list[Example] = []
    for i, image in enumerate(images):
        where = f"image #{i}"
        if require(image, "split", path, where) not in wanted:
            continue
        filename = str(require(image, "filename", path, where))
        img_id = filename.rsplit(".", 1)[0]
        sentences = expect_list(
            require(image, "sentences", path, where), path, f"a list of sentences in {where}"
        )
        captions = [
            str(require(s, "raw", path, f"{where}, sentence #{k}")).strip()
            for k, s in enumerate(sentences)
        ]
        references: dict[str, Any] = {
            "img_id": img_id,
            "cocoid": image.get("cocoid"),
            "captions": captions,
        }
        if train:
            sentids = image.get("sentids") or [f"{img_id}#{k}" for k in range(len(captions))]
            for sentid, caption in zip(sentids, captions):
                examples.append(
                    Example(
                        task=TASK,
                        uid=str(sentid),
                        input_text=prompt,
                        targets=(caption,),
                        target_scores=(1.0,),
                        feature_keys=(img_id,),
                        references=references,
                    )
                )
        else:
            examples.append(
                Example(
                    task=TASK,
                    uid=str(image.get("cocoid", img_id)),
                    input_text=prompt,
                    targets=tuple(captions),
                    target_scores=(1.0,) * len(captions),
                    feature_keys=(img_id,),
                    references=references,
                )
            )
    require_nonempty(examples, TASK, split, [path])
    return examples


SPEC = register(
    TaskSpec(
        name=TASK,
        task_id=3,
        read=read_coco_caption,
        visual="image",
        loss_reduction="token",
        max_input_len=None,
        max_target_len=40,
        feature_dir=lambda split: FEATURE_DIR,
    )
)
