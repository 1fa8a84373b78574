"""TVC and YC2C video captioning, VALUE release (SPEC.md §6).

Files: ``<root>/video/ann/tvc/tvc_{split}.jsonl`` and ``ann/yc2c/yc2c_{split}.jsonl``
(``train`` / ``val`` / ``test`` map to ``*_release`` / ``test_public_release``), one clip per line:
``{vid_name, duration, ts, descs: [{desc, desc_id}], clip_id}`` (YC2C has no ``ts``; unlabelled test
lines have no ``descs``). Subtitles: ``ann/tv_subtitles.jsonl`` (TVC) and ``ann/yc2_subtitles.jsonl``
(YC2C).

Input text as the released ``video/{tvc,yc2c}_data.py`` build it::

    TVC:  [Subs] <subs> [TS] (<ts>) tvc:
    YC2C: [Subs] <subs> yc2c:

(subtitles and time stamp as in ``video_text.py``; ≤ 600 tokens). The prompt is the released
per-task one, ``"tvc: "`` / ``"yc2c: "``.

``train=True``: one example per description (target = that description, ≤ 20 tokens), as released.
``train=False``: one example per clip whose references are all its descriptions, the multi-reference
set the VALUE evaluation scores CIDEr against. (The released validation loop instead scored every
description as its own single-reference example; ``per_desc_eval=True`` reproduces that.)

References: ``vid_name``, ``clip_id`` (None when absent), ``ts`` (None for YC2C), ``duration`` and
``descs`` (all description texts of the clip).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from vlpet_jax.data.annotations import (
    expect_list,
    iter_jsonl,
    require,
    require_nonempty,
    split_names,
)
from vlpet_jax.data.examples import Example
from vlpet_jax.data.tasks.registry import TaskSpec, register
from vlpet_jax.data.tasks.tvqa import RELEASE_SPLITS
from vlpet_jax.data.tasks.video_text import format_ts, load_subtitles, parse_ts, subtitle_text


def read_video_caption(
    root: Path,
    split: str,
    *,
    train: bool,
    task: str,
    subtitles_file: str,
    with_ts: bool,
    prompt: str,
    subtitle_window: bool = False,
    per_desc_eval: bool = False,
) -> list[Example]:
    """Read a VALUE captioning split; see the module docstring for the text and the expansion."""
    ann_dir = root / "video" / "ann"
    subtitle_path = ann_dir / subtitles_file
    subtitles = load_subtitles(subtitle_path)
    paths = [
        ann_dir / task / f"{task}_{RELEASE_SPLITS.get(s, s)}.jsonl" for s in split_names(split)
    ]
    examples: list[Example] = []
    for path in paths:
        for line_no, datum in iter_jsonl(path):
            where = f"line {line_no}"
            vid_name = str(require(datum, "vid_name", path, where))
            ts = require(datum, "ts", path, where) if with_ts else None
            descs: list[tuple[str, str]] = []
            if train or "descs" in datum:
                raw_descs = expect_list(
                    require(datum, "descs", path, where), path, f"a list under 'descs' ({where})"
                )
                for k, d in enumerate(raw_descs):
                    desc_where = f"{where}, desc #{k}"
                    descs.append(
                        (
                            str(require(d, "desc", path, desc_where)),
                            str(require(d, "desc_id", path, desc_where)),
                        )
                    )
            window = parse_ts(ts, path, where) if (subtitle_window and with_ts) else None
            parts = [f"[Subs] {subtitle_text(subtitles, vid_name, subtitle_path, window)}"]
            if with_ts:
                parts.append(format_ts(ts))
            input_text = f"{' '.join(parts)} {prompt}"
            clip_id = datum.get("clip_id")
            references: dict[str, Any] = {
                "vid_name": vid_name,
                "clip_id": clip_id,
                "ts": ts,
                "duration": datum.get("duration"),
                "descs": [text for text, _ in descs],
            }
            common = dict(task=task, input_text=input_text, feature_keys=(vid_name,))
            if train or per_desc_eval:
                for text, desc_id in descs:
                    examples.append(
                        Example(
                            uid=desc_id,
                            targets=(text,),
                            target_scores=(1.0,),
                            references=references,
                            **common,
                        )
                    )
            else:
                uid = str(clip_id) if clip_id is not None else f"{vid_name}@{ts}"
                examples.append(
                    Example(
                        uid=uid,
                        targets=tuple(t for t, _ in descs),
                        target_scores=(1.0,) * len(descs),
                        references=references,
                        **common,
                    )
                )
    require_nonempty(examples, task, split, paths)
    return examples


def read_tvc(
    root: Path,
    split: str,
    *,
    train: bool,
    prompt: str = "tvc: ",
    subtitle_window: bool = False,
    per_desc_eval: bool = False,
) -> list[Example]:
    return read_video_caption(
        root,
        split,
        train=train,
        task="tvc",
        subtitles_file="tv_subtitles.jsonl",
        with_ts=True,
        prompt=prompt,
        subtitle_window=subtitle_window,
        per_desc_eval=per_desc_eval,
    )


def read_yc2c(
    root: Path, split: str, *, train: bool, prompt: str = "yc2c: ", per_desc_eval: bool = False
) -> list[Example]:
    return read_video_caption(
        root,
        split,
        train=train,
        task="yc2c",
        subtitles_file="yc2_subtitles.jsonl",
        with_ts=False,
        prompt=prompt,
        per_desc_eval=per_desc_eval,
    )


TVC_SPEC = register(
    TaskSpec(
        name="tvc",
        task_id=6,
        read=read_tvc,
        visual="video",
        loss_reduction="example",
        max_input_len=600,
        max_target_len=20,
        feature_dir=lambda split: "video/vis_features/tv/clip-vit",
    )
)
YC2C_SPEC = register(
    TaskSpec(
        name="yc2c",
        task_id=7,
        read=read_yc2c,
        visual="video",
        loss_reduction="example",
        max_input_len=600,
        max_target_len=20,
        feature_dir=lambda split: "video/vis_features/yc2/clip-vit",
    )
)
