"""The demo's outputs a person reads: a results table, training curves and a gate heat-map."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

COLUMNS = (
    ("trainable%", "trainable_percent", "{:.2f}"),
    ("VQA score", "vqa_score", "{:.1f}"),
    ("GQA acc", "gqa_accuracy", "{:.1f}"),
    ("NLVR2 acc", "nlvr_accuracy", "{:.1f}"),
    ("COCO CIDEr", "caption_CIDEr", "{:.1f}"),
    ("examples/s", "examples_per_s", "{:.0f}"),
)


def results_table(rows: Sequence[Mapping[str, Any]]) -> str:
    header = "| run | " + " | ".join(name for name, _, _ in COLUMNS) + " |"
    lines = [header, "|" + "---|" * (len(COLUMNS) + 1)]
    for row in rows:
        cells = []
        for _, key, fmt in COLUMNS:
            value = row.get(key)
            cells.append(fmt.format(value) if isinstance(value, int | float) else "-")
        lines.append(f"| {row['run']} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def stage_table(seconds: Mapping[str, float]) -> str:
    """Wall time of each stage, in the order the stages ran, and their sum."""
    lines = ["| stage | wall time (s) |", "|---|---|"]
    lines += [f"| {stage} | {value:.0f} |" for stage, value in seconds.items()]
    lines.append(f"| total | {sum(seconds.values()):.0f} |")
    return "\n".join(lines)


def plot_training_curves(run_dirs: Mapping[str, str], out_path: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name, directory in run_dirs.items():
        steps, losses = [], []
        with open(os.path.join(directory, "metrics.jsonl")) as f:
            for line in f:
                record = json.loads(line)
                if record.get("split") == "train" and "loss" in record:
                    steps.append(record["step"])
                    losses.append(record["loss"])
        ax.plot(steps, losses, label=name)
    ax.set_xlabel("step")
    ax.set_ylabel("training loss (logged steps)")
    ax.set_title("Synthetic image-text benchmark: training curves")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)


def plot_gate_heatmap(matrix: Any, row_labels: Sequence[str], out_path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    matrix = np.asarray(matrix, dtype=float)
    fig, ax = plt.subplots(figsize=(8, 0.5 + 0.35 * len(row_labels)))
    image = ax.imshow(matrix, aspect="auto", cmap="viridis")
    ax.set_yticks(range(len(row_labels)), row_labels, fontsize=7)
    ax.set_xlabel("channel" if matrix.shape[1] > 1 else "")
    ax.set_title(title)
    fig.colorbar(image, ax=ax)
    fig.tight_layout()
    fig.savefig(out_path, dpi=120)
    plt.close(fig)
