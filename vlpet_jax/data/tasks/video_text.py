"""Pieces shared by the VALUE video readers: subtitles and time stamps (SPEC.md §6).

Subtitles: ``<root>/video/ann/{tv,how2,yc2}_subtitles.jsonl``, one ``{vid_name, sub: [{text,
start, end}]}`` per line.

Which subtitles go into the text: the released loaders (VL-Adapter / VL-PET
``video/{tvqa,tvc,yc2c}_data.py``) join **every** subtitle line of the clip, each ``text.strip()``,
with single spaces, in file order, ignoring the ``ts`` window; that is the default here, since it
produced the reported numbers. ``subtitle_window=True`` keeps only the lines that overlap the
example's ``ts`` window (``start < ts_end and end > ts_start``), an option for shorter inputs.

The time stamp is rendered exactly as the released code formats it, ``f"[TS] ({ts})"`` with the
JSON value as Python prints it: TVQA's ``"60.00-64.40"`` gives ``[TS] (60.00-64.40)`` and TVC's
``[60.0, 64.4]`` gives ``[TS] ([60.0, 64.4])``.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

from vlpet_jax.data.annotations import DataFormatError, expect_list, iter_jsonl, require

Subtitles = dict[str, list[dict[str, Any]]]


def load_subtitles(path: Path) -> Subtitles:
    """vid_name -> its subtitle lines."""
    subtitles: Subtitles = {}
    for line_no, record in iter_jsonl(path):
        where = f"line {line_no}"
        vid_name = str(require(record, "vid_name", path, where))
        subtitles[vid_name] = expect_list(
            require(record, "sub", path, where), path, f"a list under 'sub' ({where})"
        )
    return subtitles


def parse_ts(ts: Any, path: Path, where: str) -> tuple[float, float]:
    """``"st-ed"`` (TVQA) or ``[st, ed]`` (TVC) -> (st, ed) in seconds."""
    try:
        if isinstance(ts, str):
            start, end = ts.split("-")
            return float(start), float(end)
        if isinstance(ts, Sequence) and len(ts) == 2:
            return float(ts[0]), float(ts[1])
    except ValueError:
        pass
    raise DataFormatError(
        f"{path}: {where}: field 'ts' must be 'start-end' or [start, end], found {ts!r}"
    )


def subtitle_text(
    subtitles: Subtitles,
    vid_name: str,
    subtitle_path: Path,
    window: tuple[float, float] | None = None,
) -> str:
    """The clip's subtitle lines, stripped and space-joined; only those overlapping ``window``."""
    if vid_name not in subtitles:
        raise DataFormatError(f"{subtitle_path}: no subtitles for video '{vid_name}'")
    texts = []
    for k, line in enumerate(subtitles[vid_name]):
        where = f"video '{vid_name}', subtitle #{k}"
        if window is not None:
            start = float(require(line, "start", subtitle_path, where))
            end = float(require(line, "end", subtitle_path, where))
            if not (start < window[1] and end > window[0]):
                continue
        texts.append(str(require(line, "text", subtitle_path, where)).strip())
    return " ".join(texts)


def format_ts(ts: Any) -> str:
    return f"[TS] ({ts})"
