"""VALUE server prediction files (SPEC §7): names, exact content, atomic writes, bad input."""

import json
import os

import pytest

from vlpet_jax.eval import value_writers
from vlpet_jax.eval.value_writers import (
    atomic_write_text,
    choice_indices_from_generations,
    value_prediction_filename,
    write_value_caption_predictions,
    write_value_qa_predictions,
)


def test_filenames_match_the_scorer():
    assert value_prediction_filename("tvqa", "test") == "tvqa_test_predictions.json"
    assert (
        value_prediction_filename("how2qa", "test_public") == "how2qa_test_public_predictions.json"
    )
    assert value_prediction_filename("tvc", "test") == "tvc_test_predictions.jsonl"
    assert value_prediction_filename("yc2c", "val") == "yc2c_val_predictions.jsonl"
    with pytest.raises(ValueError, match=r"'how2qa' has no split 'test'"):
        value_prediction_filename("how2qa", "test")
    with pytest.raises(ValueError, match="'vqa' is unknown"):
        value_prediction_filename("vqa", "test")


def test_qa_file_content(tmp_path):
    path = write_value_qa_predictions(
        tmp_path / "tvqa_test_predictions.json", {137292: 0, "137304": 4}, num_choices=5
    )
    assert json.loads(path.read_text()) == {"137292": 0, "137304": 4}
    assert os.listdir(tmp_path) == ["tvqa_test_predictions.json"]


def test_qa_bad_input(tmp_path):
    path = tmp_path / "out.json"
    with pytest.raises(
        ValueError, match=r"question 7: answer index must be an int in \[0, 4\), found 4"
    ):
        write_value_qa_predictions(path, {7: 4}, num_choices=4)
    with pytest.raises(ValueError, match="found True"):
        write_value_qa_predictions(path, {7: True}, num_choices=4)
    with pytest.raises(ValueError, match="question id 'q7' must be an int"):
        write_value_qa_predictions(path, {"q7": 1}, num_choices=4)
    with pytest.raises(ValueError, match="question id 7 appears twice"):
        write_value_qa_predictions(path, {7: 1, "7": 2}, num_choices=4)
    with pytest.raises(ValueError, match="nothing to write"):
        write_value_qa_predictions(path, {}, num_choices=4)
    assert not path.exists()


def test_choice_indices_from_generations():
    indices, unparsed = choice_indices_from_generations(
        {1: "a3", 2: "banana", 3: "a4", 4: " a0 "}, num_choices=4
    )
    assert indices == {1: 3, 2: 0, 3: 0, 4: 0}
    assert unparsed == [2, 3]


def test_caption_file_content(tmp_path):
    path = write_value_caption_predictions(
        tmp_path / "tvc_test_predictions.jsonl",
        {86618: "Rachel walks up to Phoebe.", "86619": "Joey sits down."},
        {
            86618: {
                "vid_name": "friends_s08e08_seg01_clip_00",
                "ts": [5.8, 8.24],
                "duration": 61.03,
            },
            "86619": {"vid_name": "friends_s08e08_seg01_clip_01", "ts": None},
        },
    )
    lines = path.read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {
            "vid_name": "friends_s08e08_seg01_clip_00",
            "clip_id": 86618,
            "ts": [5.8, 8.24],
            "descs": [{"desc": "Rachel walks up to Phoebe."}],
        },
        {
            "vid_name": "friends_s08e08_seg01_clip_01",
            "clip_id": 86619,
            "descs": [{"desc": "Joey sits down."}],
        },
    ]


def test_caption_bad_input(tmp_path):
    path = tmp_path / "out.jsonl"
    with pytest.raises(ValueError, match="clip 5: no clip annotation"):
        write_value_caption_predictions(path, {5: "x"}, {6: {"vid_name": "v"}})
    with pytest.raises(ValueError, match="clip 5: field 'vid_name' must be a string"):
        write_value_caption_predictions(path, {5: "x"}, {5: {"ts": [0, 1]}})
    with pytest.raises(ValueError, match=r"clip 5: 'ts' must be \[start, end\]"):
        write_value_caption_predictions(path, {5: "x"}, {5: {"vid_name": "v", "ts": [1]}})
    with pytest.raises(ValueError, match="clip 5: description must be a string"):
        write_value_caption_predictions(path, {5: None}, {5: {"vid_name": "v"}})
    with pytest.raises(ValueError, match="nothing to write"):
        write_value_caption_predictions(path, {}, {})
    assert not path.exists()


def test_atomic_write_replaces_and_leaves_no_temp(tmp_path):
    path = tmp_path / "sub" / "f.json"
    atomic_write_text(path, "old")
    atomic_write_text(path, "new")
    assert path.read_text() == "new"
    assert os.listdir(path.parent) == ["f.json"]


def test_atomic_write_failure_keeps_the_old_file(tmp_path, monkeypatch):
    path = tmp_path / "f.json"
    atomic_write_text(path, "old")

    def failing_replace(source, target):
        raise OSError("disk full")

    monkeypatch.setattr(value_writers.os, "replace", failing_replace)
    with pytest.raises(OSError, match="disk full"):
        atomic_write_text(path, "new")
    assert path.read_text() == "old"
    assert os.listdir(tmp_path) == ["f.json"]
