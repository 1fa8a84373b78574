"""NLVR2 accuracy, consistency groups, and the true/false logit read-out (SPEC §7)."""

import jax.numpy as jnp
import numpy as np
import pytest

from vlpet_jax.eval.nlvr2 import (
    nlvr2_group,
    nlvr2_metrics,
    nlvr2_metrics_by_uid,
    nlvr2_predict_from_logits,
)


def test_group_blanks_the_third_field():
    assert nlvr2_group("dev-850-0-0") == "dev-850--0"
    assert nlvr2_group("dev-850-1-0") == nlvr2_group("dev-850-0-0")
    assert nlvr2_group("dev-850-0-1") != nlvr2_group("dev-850-0-0")
    with pytest.raises(ValueError, match=r"'dev850'.*at least 3 dash-separated fields"):
        nlvr2_group("dev850")


def test_accuracy_and_consistency_with_a_missing_prediction():
    labels = {
        "dev-850-0-0": 1,
        "dev-850-1-0": 0,
        "dev-850-0-1": 1,
        "dev-851-0-0": 0,
        "dev-851-1-0": 1,
        "dev-852-0-0": 1,
    }
    predictions = {
        "dev-850-0-0": True,  # right
        "dev-850-1-0": False,  # right -> group dev-850--0 all right
        "dev-850-0-1": "true",  # right -> group dev-850--1 all right
        "dev-851-0-0": 0,  # right, but its partner dev-851-1-0 is missing -> group broken
        "dev-852-0-0": "False",  # wrong -> group broken
    }
    result = nlvr2_metrics(predictions, labels)
    assert result.num_correct == 4
    assert result.num_total == 6
    assert result.num_missing == 1
    assert result.num_groups == 4
    assert result.accuracy == pytest.approx(400.0 / 6)
    assert result.consistency == pytest.approx(50.0)


def test_nlvr2_errors():
    with pytest.raises(ValueError, match="not in the ground truth"):
        nlvr2_metrics({"dev-1-0-0": 1, "dev-9-0-0": 1}, {"dev-1-0-0": 1})
    with pytest.raises(ValueError, match="'dev-1-0-0': label must be a bool, 0/1"):
        nlvr2_metrics({"dev-1-0-0": 1}, {"dev-1-0-0": 2})
    with pytest.raises(ValueError, match="'dev-2-0-0': label must be"):
        # Labels are checked even where the prediction is missing.
        nlvr2_metrics({"dev-1-0-0": 1}, {"dev-1-0-0": 1, "dev-2-0-0": "yes"})
    with pytest.raises(ValueError, match="prediction must be"):
        nlvr2_metrics({"dev-1-0-0": 0.5}, {"dev-1-0-0": 1})


def test_predict_from_logits():
    logits = np.array([[0.1, 2.0, 1.0], [0.0, 1.0, 3.0], [0.0, 1.5, 1.5]], dtype=np.float32)
    # true id 1, false id 2: row 0 true, row 1 false, row 2 tie -> false.
    np.testing.assert_array_equal(
        nlvr2_predict_from_logits(logits, true_token_id=1, false_token_id=2), [True, False, False]
    )
    np.testing.assert_array_equal(
        nlvr2_predict_from_logits(jnp.asarray(logits), true_token_id=2, false_token_id=1),
        [False, True, False],
    )
    assert bool(nlvr2_predict_from_logits(logits[0], 1, 2)) is True


def test_predict_from_logits_errors():
    with pytest.raises(ValueError, match="outside the vocab of 3"):
        nlvr2_predict_from_logits(np.zeros((2, 3)), true_token_id=3, false_token_id=0)
    with pytest.raises(ValueError, match=r"found \(1, 2, 3\)"):
        nlvr2_predict_from_logits(np.zeros((1, 2, 3)), 1, 2)
    with pytest.raises(ValueError, match="both 1"):
        nlvr2_predict_from_logits(np.zeros((2, 3)), 1, 1)


def test_metrics_by_uid_rekey_predictions_by_identifier():
    # Two pairs of group "dev-1" and one of "dev-2"; predictions keyed by example uid, as the
    # evaluator writes them. Right: u1, u3; wrong: u2 (True vs label 0). Accuracy 2/3; group dev-1
    # has a wrong pair, dev-2 is all right: consistency 1/2.
    references = {
        "u1": {"identifier": "dev-1-0-0", "label": 1},
        "u2": {"identifier": "dev-1-1-0", "label": 0},
        "u3": {"identifier": "dev-2-0-0", "label": 0},
    }
    result = nlvr2_metrics_by_uid({"u1": True, "u2": "true", "u3": False}, references)
    assert result.accuracy == pytest.approx(100 * 2 / 3)
    assert result.consistency == pytest.approx(50.0)
    # A uid without a prediction counts as wrong (and breaks its group).
    partial = nlvr2_metrics_by_uid({"u1": True}, references)
    assert partial.accuracy == pytest.approx(100 / 3) and partial.num_missing == 2
    assert partial.consistency == 0.0
