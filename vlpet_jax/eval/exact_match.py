"""Exact-match accuracies: GQA answers and multiple-choice video QA (SPEC §7).

GQA is scored by plain string equality with the label, as the released VL-T5 / VL-Adapter
evaluator does (no VQA-style normalisation). TVQA / How2QA are generative: the model writes
`a<idx>` and is right when that string equals `a<answer_idx>`.

Accuracy is over the whole split: a question without a prediction counts as wrong (and is counted
in `num_missing`), while a prediction for a question that is not in the split is an error.
Accuracies are in percent.
"""

import dataclasses
import re
from collections.abc import Hashable, Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class AccuracyResult:
    """Accuracy over a split in percent, with the counts behind it."""

    accuracy: float
    num_correct: float
    num_total: int
    num_missing: int


def check_prediction_ids(
    task: str, predictions: Mapping[Hashable, Any], targets: Mapping[Hashable, Any]
) -> int:
    """Rejects empty inputs and unknown prediction ids; returns how many targets lack a prediction."""
    if not targets:
        raise ValueError(f"{task}: no ground-truth examples given")
    if not predictions:
        raise ValueError(f"{task}: no predictions given")
    unknown = [key for key in predictions if key not in targets]
    if unknown:
        raise ValueError(
            f"{task}: {len(unknown)} prediction ids are not in the ground truth, "
            f"e.g. {unknown[:5]!r}"
        )
    return sum(1 for key in targets if key not in predictions)


def _check_string(task: str, key: Hashable, field: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ValueError(f"{task} example {key!r}: {field} must be a string, found {value!r}")
    return value


def gqa_accuracy(
    predictions: Mapping[Hashable, str], labels: Mapping[Hashable, str | Mapping[str, float]]
) -> AccuracyResult:
    """GQA exact match (SPEC §7).

    A label is the answer string, or the `{answer: score}` dict of the VL-T5 annotation files, in
    which case a prediction earns the score of the key it equals (1.0 for GQA's single answer).
    """
    num_missing = check_prediction_ids("GQA", predictions, labels)
    correct = 0.0
    for key, prediction in predictions.items():
        prediction = _check_string("GQA", key, "prediction", prediction)
        label = labels[key]
        if isinstance(label, Mapping):
            correct += float(label.get(prediction, 0.0))
        else:
            correct += float(prediction == _check_string("GQA", key, "label", label))
    return AccuracyResult(100.0 * correct / len(labels), correct, len(labels), num_missing)


def choice_target(answer_idx: int) -> str:
    """The target string of a multiple-choice video QA example (SPEC §6): `a<idx>`."""
    return f"a{answer_idx}"


_CHOICE = re.compile(r"a(\d+)")


def parse_choice(text: str, num_choices: int) -> int | None:
    """Index of a generated `a<idx>` answer, or None when it names no valid choice.

    Surrounding whitespace is ignored; anything else (`"a7"` with 5 choices, `"b2"`, `"a2 a3"`)
    names no choice.
    """
    match = _CHOICE.fullmatch(text.strip())
    if match is None:
        return None
    index = int(match.group(1))
    return index if index < num_choices else None


def _target_string(task: str, key: Hashable, answer: Any) -> str:
    """`a<idx>` from an `answer_idx` int, or an `a<idx>` target string checked as such."""
    if isinstance(answer, int) and not isinstance(answer, bool) and answer >= 0:
        return choice_target(answer)
    if isinstance(answer, str) and _CHOICE.fullmatch(answer):
        return answer
    raise ValueError(
        f"{task} example {key!r}: the answer must be a non-negative int answer_idx or an "
        f"'a<idx>' string, found {answer!r}"
    )


def video_qa_accuracy(
    predictions: Mapping[Hashable, str], answers: Mapping[Hashable, int | str]
) -> AccuracyResult:
    """TVQA / How2QA accuracy (SPEC §7): the generated string must equal `a<answer_idx>`.

    `answers` holds each question's `answer_idx` (int) or its target string `a<idx>`.
    """
    task = "video QA"
    num_missing = check_prediction_ids(task, predictions, answers)
    for key, answer in answers.items():
        _target_string(task, key, answer)
    correct = 0
    for key, prediction in predictions.items():
        prediction = _check_string(task, key, "prediction", prediction)
        correct += int(prediction == _target_string(task, key, answers[key]))
    total = len(answers)
    return AccuracyResult(100.0 * correct / total, float(correct), total, num_missing)
