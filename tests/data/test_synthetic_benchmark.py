"""Synthetic benchmark, end to end: the generated tree is read unchanged by the official-format
readers and feature stores, is byte-identical for a seed, and has the promised structure."""

from __future__ import annotations

import hashlib
import json
import re
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pytest

from vlpet_jax.data import tasks
from vlpet_jax.data.features import (
    ImageFeatureStore,
    ImageVisuals,
    VideoFeatureStore,
    VideoVisuals,
)
from vlpet_jax.data.synthetic import MANIFEST, generate_benchmark, image_pools, video_pools

IMAGE_DIM = 64
TINY = dict(
    image_feat_dim=IMAGE_DIM,
    coco_images=(24, 6, 16, 16),
    gqa_images=(24, 16, 16),
    nlvr_images=(16, 8, 8),
    nlvr_groups=(8, 4, 4),
    tv_videos=(8, 4),
    how2_videos=(8, 4),
    yc2_videos=(8, 4),
)
SPLITS = {
    "vqa": ("train", "val", "test"),
    "gqa": ("train", "valid", "testdev"),
    "nlvr": ("train", "valid", "test"),
    "caption": ("train", "val", "test"),
    "tvqa": ("train", "val"),
    "how2qa": ("train", "val"),
    "tvc": ("train", "val"),
    "yc2c": ("train", "val"),
}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("synthetic") / "datasets"
    return root, generate_benchmark(root, seed=0, kind="both", **TINY)


def _visuals(root: Path, spec):
    def visuals(split):
        directory = root / spec.feature_dir(split)
        if spec.visual == "video":
            return VideoVisuals(VideoFeatureStore(directory))
        return ImageVisuals(ImageFeatureStore(directory, expected_shape=(49, IMAGE_DIM)))

    return visuals


@pytest.mark.parametrize("task", list(SPLITS))
def test_readers_load_every_split_with_its_features(bench, task):
    root, _ = bench
    spec = tasks.get_task(task)
    tokens = {"image": 36, "image_pair": 72, "video": 64}[spec.visual]
    for split in SPLITS[task]:
        for train in (True, False):
            examples = spec.load(root, split, train=train)
            assert examples, (task, split)
            assert all(e.targets and e.input_text for e in examples)
            assert len({e.uid for e in examples}) == len(examples)
            visuals = _visuals(root, spec)(split)
            for example in examples:
                vis = visuals(example.feature_keys)
                dim = 512 if spec.visual == "video" else IMAGE_DIM
                assert vis.feats.shape == (tokens, dim)


def test_summary_counts_what_the_readers_read(bench):
    root, summary = bench
    examples = summary["examples"]
    assert set(examples) == set(SPLITS)
    for task in set(SPLITS) - {"caption"}:  # one record per question / statement / clip
        for split in SPLITS[task]:
            loaded = tasks.get_task(task).load(root, split, train=False)
            assert examples[task][split] == len(loaded), (task, split)
    # Captions are counted per Karpathy split; the reader's "train" is train + restval.
    captions = {
        s: len(tasks.get_task("caption").load(root, s, train=True)) for s in SPLITS["caption"]
    }
    assert captions["train"] == examples["caption"]["train"] + examples["caption"]["restval"]
    assert examples["caption"]["restval"] == 5 * TINY["coco_images"][1]
    assert (
        captions["val"] == examples["caption"]["val"]
        and captions["test"] == examples["caption"]["test"]
    )
    assert summary["images"] == sum(len(p) for p in image_pools(0, **TINY).values())
    assert summary["videos"] == sum(len(p) for p in video_pools(0, **TINY).values())
    manifest = json.loads((root / MANIFEST).read_text())
    assert manifest["examples"] == examples and manifest["seed"] == 0
    assert manifest["sizes"]["coco_images"] == list(TINY["coco_images"])
    assert summary["files"] == sum(1 for p in root.rglob("*") if p.is_file())


def test_vqa_labels_are_soft_and_match_ten_raw_answers(bench):
    root, _ = bench
    examples = tasks.get_task("vqa").load(root, "train", train=True, raw_answers=True)
    scores = Counter()
    for e in examples:
        answers = e.references["answers"]
        assert [a["answer_id"] for a in answers] == list(range(1, 11))
        votes = Counter(a["answer"] for a in answers)
        label = e.references["label"]
        assert label == {a: {1: 0.3, 2: 0.6, 3: 0.9}.get(n, 1.0) for a, n in votes.items()}
        assert max(label.values()) == 1.0  # the true answer keeps a majority
        scores.update(label.values())
        assert e.references["answer_type"] in ("yes/no", "number", "other")
    assert scores[0.3] > 0  # label noise: some answers from only one annotator
    val = tasks.get_task("vqa").load(root, "val", train=False, raw_answers=True)
    assert all(len(e.references["answers"]) == 10 for e in val)


def test_nlvr_groups_are_consistency_groups_half_true(bench):
    root, _ = bench
    for split, prefix in (("train", "train"), ("valid", "dev"), ("test", "test")):
        groups = defaultdict(list)
        for e in tasks.get_task("nlvr").load(root, split, train=True):
            identifier = e.references["identifier"]
            assert re.fullmatch(rf"{prefix}-\d+-\d+-0", identifier)
            assert e.feature_keys[0] != e.feature_keys[1]
            parts = identifier.split("-")
            groups[(parts[1], parts[3])].append(e)
        assert len(groups) == TINY["nlvr_groups"][("train", "valid", "test").index(split)]
        for members in groups.values():
            assert len(members) == 4 and len({m.input_text for m in members}) == 1
            assert sorted(m.references["label"] for m in members) == [0, 0, 1, 1]


def test_video_structure(bench):
    root, _ = bench
    lengths = []
    for domain in ("tv", "how2", "yc2"):
        for path in (root / "video" / "vis_features" / domain / "clip-vit").glob("*.npz"):
            with np.load(path) as archive:
                assert archive.files == ["features"]
                feats = archive["features"]
            assert feats.dtype == np.float32 and feats.shape[1] == 512
            lengths.append(feats.shape[0])
    assert min(lengths) < 64 < max(lengths)  # both the pad and the pool path of SPEC.md §2
    for task, choices in (("tvqa", 5), ("how2qa", 4)):
        for e in tasks.get_task(task).load(root, "train", train=True):
            assert f"a{choices - 1}:" in e.input_text and f"a{choices}:" not in e.input_text
            assert e.input_text.endswith(f"{task}: ") and "[TS] (" in e.input_text
            assert e.targets[0] in {f"a{i}" for i in range(choices)}
    for e in tasks.get_task("tvc").load(root, "val", train=False):
        start, end = e.references["ts"]
        assert 0 <= start < end <= e.references["duration"]
        assert len(e.targets) == 2  # two paraphrases: a multi-reference set


def test_official_feature_layouts_at_default_dims(tmp_path):
    sizes = dict(
        coco_images=(2, 0, 2, 2), gqa_images=(2, 2, 2), nlvr_images=(4, 4, 4),
        nlvr_groups=(1, 1, 1),
    )  # fmt: skip
    generate_benchmark(tmp_path, kind="image", **sizes)
    store = ImageFeatureStore(tmp_path / tasks.get_task("vqa").feature_dir("train"))
    img_id = tasks.get_task("vqa").load(tmp_path, "val", train=False)[0].feature_keys[0]
    feats = store.load(img_id)  # the store checks (49, 2048)
    assert feats.shape == (49, 2048) and feats.dtype == np.float16


def _hashes(root: Path) -> dict[str, str]:
    return {
        p.relative_to(root).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


def test_same_seed_same_bytes_other_seed_other_bytes(tmp_path, bench):
    root, _ = bench
    again = tmp_path / "again"
    generate_benchmark(again, seed=0, kind="both", **TINY)
    first, second = _hashes(root), _hashes(again)
    assert len(first) > 100 and first == second
    other = tmp_path / "other"
    generate_benchmark(other, seed=1, kind="both", **TINY)
    third = _hashes(other)
    assert third.keys() == first.keys()  # ids are positional; every content depends on the seed
    assert [k for k in first if first[k] == third[k]] == []


def test_generation_errors(tmp_path, bench):
    root, _ = bench
    with pytest.raises(FileExistsError, match="not empty"):
        generate_benchmark(root, kind="image", **TINY)
    with pytest.raises(TypeError, match=r"unknown benchmark size.*coco_imgs.*known:"):
        generate_benchmark(tmp_path / "x", coco_imgs=(1, 1, 1, 1))
    with pytest.raises(ValueError, match="kind"):
        generate_benchmark(tmp_path / "y", kind="audio")
    with pytest.raises(ValueError, match="even"):
        generate_benchmark(tmp_path / "z", image_feat_dim=63)
