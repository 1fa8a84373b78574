"""Writing benchmark records: one JSON file (for plots and diffs) and a Markdown table (for the
README), both replaced atomically so a crashed run never leaves half a file."""

from __future__ import annotations

import json
import os
import tempfile
from collections.abc import Sequence
from typing import Any

from vlpet_jax.bench.summary import machine_line


def atomic_write_text(path: str, text: str) -> None:
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=directory, prefix=".tmp-")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o644)  # mkstemp makes it private; results are for everyone to read
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.remove(tmp)
        raise


def markdown_table(records: Sequence[dict[str, Any]]) -> str:
    """One table per benchmark kind, columns in first-seen order."""
    out = []
    kinds = list(dict.fromkeys(r["benchmark"] for r in records))
    for kind in kinds:
        rows = [r for r in records if r["benchmark"] == kind]
        columns = list(dict.fromkeys(k for r in rows for k in r if k != "benchmark"))
        out.append(f"**{kind}**\n")
        out.append("| " + " | ".join(columns) + " |")
        out.append("|" + "---|" * len(columns))
        for r in rows:
            out.append("| " + " | ".join(str(r.get(c, "")) for c in columns) + " |")
        out.append("")
    return "\n".join(out)


def write_results(
    records: Sequence[dict[str, Any]],
    machine: dict[str, Any],
    json_path: str,
    summary: str = "",
) -> str:
    """Write the JSON and the Markdown next to it. `summary` (the README block, which opens with
    its own fuller machine line) replaces the one-line machine header, so the Markdown alone
    carries the headline numbers above the per-kind tables."""
    payload = {"machine": machine, "records": list(records)}
    atomic_write_text(json_path, json.dumps(payload, indent=2) + "\n")
    md_path = os.path.splitext(json_path)[0] + ".md"
    header = summary or machine_line(machine) + "\n"
    atomic_write_text(md_path, header + "\n" + markdown_table(records))
    return md_path


def _suite_of(record: dict) -> str:
    # Record kinds are `<suite>` or `<suite>_<detail>` (pipeline_consolidate, train_summary).
    return record["benchmark"].split("_")[0]


def merge_records(path: str, new: list[dict]) -> list[dict]:
    """`--merge`: the existing file's records that this run does not replace, then the new ones.
    A record is replaced when the new ones hold its suite for its family and size (records
    without a size by suite and family, records without a family by suite), so
    `--suites=train --families=bart` keeps T5's and `--suites=decode --sizes=base` the tiny ones."""
    if not os.path.exists(path):
        return new
    exact = {(_suite_of(r), r.get("family"), r.get("size")) for r in new}
    by_family = {(suite, family) for suite, family, _ in exact}
    by_suite = {suite for suite, _, _ in exact}

    def replaced(r: dict) -> bool:
        suite, family, size = _suite_of(r), r.get("family"), r.get("size")
        if family is None:
            return suite in by_suite
        if size is None:
            return (suite, family) in by_family
        return (suite, family, size) in exact

    with open(path) as f:
        old = json.load(f)["records"]
    return [r for r in old if not replaced(r)] + new
