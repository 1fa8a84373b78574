"""Scores per question type: which kinds of question a run answers, next to the text-only guess.

A task's headline number mixes question kinds whose text-only priors differ a lot ("is there a
...?" is a coin flip, "what color is the ...?" one in six), so a run that has learned only each
kind's prior can sit near the text-only baseline overall while reading no image. Split by
question type (the prompt and the question's opening words, as the text-only guesser groups
them), the table shows per kind whether a run beats the text alone. Scores use the same metric
functions as the headline numbers: the VL-T5 soft score for VQA, exact match for GQA, accuracy
for NLVR2.
"""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

from vlpet_jax.data.examples import Example
from vlpet_jax.eval import gqa_accuracy, nlvr2_metrics_by_uid

# The question-answering tasks that have question types (captions have one prompt), with the
# (training, validation) splits the demo reads of each.
QA_SPLITS = {"vqa": ("train", "val"), "gqa": ("train", "valid"), "nlvr": ("train", "valid")}
QA_TASKS = tuple(QA_SPLITS)

Scores = dict[tuple[str, str], tuple[float, int]]  # (task, question type) -> (score, count)


def question_type(text: str, words: int = 4) -> str:
    """The first words of a task input: its prompt and the question's opening words."""
    return " ".join(text.split()[:words])


def scores_by_question_type(
    task: str, examples: Sequence[Example], predictions: Mapping[str, Any]
) -> Scores:
    """(task, question type) -> (score in %, number of examples), predictions keyed by uid
    (NLVR2's values are bools or "true"/"false", as the evaluator writes them). An example
    without a prediction counts as wrong, as in the headline metrics."""
    groups: dict[str, list[Example]] = {}
    for example in examples:
        groups.setdefault(question_type(example.input_text), []).append(example)
    return {
        (task, kind): (_score(task, group, predictions), len(group))
        for kind, group in sorted(groups.items())
    }


def _score(task: str, examples: Sequence[Example], predictions: Mapping[str, Any]) -> float:
    present = [ex for ex in examples if ex.uid in predictions]
    if task == "nlvr":
        preds = {ex.uid: predictions[ex.uid] for ex in present}
        return nlvr2_metrics_by_uid(preds, {ex.uid: ex.references for ex in examples}).accuracy
    preds = {ex.uid: predictions[ex.uid] for ex in present}
    labels = {ex.uid: ex.references["label"] for ex in examples}
    return gqa_accuracy(preds, labels).accuracy


def final_predictions(run_dir: str) -> dict[str, dict[str, Any]]:
    """{task: {uid: prediction}} of a run's last evaluation (`predictions/step_<N>/`)."""
    steps = glob.glob(os.path.join(run_dir, "predictions", "step_*"))
    if not steps:
        raise FileNotFoundError(f"{run_dir}/predictions holds no step_<N> evaluation")
    last = max(steps, key=lambda path: int(path.rsplit("_", 1)[1]))
    out = {}
    for task in QA_TASKS:
        path = os.path.join(last, f"{task}_predictions.json")
        if os.path.isfile(path):
            with open(path) as f:
                out[task] = json.load(f)
    return out


def breakdown_table(columns: Mapping[str, Scores]) -> str:
    """A Markdown table: one row per (task, question type), one column per run, with counts."""
    names = list(columns)
    keys = sorted({key for scores in columns.values() for key in scores})
    lines = [
        "| task | question type | n | " + " | ".join(names) + " |",
        "|" + "---|" * (len(names) + 3),
    ]
    for task, kind in keys:
        count = next(s[(task, kind)][1] for s in columns.values() if (task, kind) in s)
        cells = [
            f"{columns[name][(task, kind)][0]:.1f}" if (task, kind) in columns[name] else "-"
            for name in names
        ]
        lines.append(f"| {task} | {kind} | {count} | " + " | ".join(cells) + " |")
    return "\n".join(lines)
