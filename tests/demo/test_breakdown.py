"""Per-question-type scores of the demo, on hand-made examples with hand-worked numbers."""

from __future__ import annotations

import json

import pytest

from vlpet_jax.data.examples import Example
from vlpet_jax.demo.breakdown import breakdown_table, final_predictions, scores_by_question_type


def vqa(uid: str, text: str, label: dict[str, float]) -> Example:
    return Example("vqa", uid, text, references={"label": label})


def nlvr(uid: str, text: str, identifier: str, label: int) -> Example:
    return Example("nlvr", uid, text, references={"identifier": identifier, "label": label})


def test_vqa_soft_scores_are_averaged_within_each_question_type():
    examples = [
        vqa("1", "vqa: what color is the cube?", {"red": 1.0, "blue": 0.3}),
        vqa("2", "vqa: what color is the cone?", {"green": 1.0}),
        vqa("3", "vqa: is there a red cube?", {"yes": 1.0}),
        vqa("4", "vqa: is there a blue cone?", {"no": 0.9, "yes": 0.3}),
    ]
    # "what color is": blue earns 0.3 on 1, green 1.0 on 2 -> 65.0.
    # "is there a": yes 1.0 on 3; 4 has no prediction, so it counts as wrong -> 50.0.
    predictions = {"1": "blue", "2": "green", "3": "yes"}
    scores = scores_by_question_type("vqa", examples, predictions)
    assert scores == {
        ("vqa", "vqa: is there a"): (50.0, 2),
        ("vqa", "vqa: what color is"): (pytest.approx(65.0), 2),
    }


def test_nlvr_predictions_are_keyed_by_uid_and_scored_by_identifier():
    examples = [
        nlvr("u0", "nlvr: both images contain a cube", "dev-1-0-0", 1),
        nlvr("u1", "nlvr: both images contain a cube", "dev-1-1-0", 0),
        nlvr("u2", "nlvr: the left image contains a red cube", "dev-2-0-0", 0),
    ]
    predictions = {"u0": True, "u1": True, "u2": "false"}
    scores = scores_by_question_type("nlvr", examples, predictions)
    assert scores == {
        ("nlvr", "nlvr: both images contain"): (50.0, 2),
        ("nlvr", "nlvr: the left image"): (100.0, 1),
    }


def test_final_predictions_reads_the_highest_step_numerically(tmp_path):
    for step, answer in ((9, "old"), (10, "new")):
        directory = tmp_path / "predictions" / f"step_{step}"
        directory.mkdir(parents=True)
        (directory / "vqa_predictions.json").write_text(json.dumps({"1": answer}))
    (tmp_path / "predictions" / "step_10" / "caption_predictions.json").write_text("{}")
    assert final_predictions(str(tmp_path)) == {"vqa": {"1": "new"}}


def test_final_predictions_without_an_evaluation_names_the_directory(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path)):
        final_predictions(str(tmp_path))


def test_table_has_a_row_per_question_type_and_a_dash_where_a_run_lacks_one():
    table = breakdown_table(
        {
            "text-only": {
                ("vqa", "vqa: is there a"): (50.0, 2),
                ("gqa", "gpa: what is"): (25.0, 4),
            },
            "run": {("vqa", "vqa: is there a"): (75.0, 2)},
        }
    )
    assert table.splitlines() == [
        "| task | question type | n | text-only | run |",
        "|---|---|---|---|---|",
        "| gqa | gpa: what is | 4 | 25.0 | - |",
        "| vqa | vqa: is there a | 2 | 50.0 | 75.0 |",
    ]
