"""Task readers on tiny files in each official format (SPEC.md §6), field by field."""

from __future__ import annotations

import pytest

from vlpet_jax.data import tasks
from vlpet_jax.data.annotations import DataFormatError
from vlpet_jax.data.examples import draw_target

VID = "friends_s01e01_seg02_clip_00"
SUBS = [
    {"text": " Hi there. ", "start": 0.5, "end": 2.0},
    {"text": "How are you?", "start": 3.0, "end": 5.0},
    {"text": "Fine.", "start": 10.0, "end": 12.0},
]


def load(name, root, split, train=True, **options):
    return tasks.get_task(name).load(root, split, train=train, **options)


# -- registry --------------------------------------------------------------------------------------


def test_registry_knows_the_eight_tasks_and_lists_them_on_error():
    assert tasks.task_names() == [
        "vqa", "gqa", "nlvr", "caption", "tvqa", "how2qa", "tvc", "yc2c"
    ]  # fmt: skip
    assert [tasks.get_task(n).task_id for n in tasks.task_names()] == list(range(8))
    with pytest.raises(KeyError, match="unknown task 'vqa2'; known tasks: vqa, gqa, nlvr"):
        tasks.get_task("vqa2")


def test_registry_rejects_duplicates():
    with pytest.raises(ValueError, match="already registered"):
        tasks.register(tasks.get_task("vqa"))


def test_task_facts():
    assert tasks.get_task("nlvr").visual == "image_pair"
    assert tasks.get_task("nlvr").images_per_example == 2
    assert tasks.get_task("caption").loss_reduction == "token"
    assert tasks.get_task("vqa").max_input_len == 20 and tasks.get_task("vqa").max_target_len == 10
    assert tasks.get_task("tvqa").max_input_len == 600
    assert tasks.get_task("gqa").feature_dir("train") == "VG/clip_features/data_clip_RN101_att"
    assert tasks.get_task("gqa").feature_dir("testdev") == "GQA/clip_features/data_clip_RN101_att"
    assert tasks.get_task("how2qa").feature_dir("train") == "video/vis_features/how2/clip-vit"


# -- VQA -------------------------------------------------------------------------------------------

VQA_RECORDS = [
    {
        "img_id": "COCO_train2014_000000000009",
        "sent": "What is on the plate?",
        "question_id": 9001,
        "label": {"food": 1.0, "pizza": 0.3},
        "answer_type": "other",
        "question_type": "what is on the",
    },
    {"img_id": "COCO_train2014_000000000010", "sent": "Is it red?", "question_id": 10, "label": {}},
]


def test_vqa_examples_field_by_field(tmp_path, write):
    write.json(tmp_path / "vqa" / "karpathy_train.json", VQA_RECORDS)
    first, second = load("vqa", tmp_path, "train")
    assert first.task == "vqa" and first.uid == "9001"
    assert first.input_text == "vqa: What is on the plate?"
    assert first.targets == ("food", "pizza") and first.target_scores == (1.0, 0.3)
    assert first.score_weighted
    assert first.feature_keys == ("COCO_train2014_000000000009",)
    assert first.references["question_id"] == 9001
    assert first.references["label"] == {"food": 1.0, "pizza": 0.3}
    assert first.references["answer_type"] == "other"
    assert first.references["question_type"] == "what is on the"
    # Released behaviour: an empty label trains on "" with loss weight 0.
    assert second.targets == () and draw_target(second, 0.5) == ("", 0.0)
    assert load("vqa", tmp_path, "train", prompt="Q: ")[0].input_text == "Q: What is on the plate?"


def test_vqa_raw_answers_become_references(tmp_path, write):
    write.json(tmp_path / "vqa" / "karpathy_train.json", VQA_RECORDS[:1])
    records = [{"answer": "food", "answer_confidence": "yes", "answer_id": i} for i in range(1, 11)]
    write.json(
        tmp_path / "vqa" / "v2_mscoco_train2014_annotations.json",
        {"annotations": [{"question_id": 9001, "answers": records}]},
    )
    write.json(tmp_path / "vqa" / "v2_mscoco_val2014_annotations.json", {"annotations": []})
    (example,) = load("vqa", tmp_path, "train", raw_answers=True)
    assert example.references["answers"] == records
    write.json(tmp_path / "vqa" / "karpathy_train.json", VQA_RECORDS)
    with pytest.raises(DataFormatError, match="question_id 10 is not in the raw VQA v2"):
        load("vqa", tmp_path, "train", raw_answers=True)


def test_vqa_missing_field_names_field_example_and_file(tmp_path, write):
    bad = [VQA_RECORDS[0], {"img_id": "x", "question_id": 3, "label": {}}]
    write.json(tmp_path / "vqa" / "karpathy_val.json", bad)
    with pytest.raises(DataFormatError) as info:
        load("vqa", tmp_path, "val")
    message = str(info.value)
    assert "missing field 'sent'" in message and "example #1" in message
    assert "karpathy_val.json" in message


def test_vqa_label_rules(tmp_path, write):
    unlabelled = [{"img_id": "x", "sent": "Is it red?", "question_id": 1}]
    write.json(tmp_path / "vqa" / "karpathy_test.json", unlabelled)
    assert load("vqa", tmp_path, "test", train=False)[0].targets == ()
    with pytest.raises(DataFormatError, match="missing field 'label'"):
        load("vqa", tmp_path, "test", train=True)
    write.json(tmp_path / "vqa" / "karpathy_test.json", [{**unlabelled[0], "label": ["red"]}])
    with pytest.raises(DataFormatError, match="'label' must map answers to numeric scores"):
        load("vqa", tmp_path, "test", train=False)


def test_empty_split_and_bad_json_and_missing_file(tmp_path, write):
    write.json(tmp_path / "vqa" / "karpathy_train.json", [])
    with pytest.raises(DataFormatError, match="task 'vqa', split 'train': no examples"):
        load("vqa", tmp_path, "train")
    (tmp_path / "vqa" / "karpathy_val.json").write_text('[\n  {"img_id": "x",\n  oops]')
    with pytest.raises(DataFormatError, match=r"karpathy_val\.json:3:3: invalid JSON"):
        load("vqa", tmp_path, "val")
    with pytest.raises(FileNotFoundError, match=r"karpathy_test\.json"):
        load("vqa", tmp_path, "test")


def test_comma_joined_splits_concatenate(tmp_path, write):
    write.json(tmp_path / "vqa" / "karpathy_train.json", VQA_RECORDS[:1])
    write.json(tmp_path / "vqa" / "karpathy_val.json", VQA_RECORDS[1:])
    assert [e.uid for e in load("vqa", tmp_path, "train,val")] == ["9001", "10"]


# -- GQA -------------------------------------------------------------------------------------------


def test_gqa_prefix_is_gpa_and_selectable(tmp_path, write):
    write.json(
        tmp_path / "GQA" / "train.json",
        [{"img_id": "2375429", "sent": "What is on the wall?", "question_id": "07333408",
          "label": {"pipe": 1.0}}],
    )  # fmt: skip
    (example,) = load("gqa", tmp_path, "train")
    assert example.input_text == "gpa: What is on the wall?"
    assert example.uid == "07333408" and example.feature_keys == ("2375429",)
    assert example.targets == ("pipe",) and not example.score_weighted
    assert draw_target(example, 0.3) == ("pipe", 1.0)
    assert example.references == {"question_id": "07333408", "label": {"pipe": 1.0}}
    assert load("gqa", tmp_path, "train", prompt="gqa: ")[0].input_text.startswith("gqa: ")


# -- NLVR2 -----------------------------------------------------------------------------------------


def test_nlvr2_two_images_and_true_false(tmp_path, write):
    records = [
        {"identifier": "dev-850-0-0", "img0": "dev-850-0-img0", "img1": "dev-850-0-img1",
         "label": 1, "sent": "There are two dogs.", "uid": "nlvr2_dev_0"},
        {"identifier": "dev-850-1-0", "img0": "dev-850-1-img0", "img1": "dev-850-1-img1",
         "label": 0, "sent": "There is one cat.", "uid": "nlvr2_dev_1"},
    ]  # fmt: skip
    write.json(tmp_path / "nlvr" / "valid.json", records)
    first, second = load("nlvr", tmp_path, "valid")
    assert first.input_text == "nlvr: There are two dogs."
    assert first.feature_keys == ("dev-850-0-img0", "dev-850-0-img1")
    assert first.targets == ("true",) and second.targets == ("false",)
    assert first.uid == "nlvr2_dev_0"
    assert first.references == {"uid": "nlvr2_dev_0", "identifier": "dev-850-0-0", "label": 1}
    write.json(tmp_path / "nlvr" / "valid.json", [{**records[0], "label": 2}])
    with pytest.raises(DataFormatError, match="'label' must be 0 or 1, found 2"):
        load("nlvr", tmp_path, "valid")


# -- COCO ------------------------------------------------------------------------------------------

COCO = {
    "images": [
        {"filename": "COCO_train2014_000000000001.jpg", "split": "train", "cocoid": 1,
         "sentids": [101, 102], "sentences": [{"raw": " A dog runs. "}, {"raw": "A dog."}]},
        {"filename": "COCO_val2014_000000000002.jpg", "split": "restval", "cocoid": 2,
         "sentids": [201], "sentences": [{"raw": "A cat sits."}]},
        {"filename": "COCO_val2014_000000000003.jpg", "split": "val", "cocoid": 3,
         "sentids": [301, 302], "sentences": [{"raw": "Red food."}, {"raw": "A plate."}]},
        {"filename": "COCO_val2014_000000000004.jpg", "split": "test", "cocoid": 4,
         "sentids": [401], "sentences": [{"raw": "Blue."}]},
    ]
}  # fmt: skip


def test_coco_train_is_one_example_per_caption_including_restval(tmp_path, write):
    write.json(tmp_path / "COCO" / "dataset_coco.json", COCO)
    examples = load("caption", tmp_path, "train")
    assert [e.uid for e in examples] == ["101", "102", "201"]
    assert [e.targets for e in examples] == [("A dog runs.",), ("A dog.",), ("A cat sits.",)]
    assert all(e.input_text == "caption: " for e in examples)
    assert examples[0].feature_keys == ("COCO_train2014_000000000001",)
    assert examples[2].feature_keys == ("COCO_val2014_000000000002",)
    assert examples[0].references["captions"] == ["A dog runs.", "A dog."]


def test_coco_eval_is_one_example_per_image_with_all_captions(tmp_path, write):
    write.json(tmp_path / "COCO" / "dataset_coco.json", COCO)
    (example,) = load("caption", tmp_path, "val", train=False)
    assert example.uid == "3" and example.feature_keys == ("COCO_val2014_000000000003",)
    assert example.references == {
        "img_id": "COCO_val2014_000000000003",
        "cocoid": 3,
        "captions": ["Red food.", "A plate."],
    }
    assert example.targets == ("Red food.", "A plate.")


def test_coco_missing_caption_text(tmp_path, write):
    broken = {"images": [{**COCO["images"][0], "sentences": [{"raw": "x"}, {"tokens": []}]}]}
    write.json(tmp_path / "COCO" / "dataset_coco.json", broken)
    with pytest.raises(DataFormatError, match=r"image #0, sentence #1: missing field 'raw'"):
        load("caption", tmp_path, "train")


# -- TVQA / How2QA ---------------------------------------------------------------------------------

TVQA_RECORD = {
    "qid": 7, "q": " Who says hi? ", "a0": "Ross.", "a1": "Rachel", "a2": "Joey. ",
    "a3": "Monica..", "a4": "Chandler", "answer_idx": 2, "ts": "2.50-6.00", "vid_name": VID,
    "show_name": "Friends",
}  # fmt: skip


def _video_tree(tmp_path, write, subtitles_file="tv_subtitles.jsonl"):
    write.jsonl(tmp_path / "video" / "ann" / subtitles_file, [{"vid_name": VID, "sub": SUBS}])


def test_tvqa_text_follows_the_released_format(tmp_path, write):
    _video_tree(tmp_path, write)
    write.jsonl(tmp_path / "video" / "ann" / "tvqa" / "tvqa_train.jsonl", [TVQA_RECORD])
    (example,) = load("tvqa", tmp_path, "train")
    assert example.input_text == (
        "[Subs] Hi there. How are you? Fine. [Q] Who says hi? [TS] (2.50-6.00) "
        "[Choices] a0: Ross. a1: Rachel. a2: Joey. a3: Monica. a4: Chandler. tvqa: "
    )
    assert example.targets == ("a2",) and example.uid == "7"
    assert example.feature_keys == (VID,)
    assert example.references == {"qid": 7, "vid_name": VID, "answer": "a2", "answer_idx": 2}


def test_tvqa_subtitle_window_keeps_overlapping_lines(tmp_path, write):
    _video_tree(tmp_path, write)
    write.jsonl(tmp_path / "video" / "ann" / "tvqa" / "tvqa_train.jsonl", [TVQA_RECORD])
    (example,) = load("tvqa", tmp_path, "train", subtitle_window=True)
    assert example.input_text.startswith("[Subs] How are you? [Q] Who says hi?")


def test_how2qa_has_four_choices_and_its_own_prompt(tmp_path, write):
    _video_tree(tmp_path, write, "how2_subtitles.jsonl")
    record = {k: v for k, v in TVQA_RECORD.items() if k not in ("a4", "show_name")}
    write.jsonl(tmp_path / "video" / "ann" / "how2qa" / "how2qa_train_release.jsonl", [record])
    (example,) = load("how2qa", tmp_path, "train")
    assert example.input_text.endswith(
        "[Choices] a0: Ross. a1: Rachel. a2: Joey. a3: Monica. how2qa: "
    )
    assert "a4" not in example.input_text and example.task == "how2qa"


def test_tvqa_errors(tmp_path, write):
    _video_tree(tmp_path, write)
    path = tmp_path / "video" / "ann" / "tvqa" / "tvqa_val.jsonl"
    write.jsonl(path, [TVQA_RECORD])
    path.write_text(path.read_text() + "{bad json\n")
    with pytest.raises(DataFormatError, match=r"tvqa_val\.jsonl:2: invalid JSON line"):
        load("tvqa", tmp_path, "val")
    write.jsonl(path, [TVQA_RECORD, {k: v for k, v in TVQA_RECORD.items() if k != "q"}])
    with pytest.raises(DataFormatError, match=r"line 2: missing field 'q'"):
        load("tvqa", tmp_path, "val")
    write.jsonl(path, [{**TVQA_RECORD, "answer_idx": 5}])
    with pytest.raises(DataFormatError, match=r"'answer_idx' must be an integer in \[0, 5\)"):
        load("tvqa", tmp_path, "val")
    write.jsonl(path, [{**TVQA_RECORD, "vid_name": "unknown_clip"}])
    with pytest.raises(DataFormatError, match="no subtitles for video 'unknown_clip'"):
        load("tvqa", tmp_path, "val")
    write.jsonl(path, [{**TVQA_RECORD, "ts": "soon"}])
    with pytest.raises(DataFormatError, match="'ts' must be 'start-end'"):
        load("tvqa", tmp_path, "val", subtitle_window=True)
    write.jsonl(path, [])
    with pytest.raises(DataFormatError, match="no examples"):
        load("tvqa", tmp_path, "val")


# -- TVC / YC2C ------------------------------------------------------------------------------------

TVC_RECORD = {
    "vid_name": VID, "duration": 61.4, "ts": [2.5, 6.0], "clip_id": 5,
    "descs": [{"desc": "Ross waves.", "desc_id": 11}, {"desc": "Ross says hi.", "desc_id": 12}],
}  # fmt: skip


def test_tvc_train_is_one_example_per_description(tmp_path, write):
    _video_tree(tmp_path, write)
    write.jsonl(tmp_path / "video" / "ann" / "tvc" / "tvc_train_release.jsonl", [TVC_RECORD])
    examples = load("tvc", tmp_path, "train")
    assert [e.uid for e in examples] == ["11", "12"]
    assert [e.targets for e in examples] == [("Ross waves.",), ("Ross says hi.",)]
    assert examples[0].input_text == "[Subs] Hi there. How are you? Fine. [TS] ([2.5, 6.0]) tvc: "
    assert examples[0].references["descs"] == ["Ross waves.", "Ross says hi."]


def test_tvc_eval_is_one_example_per_clip(tmp_path, write):
    _video_tree(tmp_path, write)
    write.jsonl(tmp_path / "video" / "ann" / "tvc" / "tvc_val_release.jsonl", [TVC_RECORD])
    (example,) = load("tvc", tmp_path, "val", train=False)
    assert example.uid == "5" and example.targets == ("Ross waves.", "Ross says hi.")
    assert example.references == {
        "vid_name": VID, "clip_id": 5, "ts": [2.5, 6.0], "duration": 61.4,
        "descs": ["Ross waves.", "Ross says hi."],
    }  # fmt: skip
    assert len(load("tvc", tmp_path, "val", train=False, per_desc_eval=True)) == 2
    windowed = load("tvc", tmp_path, "val", train=False, subtitle_window=True)
    assert windowed[0].input_text == "[Subs] How are you? [TS] ([2.5, 6.0]) tvc: "


def test_yc2c_has_no_time_stamp(tmp_path, write):
    subs = [{"vid_name": "yc2_clip_1", "sub": [{"text": "add salt", "start": 0, "end": 1}]}]
    write.jsonl(tmp_path / "video" / "ann" / "yc2_subtitles.jsonl", subs)
    record = {"vid_name": "yc2_clip_1", "duration": 9.0,
              "descs": [{"desc": "add salt to the pan", "desc_id": "d1"}]}  # fmt: skip
    write.jsonl(tmp_path / "video" / "ann" / "yc2c" / "yc2c_train_release.jsonl", [record])
    (example,) = load("yc2c", tmp_path, "train")
    assert example.input_text == "[Subs] add salt yc2c: "
    assert example.targets == ("add salt to the pan",) and example.uid == "d1"
    write.jsonl(
        tmp_path / "video" / "ann" / "yc2c" / "yc2c_train_release.jsonl",
        [{**record, "descs": [{"desc_id": "d1"}]}],
    )
    with pytest.raises(DataFormatError, match=r"line 1, desc #0: missing field 'desc'"):
        load("yc2c", tmp_path, "train")
