"""VQA v2 accuracy, computed the way the official VQA evaluation computes it (SPEC §7).

Per question: the prediction is fully normalised; the ten human answers are punctuation-processed
only when they are not all identical (and are never lower-cased, number-mapped or stripped). Then
for each human answer in turn, the accuracy against the other nine is `min(1, matches / 3)`; the
question's accuracy is the mean of those ten values, so 0, 1, 2, 3, 4+ matching humans give
0, 0.3, 0.6, 0.9, 1.0. The split's accuracy is the mean over questions, times 100.

The official script leaves out "the record itself" by comparing whole answer records (which carry
`answer_id`), so two humans who typed the same string still count separately. Here the answer ids
are required to be unique, which makes leaving out the record the same as leaving out its index.

Unlike the official script, numbers are not rounded to 2 decimals; round when printing.
"""

import dataclasses
from collections.abc import Hashable, Iterable, Mapping, Sequence
from typing import Any

from vlpet_jax.eval.vqa_normalize import normalize_vqa_prediction, process_punctuation

NUM_HUMAN_ANSWERS = 10
# `min(1, matches / 3)`: three other humans agreeing is full credit.
_MATCHES_FOR_FULL_CREDIT = 3


@dataclasses.dataclass(frozen=True)
class VQAAccuracy:
    """Official VQA accuracy of a split, every number in percent (0..100), unrounded."""

    overall: float
    per_answer_type: dict[str, float]
    per_question_type: dict[str, float]
    per_question: dict[Hashable, float]


def _check_human_answers(question_id: Hashable, answers: Any) -> list[str]:
    """Validates the ten answer records of one question and returns their raw strings."""
    if not isinstance(answers, Sequence) or isinstance(answers, str):
        raise ValueError(
            f"VQA question {question_id!r}: field 'answers' must be a list of answer records, "
            f"found {type(answers).__name__}"
        )
    if len(answers) != NUM_HUMAN_ANSWERS:
        raise ValueError(
            f"VQA question {question_id!r}: expected {NUM_HUMAN_ANSWERS} human answers, "
            f"found {len(answers)}"
        )
    texts: list[str] = []
    seen_ids: set[Any] = set()
    for position, record in enumerate(answers):
        if not isinstance(record, Mapping) or "answer" not in record or "answer_id" not in record:
            raise ValueError(
                f"VQA question {question_id!r}: answer record {position} must be a mapping with "
                f"'answer' and 'answer_id' (as raw VQA v2 annotations carry them), found {record!r}"
            )
        if not isinstance(record["answer"], str):
            raise ValueError(
                f"VQA question {question_id!r}: answer record {position} field 'answer' must be "
                f"a string, found {type(record['answer']).__name__}"
            )
        if record["answer_id"] in seen_ids:
            raise ValueError(
                f"VQA question {question_id!r}: answer_id {record['answer_id']!r} appears twice; "
                f"each of the {NUM_HUMAN_ANSWERS} human answers needs its own answer_id"
            )
        seen_ids.add(record["answer_id"])
        texts.append(record["answer"])
    return texts


def vqa_question_accuracy(
    prediction: str, answers: Sequence[Mapping[str, Any]], question_id: Hashable = None
) -> float:
    """Accuracy in [0, 1] of one prediction against ten human answer records (SPEC §7).

    `answers` are raw VQA v2 records (`{"answer": str, "answer_id": int, ...}`); `question_id`
    only names the question in error messages.
    """
    if not isinstance(prediction, str):
        raise ValueError(
            f"VQA question {question_id!r}: prediction must be a string, "
            f"found {type(prediction).__name__}"
        )
    human = _check_human_answers(question_id, answers)
    predicted = normalize_vqa_prediction(prediction)
    # The asymmetry of the official script: humans get punctuation only, only if they disagree.
    if len(set(human)) > 1:
        human = [process_punctuation(text) for text in human]
    matches = [text == predicted for text in human]
    total = sum(matches)
    per_left_out = [
        min(1.0, (total - left_out_matches) / _MATCHES_FOR_FULL_CREDIT)
        for left_out_matches in matches
    ]
    return sum(per_left_out) / len(per_left_out)


def index_vqa_annotations(annotations: Iterable[Mapping[str, Any]]) -> dict[Hashable, Any]:
    """Keys raw VQA v2 annotation records (the `annotations` list) by their `question_id`."""
    by_id: dict[Hashable, Any] = {}
    for position, record in enumerate(annotations):
        if "question_id" not in record:
            raise ValueError(f"VQA annotation {position} has no 'question_id' field: {record!r}")
        question_id = record["question_id"]
        if question_id in by_id:
            raise ValueError(f"VQA annotation question_id {question_id!r} appears twice")
        by_id[question_id] = record
    return by_id


def _mean_percent(values: Sequence[float]) -> float:
    return 100.0 * sum(values) / len(values)


def vqa_accuracy(
    predictions: Mapping[Hashable, str], annotations: Mapping[Hashable, Mapping[str, Any]]
) -> VQAAccuracy:
    """Official VQA accuracy of a split with per answer-type and question-type breakdowns.

    `predictions` maps question id -> generated answer. `annotations` maps question id -> raw VQA v2
    annotation record with `answers` (ten records), `answer_type` and `question_type` (see
    `index_vqa_annotations`). As in the official script, the predictions must cover exactly the
    annotated questions: an unknown or a missing question id is an error.
    """
    if not predictions:
        raise ValueError("VQA accuracy: no predictions given")
    unknown = [qid for qid in predictions if qid not in annotations]
    if unknown:
        raise ValueError(
            f"VQA accuracy: {len(unknown)} predicted question ids are not in the annotations, "
            f"e.g. {unknown[:5]!r}"
        )
    missing = [qid for qid in annotations if qid not in predictions]
    if missing:
        raise ValueError(
            f"VQA accuracy: {len(missing)} annotated questions have no prediction, "
            f"e.g. {missing[:5]!r} (the official evaluation requires every question answered)"
        )
    per_question: dict[Hashable, float] = {}
    by_answer_type: dict[str, list[float]] = {}
    by_question_type: dict[str, list[float]] = {}
    for question_id, annotation in annotations.items():
        for field in ("answers", "answer_type", "question_type"):
            if field not in annotation:
                raise ValueError(
                    f"VQA question {question_id!r}: annotation has no {field!r} field "
                    f"(found fields {sorted(annotation)})"
                )
        accuracy = vqa_question_accuracy(
            predictions[question_id], annotation["answers"], question_id
        )
        per_question[question_id] = 100.0 * accuracy
        by_answer_type.setdefault(annotation["answer_type"], []).append(accuracy)
        by_question_type.setdefault(annotation["question_type"], []).append(accuracy)
    return VQAAccuracy(
        overall=sum(per_question.values()) / len(per_question),
        per_answer_type={name: _mean_percent(accs) for name, accs in by_answer_type.items()},
        per_question_type={name: _mean_percent(accs) for name, accs in by_question_type.items()},
        per_question=per_question,
    )
