"""Prediction files for the VALUE benchmark's evaluation server (SPEC §7).

The VALUE server (CodaLab) scores a zip of per-task files whose names and layout its scoring
programs fix (VALUE-Leaderboard/EvaluationTools, `scoring_program/` and `submission_data_sample/`):

* QA tasks (TVQA, How2QA): one `.json` object per split, `{"<qid>": answer_idx, ...}`, the keys
  being the question ids as strings and the values the chosen answer index as an int. The scorer
  requires the submitted ids to equal the ground-truth ids.
  Files: `tvqa_{val,test}_predictions.json`, `how2qa_{val,test_public}_predictions.json`.
* Caption tasks (TVC, YC2C): `.jsonl`, one object per clip:
  `{"vid_name": str, "clip_id": int, "ts": [start, end], "descs": [{"desc": str}]}`
  (YC2C lines have no `ts`). The scorer keys on the int `clip_id` and reads `descs[0]["desc"]`.
  Files: `tvc_{val,test}_predictions.jsonl`, `yc2c_{val,test}_predictions.jsonl`.

Files are written atomically (a temp file in the same folder, then a rename), so an interrupted
run never leaves a half-written submission behind.
"""

import json
import os
import tempfile
from collections.abc import Hashable, Mapping
from pathlib import Path
from typing import Any

from vlpet_jax.eval.exact_match import parse_choice

VALUE_QA_NUM_CHOICES: dict[str, int] = {"tvqa": 5, "how2qa": 4}
VALUE_CAPTION_TASKS: tuple[str, ...] = ("tvc", "yc2c")
# The split names the scoring programs look for (How2QA's test split is "test_public").
VALUE_SPLITS: dict[str, tuple[str, ...]] = {
    "tvqa": ("val", "test", "test_public"),
    "how2qa": ("val", "test_public"),
    "tvc": ("val", "test", "test_public"),
    "yc2c": ("val", "test"),
}


def value_prediction_filename(task: str, split: str) -> str:
    """The file name the VALUE scorer expects, e.g. `tvqa_test_predictions.json`."""
    if task not in VALUE_SPLITS:
        raise ValueError(f"VALUE task {task!r} is unknown; known tasks: {sorted(VALUE_SPLITS)}")
    if split not in VALUE_SPLITS[task]:
        raise ValueError(
            f"VALUE task {task!r} has no split {split!r}; expected one of {VALUE_SPLITS[task]}"
        )
    extension = "jsonl" if task in VALUE_CAPTION_TASKS else "json"
    return f"{task}_{split}_predictions.{extension}"


def atomic_write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Writes `text` to `path` through a temp file in the same folder and a rename."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp_name = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(handle, "w", encoding="utf-8") as temp_file:
            temp_file.write(text)
            temp_file.flush()
            os.fsync(temp_file.fileno())
        os.replace(temp_name, path)
    except BaseException:
        if os.path.exists(temp_name):
            os.remove(temp_name)
        raise
    return path


def _as_int_id(kind: str, key: Any) -> int:
    """VALUE ids are ints; accept ints and digit strings, reject anything else."""
    if isinstance(key, bool):
        raise ValueError(f"VALUE {kind} {key!r} must be an int or a string of digits")
    if isinstance(key, int):
        return key
    if isinstance(key, str) and key.isdigit():
        return int(key)
    raise ValueError(f"VALUE {kind} {key!r} must be an int or a string of digits")


def choice_indices_from_generations(
    generations: Mapping[Hashable, str], num_choices: int, fallback: int = 0
) -> tuple[dict[Hashable, int], list[Hashable]]:
    """Answer indices of generated `a<idx>` strings, plus the ids whose text names no choice.

    The server needs an index for every question; like the released trainer, a generation that
    names no valid choice gets `fallback` (0), and its id is returned so the caller can report it.
    """
    if not 0 <= fallback < num_choices:
        raise ValueError(f"fallback {fallback} is not a choice index below {num_choices}")
    indices: dict[Hashable, int] = {}
    unparsed: list[Hashable] = []
    for key, text in generations.items():
        index = parse_choice(text, num_choices) if isinstance(text, str) else None
        if index is None:
            unparsed.append(key)
            index = fallback
        indices[key] = index
    return indices, unparsed


def write_value_qa_predictions(
    path: str | os.PathLike[str], answer_indices: Mapping[Any, int], num_choices: int
) -> Path:
    """Writes a VALUE QA file `{"<qid>": answer_idx}` (TVQA: 5 choices, How2QA: 4)."""
    if not answer_indices:
        raise ValueError(f"VALUE QA predictions for {path}: nothing to write")
    payload: dict[str, int] = {}
    for key, index in answer_indices.items():
        qid = _as_int_id("question id", key)
        if isinstance(index, bool) or not isinstance(index, int) or not 0 <= index < num_choices:
            raise ValueError(
                f"VALUE QA question {key!r}: answer index must be an int in [0, {num_choices}), "
                f"found {index!r}"
            )
        if str(qid) in payload:
            raise ValueError(f"VALUE QA question id {qid} appears twice (as {key!r})")
        payload[str(qid)] = index
    return atomic_write_text(path, json.dumps(payload))


def _check_ts(clip_id: Any, ts: Any) -> list[float]:
    if (
        not isinstance(ts, list | tuple)
        or len(ts) != 2
        or not all(isinstance(t, int | float) and not isinstance(t, bool) for t in ts)
    ):
        raise ValueError(f"VALUE caption clip {clip_id!r}: 'ts' must be [start, end], found {ts!r}")
    return [ts[0], ts[1]]


def write_value_caption_predictions(
    path: str | os.PathLike[str],
    captions: Mapping[Any, str],
    clips: Mapping[Any, Mapping[str, Any]],
) -> Path:
    """Writes a VALUE caption `.jsonl` (TVC / YC2C), one line per clip, in `captions` order.

    `captions` maps clip_id -> generated description; `clips` maps clip_id -> the clip's
    annotation fields: `vid_name` (required) and `ts` (written unless absent or None: TVC clips
    have it, YC2C clips do not).
    """
    if not captions:
        raise ValueError(f"VALUE caption predictions for {path}: nothing to write")
    lines: list[str] = []
    seen: set[int] = set()
    for key, caption in captions.items():
        clip_id = _as_int_id("clip_id", key)
        if clip_id in seen:
            raise ValueError(f"VALUE caption clip_id {clip_id} appears twice (as {key!r})")
        seen.add(clip_id)
        if key not in clips:
            raise ValueError(f"VALUE caption clip {key!r}: no clip annotation given")
        info = clips[key]
        if not isinstance(info.get("vid_name"), str):
            raise ValueError(
                f"VALUE caption clip {key!r}: field 'vid_name' must be a string, "
                f"found {info.get('vid_name')!r}"
            )
        if not isinstance(caption, str):
            raise ValueError(
                f"VALUE caption clip {key!r}: description must be a string, found {caption!r}"
            )
        record: dict[str, Any] = {"vid_name": info["vid_name"], "clip_id": clip_id}
        if info.get("ts") is not None:
            record["ts"] = _check_ts(key, info["ts"])
        record["descs"] = [{"desc": caption}]
        lines.append(json.dumps(record))
    return atomic_write_text(path, "".join(line + "\n" for line in lines))
