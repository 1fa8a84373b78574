"""Reading annotation files with errors a user can act on.

Every task reader (SPEC.md §6) goes through these helpers so that a malformed file always fails the
same way: the message names the file, the line (JSON lines) or the example index (JSON lists), the
field, and what was expected versus found (STYLE.md rule 8).
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any


class DataFormatError(ValueError):
    """An annotation or feature file does not match the format SPEC.md §2 / §6 describes."""


def load_json(path: str | Path) -> Any:
    """Load one JSON document; a syntax error reports the file, line and column."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open(encoding="utf-8") as f:
        try:
            return json.load(f)
        except json.JSONDecodeError as e:
            raise DataFormatError(f"{path}:{e.lineno}:{e.colno}: invalid JSON ({e.msg})") from None


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """Yield ``(line_number, record)`` for every non-blank line of a JSON-lines file.

    The VALUE video annotations (SPEC.md §6) are JSON lines; a bad line names its line number so the
    user can open the file at that line.
    """
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"annotation file not found: {path}")
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataFormatError(
                    f"{path}:{line_no}: invalid JSON line ({e.msg} at column {e.colno})"
                ) from None
            if not isinstance(record, dict):
                raise DataFormatError(
                    f"{path}:{line_no}: expected a JSON object, found {type(record).__name__}"
                )
            yield line_no, record


def expect_list(data: Any, path: str | Path, what: str = "a JSON list of examples") -> list[Any]:
    """Check that a loaded document is a list (the VL-T5 image annotations are lists)."""
    if not isinstance(data, list):
        raise DataFormatError(f"{path}: expected {what}, found {type(data).__name__}")
    return data


def require(record: Any, field: str, path: str | Path, where: str) -> Any:
    """Return ``record[field]`` or fail naming the field, the example and the file.

    ``where`` locates the record, e.g. ``"example #3"`` or ``"line 12"``.
    """
    if not isinstance(record, Mapping):
        raise DataFormatError(
            f"{path}: {where}: expected a JSON object, found {type(record).__name__}"
        )
    if field not in record:
        present = ", ".join(sorted(map(str, record))) or "none"
        raise DataFormatError(
            f"{path}: {where}: missing field '{field}' (fields present: {present})"
        )
    return record[field]


def require_nonempty(items: Sequence[Any], task: str, split: str, sources: Sequence[Path]) -> None:
    """An empty split is always a mistake (wrong split name, truncated file): fail loudly."""
    if not items:
        files = ", ".join(str(p) for p in sources)
        raise DataFormatError(f"task '{task}', split '{split}': no examples found in {files}")


def split_names(split: str) -> list[str]:
    """``"train,val"`` -> ``["train", "val"]``, as the released loaders accept comma-joined splits."""
    names = [s.strip() for s in split.split(",") if s.strip()]
    if not names:
        raise ValueError(f"empty split name: {split!r}")
    return names
