"""TVQA and How2QA, VALUE release (SPEC.md §6).

Files: ``<root>/video/ann/tvqa/tvqa_{split}.jsonl`` (``{qid, q, a0..a4, answer_idx, ts, vid_name,
show_name}``) with ``ann/tv_subtitles.jsonl``; How2QA the same with four choices ``a0..a3`` in
``ann/how2qa/how2qa_{split}.jsonl`` (``train`` / ``val`` / ``test`` map to ``*_release`` /
``test_public_release``) with ``ann/how2_subtitles.jsonl``.

Input text, exactly as the released ``video/tvqa_data.py`` builds it (prompt at the END, ≤ 600
tokens with the usual right truncation)::

    [Subs] <subs> [Q] <q.strip()> [TS] (<ts>) [Choices] a0: <a0>. a1: <a1>. … tvqa:

where each choice is ``a{i}.strip(". ")`` followed by one ``.``, choices are space-joined, and the
subtitles and time stamp follow ``video_text.py``. The prompt is the released per-task one:
``"tvqa: "`` for TVQA and ``"how2qa: "`` for How2QA (SPEC.md's table writes ``tvqa:`` for both; the
released code, which produced the numbers, uses the task's own name). Target ``"a<answer_idx>"``.

References: ``qid``, ``vid_name``, ``answer`` (``"a<idx>"``, None without a label) and
``answer_idx``.
"""

from __future__ import annotations

from pathlib import Path

from vlpet_jax.data.annotations import (
    DataFormatError,
    iter_jsonl,
    require,
    require_nonempty,
    split_names,
)
from vlpet_jax.data.examples import Example
from vlpet_jax.data.tasks.registry import TaskSpec, register
from vlpet_jax.data.tasks.video_text import format_ts, load_subtitles, parse_ts, subtitle_text

RELEASE_SPLITS = {"train": "train_release", "val": "val_release", "test": "test_public_release"}


def format_choices(choices: list[str]) -> str:
    """``[Choices] a0: <text>. a1: <text>. …`` with trailing dots/spaces normalised to one dot."""
    rendered = " ".join(f"a{i}: {c.strip('. ')}." for i, c in enumerate(choices))
    return f"[Choices] {rendered}"


def read_multiple_choice(
    root: Path,
    split: str,
    *,
    train: bool,
    task: str,
    num_choices: int,
    subtitles_file: str,
    split_files: dict[str, str],
    prompt: str,
    subtitle_window: bool = False,
) -> list[Example]:
    """Read a VALUE multiple-choice QA split (TVQA: 5 choices, How2QA: 4)."""
    ann_dir = root / "video" / "ann"
    subtitle_path = ann_dir / subtitles_file
    subtitles = load_subtitles(subtitle_path)
    paths = [ann_dir / task / f"{task}_{split_files.get(s, s)}.jsonl" for s in split_names(split)]
    examples: list[Example] = []
    for path in paths:
        for line_no, datum in iter_jsonl(path):
            where = f"line {line_no}"
            qid = require(datum, "qid", path, where)
            question = str(require(datum, "q", path, where))
            vid_name = str(require(datum, "vid_name", path, where))
            ts = require(datum, "ts", path, where)
            choices = [str(require(datum, f"a{i}", path, where)) for i in range(num_choices)]
            answer = None
            if train or "answer_idx" in datum:
                answer_idx = require(datum, "answer_idx", path, where)
                if not isinstance(answer_idx, int) or not 0 <= answer_idx < num_choices:
                    raise DataFormatError(
                        f"{path}: {where}: field 'answer_idx' must be an integer in "
                        f"[0, {num_choices}), found {answer_idx!r}"
                    )
                answer = f"a{answer_idx}"
            window = parse_ts(ts, path, where) if subtitle_window else None
            subs = subtitle_text(subtitles, vid_name, subtitle_path, window)
            sent = " ".join(
                [
                    f"[Subs] {subs}",
                    f"[Q] {question.strip()}",
                    format_ts(ts),
                    format_choices(choices),
                ]
            )
            examples.append(
                Example(
                    task=task,
                    uid=str(qid),
                    input_text=f"{sent} {prompt}",
                    targets=(answer,) if answer else (),
                    target_scores=(1.0,) if answer else (),
                    feature_keys=(vid_name,),
                    references={
                        "qid": qid,
                        "vid_name": vid_name,
                        "answer": answer,
                        "answer_idx": datum.get("answer_idx"),
                    },
                )
            )
    require_nonempty(examples, task, split, paths)
    return examples


def read_tvqa(
    root: Path, split: str, *, train: bool, prompt: str = "tvqa: ", subtitle_window: bool = False
) -> list[Example]:
    return read_multiple_choice(
        root,
        split,
        train=train,
        task="tvqa",
        num_choices=5,
        subtitles_file="tv_subtitles.jsonl",
        split_files={},
        prompt=prompt,
        subtitle_window=subtitle_window,
    )


def read_how2qa(
    root: Path, split: str, *, train: bool, prompt: str = "how2qa: ", subtitle_window: bool = False
) -> list[Example]:
    return read_multiple_choice(
        root,
        split,
        train=train,
        task="how2qa",
        num_choices=4,
        subtitles_file="how2_subtitles.jsonl",
        split_files=RELEASE_SPLITS,
        prompt=prompt,
        subtitle_window=subtitle_window,
    )


TVQA_SPEC = register(
    TaskSpec(
        name="tvqa",
        task_id=4,
        read=read_tvqa,
        visual="video",
        loss_reduction="example",
        max_input_len=600,
        max_target_len=20,
        feature_dir=lambda split: "video/vis_features/tv/clip-vit",
    )
)
HOW2QA_SPEC = register(
    TaskSpec(
        name="how2qa",
        task_id=5,
        read=read_how2qa,
        visual="video",
        loss_reduction="example",
        max_input_len=600,
        max_target_len=20,
        feature_dir=lambda split: "video/vis_features/how2/clip-vit",
    )
)
