"""The README's benchmark summary, rendered from the records `launch.benchmark` writes, so the
numbers in README.md are printed by the same command that measured them and are never copied by
hand. `launch.benchmark --readme=README.md` puts the block between the two marker lines below;
the analysis prose after the closing marker stays hand-written."""

from __future__ import annotations

import math
import os
import textwrap
from collections.abc import Callable, Sequence
from typing import Any

OPEN_MARKER = "<!-- benchmark-table -->"
CLOSE_MARKER = "<!-- /benchmark-table -->"
FAMILY_ORDER = ("bart", "t5")
FAMILY_LABELS = {"bart": "BART", "t5": "T5"}
# Record kinds the table reads; the block names those present (train_summary goes with train).
KINDS_USED = ("train", "train_summary", "optstate", "decode", "matmul")
NA = "n/a"

Record = dict[str, Any]


def _find(records: Sequence[Record], kind: str, **match: Any) -> Record | None:
    """The last record of `kind` whose fields equal `match` (with `--merge` the newest wins)."""
    found = None
    for r in records:
        if r.get("benchmark") == kind and all(r.get(k) == v for k, v in match.items()):
            found = r
    return found


def _families(records: Sequence[Record], size: str) -> list[str]:
    """Families with any summarised record at `size`, BART first then T5 then any other."""
    present = {
        r["family"] for r in records if r.get("benchmark") in KINDS_USED and r.get("size") == size
    }
    ordered = [f for f in FAMILY_ORDER if f in present] + sorted(present - set(FAMILY_ORDER))
    return ordered or list(FAMILY_ORDER)


def _loss_cell(s: Record | None) -> str:
    if s is None or s.get("loss_ours_fp32") is None or s.get("loss_torch") is None:
        return NA
    ours, torch = s["loss_ours_fp32"], s["loss_torch"]
    if ours == torch:
        return f"{ours} = {torch}"
    return f"{ours} vs {torch} ({s['loss_rel_diff']:.1e} relative)"


def _ratio_pair(s: Record | None) -> str:
    def ratio(key: str) -> str:
        return NA if s is None or s.get(key) is None else f"{s[key]:.2f}x"

    return f"{ratio('fp32_over_torch')}, {ratio('fp32_over_peft')}"


def _decode_cell(d: Record | None) -> str:
    if d is None:
        return NA
    ours, hf = d["ours_tokens_per_s"], d["hf_generate_tokens_per_s"]
    return f"{ours:.0f} / {hf:.0f} ({d['speedup']:.2f}x)"


def _bf16_label(summaries: Sequence[Record]) -> str:
    """The bf16 row states how close its loss came to fp32: the largest relative difference over
    the families shown, rounded up to a power of ten (what the suite checked, not its tolerance)."""
    diffs = [s["loss_bf16_rel_diff"] for s in summaries if s.get("loss_bf16_rel_diff") is not None]
    if not diffs:
        return "ours, frozen bf16 (examples/s)"
    worst = max(diffs)
    bound = "0" if worst <= 0 else f"1e{math.ceil(math.log10(worst))}"
    return f"ours, frozen bf16 (examples/s; loss within {bound} relative of fp32)"


def _wrap(text: str) -> str:
    """Prose lines at the README's width (Markdown joins them back into one paragraph)."""
    return textwrap.fill(text, width=100, break_long_words=False, break_on_hyphens=False)


def machine_line(machine: dict[str, Any]) -> str:
    """`Machine: CPU, N cores (SIMD), Python x, jax y, torch z.` from `machine_description()`."""
    cores = f"{machine.get('cores', '?')} cores"
    if machine.get("simd"):
        cores += f" ({machine['simd']})"
    parts = [machine.get("cpu", "unknown CPU"), cores, f"Python {machine.get('python', '?')}"]
    parts += [f"{lib} {machine[lib]}" for lib in ("jax", "torch") if machine.get(lib)]
    return "Machine: " + ", ".join(parts) + "."


def _matmul_line(matmul: Record | None, tables: str) -> str:
    if matmul is None:
        return f"No matmul-rate record (run the train or scaling suite). Full tables: `{tables}`."
    return (
        f"Measured dense {matmul['n']}x{matmul['n']} matmul rates: "
        f"jax fp32 {matmul['jax_fp32_gflops']:.0f} GFLOP/s, "
        f"jax bf16 (f32 accumulation) {matmul['jax_bf16_gflops']:.0f} GFLOP/s, "
        f"torch fp32 {matmul['torch_fp32_gflops']:.0f} GFLOP/s. Full tables: `{tables}`."
    )


def readme_summary(
    records: Sequence[Record],
    machine: dict[str, Any],
    command: str,
    *,
    size: str = "base",
    results_path: str = "benchmarks/results.json",
) -> str:
    """The Markdown block between the README markers (without the markers): machine, the command
    that wrote it, one table column per family at `size`, and the matmul rates. A cell whose record
    is missing reads "n/a", so a partial run still renders."""
    families = _families(records, size)

    def train(family: str, variant: str) -> Record | None:
        return _find(records, "train", family=family, size=size, variant=variant)

    def summary(family: str) -> Record | None:
        return _find(records, "train_summary", family=family, size=size)

    def optstate_share(family: str) -> str:
        pet = _find(records, "optstate", family=family, size=size, method="vl_pet_large")
        return NA if pet is None else f"{pet['pct_of_full_ft']:.2f}%"

    def examples_per_s(variant: str) -> Callable[[str], str]:
        def cell(family: str) -> str:
            r = train(family, variant)
            return NA if r is None else f"{r['examples_per_s']:.2f}"

        return cell

    def from_summary(key: str, fmt: Callable[[float], str]) -> Callable[[str], str]:
        def cell(family: str) -> str:
            s = summary(family)
            return NA if s is None or s.get(key) is None else fmt(s[key])

        return cell

    def decode(search: str) -> Callable[[str], str]:
        return lambda f: _decode_cell(_find(records, "decode", family=f, size=size, search=search))

    summaries = [s for s in map(summary, families) if s is not None]
    rows: list[tuple[str, Callable[[str], str]]] = [
        ("loss, ours fp32 vs PyTorch reference (same weights, batch)",
         lambda f: _loss_cell(summary(f))),
        ("ours, frozen fp32 (examples/s)", examples_per_s("ours_fp32")),
        (_bf16_label(summaries), examples_per_s("ours_bf16")),
        ("ours, full fine-tuning (examples/s)", examples_per_s("ours_full_ft")),
        ("PyTorch VL-PET reference, eager fp32 (examples/s)", examples_per_s("torch_vl_pet")),
        ("PEFT LoRA (examples/s)", examples_per_s("peft_lora")),
        ("ours / PyTorch reference, ours / PEFT", lambda f: _ratio_pair(summary(f))),
        ("PET step / full fine-tuning step (time)",
         from_summary("pet_fp32_over_full_ft_time", lambda v: f"{v:.2f}")),
        ("model FLOPs utilisation, fp32 step vs measured jnp.dot rate",
         from_summary("mfu_fp32", lambda v: f"{100 * v:.0f}%")),
        ("optimiser state, VL-PET-large / full fine-tuning", optstate_share),
        ("greedy decode, ours / HF `generate` (tokens/s)", decode("greedy")),
        ("beam-5 decode, ours / HF `generate` (tokens/s)", decode("beam5")),
    ]  # fmt: skip

    present = {r.get("benchmark") for r in records}
    kinds = [k for k in KINDS_USED if k in present and k != "train_summary"]
    used = (", ".join(kinds[:-1]) + " and " + kinds[-1]) if len(kinds) > 1 else "".join(kinds)
    provenance = f"Printed by `{command}` from the {used or 'no'} records in `{results_path}`"
    if "--merge" in command:
        provenance += (
            " (with `--merge`, suites that command did not run keep their earlier records)"
        )
    header = "| | " + " | ".join(f"{FAMILY_LABELS.get(f, f)}-{size}" for f in families) + " |"
    lines = [
        _wrap(machine_line(machine)),
        _wrap(provenance + "."),
        "",
        header,
        "|---|" + "---|" * len(families),
        *("| " + " | ".join([label, *(cell(f) for f in families)]) + " |" for label, cell in rows),
        "",
        _wrap(_matmul_line(_find(records, "matmul"), os.path.splitext(results_path)[0] + ".md")),
    ]
    return "\n".join(lines) + "\n"


def replace_readme_block(readme_text: str, block: str, readme_path: str = "README.md") -> str:
    """`readme_text` with the lines between the marker lines replaced by `block`; everything else,
    markers included, is kept byte for byte. Missing markers are an error rather than an append,
    so a moved or deleted section is noticed instead of silently duplicated."""
    lines = readme_text.splitlines(keepends=True)
    stripped = [line.strip() for line in lines]
    for marker in (OPEN_MARKER, CLOSE_MARKER):
        if marker not in stripped:
            raise ValueError(f"{readme_path}: no line {marker!r} (the benchmark summary's markers)")
    start = stripped.index(OPEN_MARKER)
    end = stripped.index(CLOSE_MARKER, start) if CLOSE_MARKER in stripped[start:] else -1
    if end < 0:
        raise ValueError(f"{readme_path}: no line {CLOSE_MARKER!r} after {OPEN_MARKER!r}")
    body = block if block.endswith("\n") or not block else block + "\n"
    return "".join(lines[: start + 1]) + body + "".join(lines[end:])
