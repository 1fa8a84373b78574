"""TFDS builders of the real tasks (SPEC.md §6): built from a tiny VL-T5 ``datasets/`` tree written
here, read back with ``tfds.data_source`` (no TensorFlow), and compared field by field, in order,
with the plain task readers."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tensorflow_datasets as tfds

from vlpet_jax.data import tasks
from vlpet_jax.data.batching import TextCollator
from vlpet_jax.data.features import VisualTokens
from vlpet_jax.data.multitask import MultitaskIterator, TaskSource
from vlpet_jax.data.tfds_builders import (
    TASK_SPLITS,
    TfdsExamples,
    VlpetAnnotations,
    record_to_example,
)


def _qa(prefix: int, n: int, *, labelled: bool = True) -> list[dict]:
    answers = [{"red": 1.0, "blue": 0.3}, {"cat": 0.9}, {}, {"a b": 0.6, "c": 0.6}]
    records = []
    for i in range(n):
        record = {"img_id": f"COCO_val2014_{prefix + i:012d}", "sent": f"what is {i}?",
                  "question_id": prefix + i, "answer_type": "other", "question_type": "what"}  # fmt: skip
        if labelled:
            record["label"] = answers[i % len(answers)]
        records.append(record)
    return records


def _subtitles(names: list[str]) -> list[dict]:
    return [
        {"vid_name": n, "sub": [{"text": f" hi {n}. ", "start": 0.5, "end": 2.0},
                                {"text": "how are you?", "start": 3.0, "end": 5.0}]}
        for n in names
    ]  # fmt: skip


def _write_tree(root, write) -> None:
    """A few records of every task in its official file (SPEC.md §6)."""
    for k, split in enumerate(("train", "val", "test")):
        write.json(root / "vqa" / f"karpathy_{split}.json", _qa(100 * k, 5, labelled=k < 2))
    for k, split in enumerate(("train", "valid", "testdev")):
        write.json(root / "GQA" / f"{split}.json", [
            {"img_id": f"{2300 + 10 * k + i}", "sent": f"is it {i}?", "question_id": f"{k}_{i}",
             "label": {["yes", "no"][i % 2]: 1.0}} for i in range(4)
        ])  # fmt: skip
    for split in ("train", "valid", "test"):
        write.json(root / "nlvr" / f"{split}.json", [
            {"identifier": f"{split}-{i // 2}-0", "img0": f"{split}-{i}-img0",
             "img1": f"{split}-{i}-img1", "label": i % 2, "sent": f"two dogs {i}",
             "uid": f"nlvr2_{split}_{i}"} for i in range(4)
        ])  # fmt: skip
    write.json(root / "COCO" / "dataset_coco.json", {"images": [
        {"filename": f"COCO_{s}2014_{i:012d}.jpg", "split": s, "cocoid": i,
         "sentids": [10 * i, 10 * i + 1],
         "sentences": [{"raw": f"A cat {i}. ", "tokens": []}, {"raw": f"dog {i}", "tokens": []}]}
        for i, s in enumerate(["train", "restval", "val", "test", "train", "val"])
    ]})  # fmt: skip
    ann = root / "video" / "ann"
    tv, how2, yc2 = ["tv0", "tv1", "tv2"], ["h0", "h1"], ["y0", "y1"]
    write.jsonl(ann / "tv_subtitles.jsonl", _subtitles(tv))
    write.jsonl(ann / "how2_subtitles.jsonl", _subtitles(how2))
    write.jsonl(ann / "yc2_subtitles.jsonl", _subtitles(yc2))
    for k, split in enumerate(("train", "val")):
        write.jsonl(ann / "tvqa" / f"tvqa_{split}.jsonl", [
            {"qid": 10 * k + i, "q": f" who {i}? ", "vid_name": tv[i], "ts": "0.50-4.00",
             "answer_idx": i % 5, **{f"a{j}": f"ans {j}." for j in range(5)}} for i in range(3)
        ])  # fmt: skip
        write.jsonl(ann / "how2qa" / f"how2qa_{split}_release.jsonl", [
            {"qid": f"h{k}{i}", "q": "what next?", "vid_name": how2[i], "ts": "1.0-3.0",
             "answer_idx": 3 - i, **{f"a{j}": f"step {j}" for j in range(4)}} for i in range(2)
        ])  # fmt: skip
        write.jsonl(ann / "tvc" / f"tvc_{split}_release.jsonl", [
            {"vid_name": tv[i], "duration": 30.0, "ts": [0.5, 4.0 + i], "clip_id": 100 * k + i,
             "descs": [{"desc": f"ross waves {i}", "desc_id": 1000 * k + 10 * i + j}
                       for j in range(2)]} for i in range(3)
        ])  # fmt: skip
        write.jsonl(ann / "yc2c" / f"yc2c_{split}_release.jsonl", [
            {"vid_name": yc2[i], "duration": 60.0, "clip_id": f"y{k}{i}",
             "descs": [{"desc": f"add salt {i}", "desc_id": f"d{k}{i}"}]} for i in range(2)
        ])  # fmt: skip


@pytest.fixture
def tree(tmp_path, write):
    root = tmp_path / "datasets"
    _write_tree(root, write)
    return root


def _build(tmp_path, manual_dir, task, **kwargs):
    data_dir = tmp_path / "tfds"
    builder = VlpetAnnotations(config=task, data_dir=str(data_dir), **kwargs)
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir=str(manual_dir)),
    )
    return tfds.data_source(f"vlpet_annotations/{task}", data_dir=str(data_dir))


def _json_normal(value):
    return json.loads(json.dumps(value))


@pytest.mark.parametrize("task", tasks.task_names())
def test_records_equal_the_reader_examples_field_by_field_in_order(tmp_path, tree, task):
    sources = _build(tmp_path, tree, task)
    assert set(sources) == set(TASK_SPLITS[task])
    for split, source in sources.items():
        expected = tasks.get_task(task).load(tree, split, train=split == "train")
        got = TfdsExamples(source, task)
        assert len(got) == len(expected) > 0
        for ours, theirs in zip(got, expected):
            assert ours.task == theirs.task == task
            assert ours.uid == theirs.uid
            assert ours.input_text == theirs.input_text
            assert ours.targets == theirs.targets
            assert ours.target_scores == pytest.approx(theirs.target_scores, rel=1e-7)
            assert ours.score_weighted == theirs.score_weighted
            assert ours.feature_keys == theirs.feature_keys
            assert ours.references == _json_normal(dict(theirs.references))


def test_a_tfds_backed_source_gives_the_reader_sources_batches(tmp_path, tree, t5_tokenizer):
    class Keyed:
        def __call__(self, keys):
            feats = np.full((2, 3), float(keys[0].rsplit("_", 1)[-1]), np.float16)
            return VisualTokens(feats, np.zeros((2, 4), np.float32), np.zeros(2, np.int32),
                                np.arange(2, dtype=np.int32))  # fmt: skip

        def empty(self, num_images=1):
            return self(["x_0"])

    spec = tasks.get_task("vqa")
    tfds_examples = TfdsExamples(_build(tmp_path, tree, "vqa")["train"], "vqa")
    collator = TextCollator(t5_tokenizer, "t5")

    def stream(examples):
        source = TaskSource(spec, examples, 2, Keyed())
        return list(MultitaskIterator([source], collator, seed=5, num_epochs=3))

    ours, theirs = stream(tfds_examples), stream(spec.load(tree, "train", train=True))
    assert len(ours) == len(theirs) == 9
    for a, b in zip(ours, theirs):
        assert a.targets == b.targets
        for key in b.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key])


def test_reader_options_splits_and_root(tmp_path, tree):
    sources = _build(tmp_path, tmp_path / "unused", "gqa", root=tree, splits=["valid"],
                     options={"prompt": "gqa: "})  # fmt: skip
    assert list(sources) == ["valid"]
    examples = TfdsExamples(sources["valid"], "gqa")
    assert [e.input_text for e in examples] == [f"gqa: is it {i}?" for i in range(4)]
    assert examples[-1].uid == "1_3" and [e.uid for e in examples[1:3]] == ["1_1", "1_2"]
    with pytest.raises(IndexError, match="index 4 out of range for 4 gqa examples"):
        examples[4]


def test_missing_manual_dir_and_missing_files_say_what_to_provide(tmp_path, write):
    with pytest.raises(AssertionError, match=r"(?s)does not exist or is empty.*VL-T5"):
        _build(tmp_path, tmp_path / "nowhere", "nlvr")
    write.json(tmp_path / "partial" / "nlvr" / "train.json", [])
    with pytest.raises(FileNotFoundError, match=r"annotation file not found: .*nlvr/valid\.json"):
        _build(tmp_path, tmp_path / "partial", "nlvr", splits=["valid"])


def test_record_to_example_decodes_bytes():
    record = {"uid": b"7", "input_text": b"nlvr: two dogs", "targets": [b"true"],
              "target_scores": np.array([1.0], np.float32), "score_weighted": np.bool_(False),
              "feature_keys": [b"a", b"b"], "references": b'{"label": 1}'}  # fmt: skip
    example = record_to_example("nlvr", record)
    assert example.feature_keys == ("a", "b") and example.targets == ("true",)
    assert example.references == {"label": 1} and example.score_weighted is False
