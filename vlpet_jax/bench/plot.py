"""The benchmark's figure: train-step examples/s per variant (bars) and our step time against
batch size and against text length (curves), from the records `launch.benchmark` writes."""

from __future__ import annotations

import os
from collections import Counter
from collections.abc import Sequence
from typing import Any

VARIANT_LABELS = {
    "ours_bf16": "ours (bf16 frozen)",
    "ours_fp32": "ours (fp32)",
    "ours_full_ft": "ours full FT",
    "torch_vl_pet": "PyTorch VL-PET",
    "peft_lora": "PEFT LoRA",
}


def _most_common(values: Sequence[Any]) -> Any:
    return Counter(values).most_common(1)[0][0]


def write_plot(records: Sequence[dict[str, Any]], png_path: str) -> str | None:
    """Write the PNG; None (and no file) when there are no train or scaling records."""
    train = [r for r in records if r["benchmark"] == "train"]
    scaling = [r for r in records if r["benchmark"] == "scaling"]
    if not train and not scaling:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(16, 4.5))
    _bars(axes[0], train)
    _curves(axes[1], axes[2], scaling)
    fig.tight_layout()
    os.makedirs(os.path.dirname(os.path.abspath(png_path)), exist_ok=True)
    fig.savefig(png_path, dpi=110)
    plt.close(fig)
    return png_path


def _bars(ax, train: Sequence[dict[str, Any]]) -> None:
    ax.set_title("train step: examples/s (higher is better)")
    if not train:
        ax.set_axis_off()
        return
    groups = list(dict.fromkeys(f"{r['family']}-{r['size']}" for r in train))
    variants = list(dict.fromkeys(r["variant"] for r in train))
    width = 0.8 / len(variants)
    for j, variant in enumerate(variants):
        xs, ys = [], []
        for i, group in enumerate(groups):
            for r in train:
                if f"{r['family']}-{r['size']}" == group and r["variant"] == variant:
                    xs.append(i + (j - (len(variants) - 1) / 2) * width)
                    ys.append(r["examples_per_s"])
        bars = ax.bar(xs, ys, width, label=VARIANT_LABELS.get(variant, variant))
        ax.bar_label(bars, fmt="%.1f", fontsize=7)
    ax.set_xticks(range(len(groups)), groups)
    ax.set_ylabel("examples/s")
    ax.legend(fontsize=8)


def _curves(ax_batch, ax_text, scaling: Sequence[dict[str, Any]]) -> None:
    ax_batch.set_title("our step time vs batch size")
    ax_text.set_title("our step time vs text length")
    if not scaling:
        ax_batch.set_axis_off()
        ax_text.set_axis_off()
        return
    base_text = _most_common([r["text_len"] for r in scaling])
    base_batch = _most_common([r["batch_size"] for r in scaling])
    for key in dict.fromkeys((r["family"], r["size"], r["variant"]) for r in scaling):
        rows = [r for r in scaling if (r["family"], r["size"], r["variant"]) == key]
        label = f"{key[0]}-{key[1]} {VARIANT_LABELS.get(key[2], key[2])}"
        by_batch = sorted(
            (r["batch_size"], r["step_ms"]) for r in rows if r["text_len"] == base_text
        )
        by_text = sorted(
            (r["text_len"], r["step_ms"]) for r in rows if r["batch_size"] == base_batch
        )
        if by_batch:
            ax_batch.plot(*zip(*by_batch), marker="o", label=label)
        if by_text:
            ax_text.plot(*zip(*by_text), marker="o", label=label)
    ax_batch.set_xlabel(f"batch size (text {base_text} + visual tokens)")
    ax_text.set_xlabel(f"text tokens (batch {base_batch}; + visual tokens)")
    for ax in (ax_batch, ax_text):
        ax.set_ylabel("step time (ms)")
        ax.grid(alpha=0.3)
        ax.legend(fontsize=8)
