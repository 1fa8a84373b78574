"""NLVR2 accuracy, consistency, and the true/false logit read-out (SPEC §7).

NLVR2 is not generated: one decoder step is run and the logit of the first sub-token of "true" is
compared with that of "false" at the read position (BART: position 1 after `[</s>, <s>]`; T5:
position 0 after `[pad]`). The released code predicts true only when the true logit is strictly
larger, so a tie reads as false.

Accuracy is over the whole split, a missing prediction being an error (wrong). Consistency, the
NLVR2 paper's second metric, is the share of statement groups with every example right; a group is
the identifiers that agree once their third dash-separated field is blanked (`dev-850-0-0` and
`dev-850-1-0` are one group, `dev-850-0-1` is another).
"""

import dataclasses
from collections.abc import Mapping
from typing import Any

import numpy as np

from vlpet_jax.eval.exact_match import check_prediction_ids

# The field of an identifier that differs between the examples of one group.
_GROUP_FIELD = 2


@dataclasses.dataclass(frozen=True)
class NLVR2Result:
    """NLVR2 accuracy and consistency in percent, with the counts behind them."""

    accuracy: float
    consistency: float
    num_correct: int
    num_total: int
    num_missing: int
    num_groups: int


def nlvr2_group(identifier: str) -> str:
    """The consistency group of an identifier: its third dash-separated field blanked."""
    fields = identifier.split("-")
    if len(fields) <= _GROUP_FIELD:
        raise ValueError(
            f"NLVR2 identifier {identifier!r}: expected at least {_GROUP_FIELD + 1} "
            f"dash-separated fields (like 'dev-850-0-0'), found {len(fields)}"
        )
    fields[_GROUP_FIELD] = ""
    return "-".join(fields)


def _as_bool(identifier: str, field: str, value: Any) -> bool:
    """Reads a label or prediction given as bool, 0/1, or "true"/"false" (any case)."""
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer) and value in (0, 1):
        return bool(value)
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    raise ValueError(
        f"NLVR2 example {identifier!r}: {field} must be a bool, 0/1 or 'true'/'false', "
        f"found {value!r}"
    )


def nlvr2_metrics(predictions: Mapping[str, Any], labels: Mapping[str, Any]) -> NLVR2Result:
    """Accuracy and consistency over the whole split (SPEC §7).

    Both mappings are keyed by NLVR2 identifier; values are bools, 0/1 (the VL-T5 `label` field) or
    "true"/"false" strings. Every labelled identifier is scored; a missing prediction counts as
    wrong and breaks its group. A prediction for an unknown identifier is an error.
    """
    num_missing = check_prediction_ids("NLVR2", predictions, labels)
    group_all_right: dict[str, bool] = {}
    num_correct = 0
    for identifier, label in labels.items():
        group = nlvr2_group(identifier)
        truth = _as_bool(identifier, "label", label)
        right = (
            identifier in predictions
            and _as_bool(identifier, "prediction", predictions[identifier]) == truth
        )
        num_correct += int(right)
        group_all_right[group] = group_all_right.get(group, True) and right
    num_total = len(labels)
    return NLVR2Result(
        accuracy=100.0 * num_correct / num_total,
        consistency=100.0 * sum(group_all_right.values()) / len(group_all_right),
        num_correct=num_correct,
        num_total=num_total,
        num_missing=num_missing,
        num_groups=len(group_all_right),
    )


def nlvr2_metrics_by_uid(
    predictions: Mapping[str, Any], references: Mapping[str, Mapping[str, Any]]
) -> NLVR2Result:
    """`nlvr2_metrics` for predictions keyed by example uid, as the evaluator writes them:
    `references` maps every uid to its `{"identifier": ..., "label": ...}` (an NLVR2 example's
    `references`), which re-keys both sides by identifier."""
    by_identifier = {references[uid]["identifier"]: value for uid, value in predictions.items()}
    labels = {ref["identifier"]: ref["label"] for ref in references.values()}
    return nlvr2_metrics(by_identifier, labels)


def nlvr2_predict_from_logits(logits: Any, true_token_id: int, false_token_id: int) -> np.ndarray:
    """True where the logit of "true"'s first sub-token beats that of "false" (SPEC §7).

    `logits` are the decoder logits at the read position, shape (vocab,) or (batch, vocab); any
    array type numpy can read (a jax array included). Ties read as false, as in the released code.
    """
    logits = np.asarray(logits)
    if logits.ndim not in (1, 2):
        raise ValueError(
            f"NLVR2 logits: expected shape (vocab,) or (batch, vocab) at the read position, "
            f"found {logits.shape}"
        )
    vocab = logits.shape[-1]
    for name, token_id in (("true_token_id", true_token_id), ("false_token_id", false_token_id)):
        if not 0 <= token_id < vocab:
            raise ValueError(f"NLVR2 logits: {name} {token_id} is outside the vocab of {vocab}")
    if true_token_id == false_token_id:
        raise ValueError(f"NLVR2 logits: true and false token ids are both {true_token_id}")
    return logits[..., true_token_id] > logits[..., false_token_id]
