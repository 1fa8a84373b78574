"""Official VQA accuracy (SPEC §7): the 0/0.3/0.6/0.9/1.0 ladder, the prediction-vs-human
asymmetry, the breakdowns and input errors. Expected values are worked out by hand."""

import pytest

from vlpet_jax.eval.vqa import index_vqa_annotations, vqa_accuracy, vqa_question_accuracy


def records(*answers):
    """Ten raw VQA v2 answer records (answer_id 1..10)."""
    return [
        {"answer": text, "answer_confidence": "yes", "answer_id": position + 1}
        for position, text in enumerate(answers)
    ]


def humans(**counts):
    """records() from counts, e.g. humans(cat=3, dog=7)."""
    answers = [text for text, count in counts.items() for _ in range(count)]
    assert len(answers) == 10
    return records(*answers)


@pytest.mark.parametrize(
    ("num_matching", "expected"),
    # m matching humans: the m left-out subsets see m-1 matches, the 10-m others see m.
    # m=1: 9 * (1/3) / 10 = 0.3; m=2: (2 * 1/3 + 8 * 2/3) / 10 = 0.6;
    # m=3: (3 * 2/3 + 7 * 1) / 10 = 0.9; m=4: every subset sees >= 3 -> 1.0.
    [(0, 0.0), (1, 0.3), (2, 0.6), (3, 0.9), (4, 1.0), (5, 1.0), (10, 1.0)],
)
def test_ladder(num_matching, expected):
    answers = records(*(["cat"] * num_matching + ["dog"] * (10 - num_matching)))
    assert vqa_question_accuracy("cat", answers) == pytest.approx(expected)


def test_identical_human_strings_count_separately_by_answer_id():
    # Leaving out one *record*: with two "cat" records each "cat" subset still sees the other one.
    # Leaving out by string would give 8 * (2/3) / 10 = 0.5333 instead of 0.6.
    assert vqa_question_accuracy("cat", humans(cat=2, dog=8)) == pytest.approx(0.6)


def test_all_identical_humans_are_not_processed():
    # Prediction "t-shirt" -> "t shirt"; the ten identical humans keep "t-shirt": no match.
    assert vqa_question_accuracy("t-shirt", records(*["t-shirt"] * 10)) == 0.0


def test_disagreeing_humans_get_punctuation():
    # One human differs, so all ten are punctuation-processed: nine "t shirt" match.
    answers = records(*(["t-shirt"] * 9 + ["shirt"]))
    assert vqa_question_accuracy("t-shirt", answers) == pytest.approx(1.0)
    assert vqa_question_accuracy("ice cream", humans(**{"ice-cream": 4, "cake": 6})) == 1.0


def test_humans_get_no_number_mapping():
    # Prediction "two" -> "2"; human "two" stays "two".
    assert vqa_question_accuracy("two", humans(two=4, many=6)) == 0.0
    assert vqa_question_accuracy("two", records(*(["2"] * 4 + ["many"] * 6))) == 1.0


def test_humans_get_no_lower_casing():
    assert vqa_question_accuracy("yes", humans(Yes=4, no=6)) == 0.0
    assert vqa_question_accuracy("Yes", humans(yes=4, no=6)) == 1.0


def test_humans_keep_their_articles():
    assert vqa_question_accuracy("the dog", humans(**{"the dog": 4, "cat": 6})) == 0.0
    assert vqa_question_accuracy("the dog", humans(dog=3, cat=7)) == pytest.approx(0.9)


def test_contractions_apply_to_the_prediction():
    assert vqa_question_accuracy("dont", humans(**{"don't": 4, "no": 6})) == 1.0


def test_human_punctuation_can_leave_a_trailing_space():
    # "yes!" -> "yes " (the "!" touches no space, so it becomes one): no human equals "yes".
    assert vqa_question_accuracy("yes", humans(**{"yes!": 4, "no": 6})) == 0.0


def test_digit_comma_digit_on_both_sides():
    # Human "1,000" -> "1000" (processed, since humans disagree); prediction "1,000" -> "1000".
    assert vqa_question_accuracy("1,000", humans(**{"1,000": 4, "100": 6})) == 1.0
    assert vqa_question_accuracy("1000", humans(**{"1,000": 4, "100": 6})) == 1.0


def test_prediction_whitespace_is_stripped():
    assert vqa_question_accuracy(" \tcat\n", humans(cat=4, dog=6)) == 1.0


def annotation(answer_type, question_type, answers):
    return {"answers": answers, "answer_type": answer_type, "question_type": question_type}


def test_split_accuracy_and_breakdowns():
    annotations = {
        1: annotation("yes/no", "is the", humans(yes=10)),
        2: annotation("other", "what", humans(cat=1, dog=9)),
        3: annotation("other", "what color", humans(red=2, blue=8)),
    }
    predictions = {1: "Yes", 2: "cat", 3: "red"}
    result = vqa_accuracy(predictions, annotations)
    # (1.0 + 0.3 + 0.6) / 3 * 100
    assert result.overall == pytest.approx(63.333333333)
    assert result.per_answer_type == pytest.approx({"yes/no": 100.0, "other": 45.0})
    assert result.per_question_type == pytest.approx(
        {"is the": 100.0, "what": 30.0, "what color": 60.0}
    )
    assert result.per_question == pytest.approx({1: 100.0, 2: 30.0, 3: 60.0})


def test_index_vqa_annotations():
    raw = [{"question_id": 7, "answers": []}, {"question_id": 8, "answers": []}]
    assert sorted(index_vqa_annotations(raw)) == [7, 8]
    with pytest.raises(ValueError, match="question_id 7 appears twice"):
        index_vqa_annotations([*raw, {"question_id": 7}])
    with pytest.raises(ValueError, match="no 'question_id'"):
        index_vqa_annotations([{"answers": []}])


def test_wrong_number_of_answers_names_the_question():
    annotations = {42: annotation("other", "what", records(*["cat"] * 9))}
    with pytest.raises(ValueError, match=r"question 42: expected 10 human answers, found 9"):
        vqa_accuracy({42: "cat"}, annotations)


def test_bad_answer_records():
    with pytest.raises(ValueError, match="answer_id 1 appears twice"):
        vqa_question_accuracy("cat", [{"answer": "cat", "answer_id": 1}] * 10, question_id=5)
    with pytest.raises(ValueError, match="'answer' and 'answer_id'"):
        vqa_question_accuracy("cat", [{"answer": "cat"}] * 10)
    with pytest.raises(ValueError, match="must be a string"):
        vqa_question_accuracy(3, humans(cat=10))


def test_prediction_ids_must_match_annotations():
    annotations = {1: annotation("other", "what", humans(cat=10))}
    with pytest.raises(ValueError, match=r"not in the annotations, e\.g\. \[2\]"):
        vqa_accuracy({1: "cat", 2: "dog"}, annotations)
    with pytest.raises(ValueError, match=r"have no prediction, e\.g\. \[1\]"):
        vqa_accuracy({3: "x"}, {1: annotations[1], 3: annotations[1]})
    with pytest.raises(ValueError, match="no predictions"):
        vqa_accuracy({}, annotations)


def test_missing_annotation_field():
    with pytest.raises(ValueError, match="question 1: annotation has no 'answer_type'"):
        vqa_accuracy({1: "cat"}, {1: {"answers": humans(cat=10), "question_type": "what"}})
