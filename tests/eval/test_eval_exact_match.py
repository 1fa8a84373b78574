"""GQA exact match and TVQA / How2QA `a<idx>` accuracy (SPEC §7); hand-computed expectations."""

import pytest

from vlpet_jax.eval.exact_match import choice_target, gqa_accuracy, parse_choice, video_qa_accuracy


def test_gqa_exact_match_over_the_whole_split():
    predictions = {1: "yes", 2: "no", 3: "Yes"}
    labels = {1: "yes", 2: "yes", 3: "yes", 4: "red"}
    result = gqa_accuracy(predictions, labels)
    # Only question 1 is right ("Yes" != "yes": no normalisation); 4 is missing, so wrong.
    assert result.accuracy == pytest.approx(25.0)
    assert result.num_correct == 1.0
    assert result.num_total == 4
    assert result.num_missing == 1


def test_gqa_label_dicts_give_their_score():
    labels = {"a": {"yes": 1.0}, "b": {"left": 1.0}, "c": {"red": 0.5, "pink": 1.0}}
    result = gqa_accuracy({"a": "yes", "b": "right", "c": "red"}, labels)
    assert result.num_correct == pytest.approx(1.5)
    assert result.accuracy == pytest.approx(50.0)


def test_gqa_errors():
    with pytest.raises(
        ValueError, match=r"GQA: 1 prediction ids are not in the ground truth, e\.g\. \[9\]"
    ):
        gqa_accuracy({9: "yes"}, {1: "yes"})
    with pytest.raises(ValueError, match="no predictions"):
        gqa_accuracy({}, {1: "yes"})
    with pytest.raises(ValueError, match="no ground-truth"):
        gqa_accuracy({1: "yes"}, {})
    with pytest.raises(ValueError, match="example 1: prediction must be a string"):
        gqa_accuracy({1: None}, {1: "yes"})


def test_video_qa_accuracy():
    predictions = {"q1": "a3", "q2": "a1", "q3": " a0"}
    answers = {"q1": 3, "q2": 2, "q3": 0, "q4": 1}
    result = video_qa_accuracy(predictions, answers)
    # q1 right; q2 wrong; q3 is not the string "a0"; q4 missing.
    assert result.accuracy == pytest.approx(25.0)
    assert (result.num_correct, result.num_total, result.num_missing) == (1.0, 4, 1)
    assert choice_target(4) == "a4"


def test_video_qa_accepts_target_strings():
    # The data pipeline's references carry the target "a<idx>" rather than the index.
    result = video_qa_accuracy({"q1": "a3", "q2": "a1"}, {"q1": "a3", "q2": "a2"})
    assert result.accuracy == pytest.approx(50.0)


def test_video_qa_errors():
    with pytest.raises(ValueError, match=r"example 'q': the answer must be .*found '1'"):
        video_qa_accuracy({"q": "a1"}, {"q": "1"})
    with pytest.raises(ValueError, match=r"example 'r': the answer must be .*found -1"):
        # Answers are checked even where the prediction is missing.
        video_qa_accuracy({"q": "a1"}, {"q": 1, "r": -1})
    with pytest.raises(ValueError, match="not in the ground truth"):
        video_qa_accuracy({"x": "a1"}, {"q": 1})


@pytest.mark.parametrize(
    ("text", "expected"),
    [("a3", 3), (" a4\n", 4), ("a0", 0), ("a5", None), ("b2", None), ("a", None), ("a2 a3", None)],
)
def test_parse_choice(text, expected):
    assert parse_choice(text, num_choices=5) == expected
