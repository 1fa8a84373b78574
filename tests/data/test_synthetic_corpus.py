"""Synthetic benchmark text: the pre-training corpus and the tiny word-level tokenizer."""

from __future__ import annotations

import json

import pytest

from vlpet_jax.checkpoints.tokenizer import load_tokenizer
from vlpet_jax.data import TextCollator, tasks
from vlpet_jax.data.synthetic import (
    MANIFEST,
    ensure_benchmark,
    generate_benchmark,
    task_pairs,
    text_corpus,
    tokenizer_path,
    tokenizer_texts,
    train_tokenizer,
)

SMALL = dict(
    image_feat_dim=16,
    video_feat_dim=16,
    coco_images=(12, 0, 12, 12),
    gqa_images=(16, 12, 12),
    nlvr_images=(8, 8, 8),
    nlvr_groups=(4, 2, 2),
    tv_videos=(6, 3),
    how2_videos=(6, 3),
    yc2_videos=(4, 2),
    yc2_frames=(20, 30),
)


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("corpus")
    generate_benchmark(path, seed=0, kind="both", **SMALL)
    return path


def test_corpus_holds_every_kind_of_training_text(root):
    corpus = text_corpus(root)
    vqa = json.loads((root / "vqa" / "karpathy_train.json").read_text())
    assert vqa[0]["sent"] in corpus
    coco = json.loads((root / "COCO" / "dataset_coco.json").read_text())["images"]
    train_caption = next(i for i in coco if i["split"] == "train")["sentences"][0]["raw"]
    val_captions = {s["raw"] for i in coco if i["split"] == "val" for s in i["sentences"]}
    assert train_caption in corpus
    nlvr = [
        e.input_text.removeprefix("nlvr: ")
        for e in tasks.get_task("nlvr").load(root, "train", train=True)
    ]
    assert set(nlvr) <= set(corpus)
    tvc = tasks.get_task("tvc").load(root, "train", train=True)
    assert {e.targets[0] for e in tvc} <= set(corpus)
    assert any(t.startswith("where does the") or t.startswith("what") for t in corpus)
    assert "let us start" in corpus or "now the next step" in corpus or "almost done" in corpus
    # Evaluation targets stay out of pre-training unless asked for.
    only_val = val_captions - {
        s["raw"] for i in coco if i["split"] != "val" for s in i["sentences"]
    }
    assert only_val and not only_val & set(corpus)
    assert only_val <= set(text_corpus(root, train_only=False))


@pytest.mark.parametrize(
    ("family", "ids"),
    [
        ("t5", {"pad": 0, "eos": 1, "unk": 2, "bos": 3}),
        ("bart", {"bos": 0, "pad": 1, "eos": 2, "unk": 3}),
    ],
)
def test_tokenizer_covers_every_input_and_target(root, tmp_path, family, ids):
    texts = tokenizer_texts(root) + text_corpus(root)
    train_tokenizer(texts, tmp_path / "tok", family=family)
    tokenizer = load_tokenizer(tmp_path / "tok")  # the path real checkpoints take
    for name, expected in ids.items():
        assert getattr(tokenizer, f"{name}_token_id") == expected
    vocab = tokenizer.get_vocab()
    assert vocab["<extra_id_0>"] > vocab["<extra_id_99>"] > vocab["yellow"]
    assert len(tokenizer) < 600  # fits the tiny presets' table (incl. 100 <vis_extra_id>)
    unk = tokenizer.unk_token_id
    for task in tasks.task_names():
        split = {"gqa": "valid", "nlvr": "valid"}.get(task, "val")
        for e in tasks.get_task(task).load(root, split, train=False):
            for text in (e.input_text, *e.targets):
                encoded = tokenizer(text, add_special_tokens=False)["input_ids"]
                assert encoded and unk not in encoded, (task, text)
    encoded = tokenizer("blue sphere", add_special_tokens=False)["input_ids"]
    assert tokenizer.decode(encoded) == "blue sphere"
    assert tokenizer.convert_ids_to_tokens(
        tokenizer("a3: cube?", add_special_tokens=False)["input_ids"]
    ) == ["a3", ":", "cube", "?"]
    assert "<unk>" in tokenizer.convert_ids_to_tokens(tokenizer("a zebra")["input_ids"])
    # The data pipeline's collator accepts it.
    arrays = TextCollator(tokenizer, family=family).text_arrays(
        ["vqa: what color is the cube?"], ["red"], 20, 10
    )
    row = arrays["input_ids"][0][arrays["attention_mask"][0] == 1].tolist()
    assert (
        unk not in row and row[-1] == ids["eos"] and len(row) == 9 + (family == "bart")
    )  # 8 words + specials
    assert arrays["labels"][0][arrays["labels"][0] >= 0].tolist()[-1] == ids["eos"]


def test_tokenizer_is_deterministic(root, tmp_path):
    texts = tokenizer_texts(root)
    train_tokenizer(texts, tmp_path / "a")
    train_tokenizer(list(reversed(texts)), tmp_path / "b")
    assert (tmp_path / "a" / "tokenizer.json").read_bytes() == (
        tmp_path / "b" / "tokenizer.json"
    ).read_bytes()
    with pytest.raises(ValueError, match="family"):
        train_tokenizer(texts, family="gpt2")


def test_ensure_benchmark_builds_once_with_a_tokenizer_per_family(tmp_path):
    root = tmp_path / "work" / "synthetic"
    manifest = ensure_benchmark(root, seed=3, kind="image", **SMALL)
    assert manifest["seed"] == 3 and manifest["examples"]["vqa"]["train"] > 0
    assert [p.name for p in root.parent.iterdir()] == ["synthetic"]  # no staging left behind
    stamp = (root / MANIFEST).stat().st_mtime_ns
    assert ensure_benchmark(root, seed=3, kind="image", **SMALL) == manifest
    assert (root / MANIFEST).stat().st_mtime_ns == stamp  # reused, not regenerated
    for family, pad in (("t5", 0), ("bart", 1)):
        tokenizer = load_tokenizer(tokenizer_path(root, family))
        assert tokenizer.pad_token_id == pad
        text = tasks.get_task("gqa").load(root, "testdev", train=False)[0].input_text
        assert tokenizer.unk_token_id not in tokenizer(text)["input_ids"]
    with pytest.raises(ValueError, match="generated with"):
        ensure_benchmark(root, seed=4, kind="image", **SMALL)
    with pytest.raises(FileExistsError, match=r"no synthetic_benchmark\.json"):
        ensure_benchmark(tmp_path, kind="image", **SMALL)


def test_task_pairs_are_training_inputs_with_their_best_answer(root):
    pairs = task_pairs(root, ("vqa", "nlvr"))
    vqa_train = tasks.get_task("vqa").load(root, "train", train=True)
    nlvr_train = tasks.get_task("nlvr").load(root, "train", train=True)
    assert len(pairs) == len(vqa_train) + len(nlvr_train)
    first = vqa_train[0]
    best = first.targets[max(range(len(first.targets)), key=lambda i: first.target_scores[i])]
    assert pairs[0] == (first.input_text, best)
    assert {target for _, target in pairs[len(vqa_train) :]} <= {"true", "false"}
    # Only training splits: no caption of the evaluation images is a pre-training target.
    caption_targets = {target for _, target in task_pairs(root, ("caption",))}
    train_captions = {
        e.targets[0] for e in tasks.get_task("caption").load(root, "train", train=True)
    }
    val = tasks.get_task("caption").load(root, "val", train=False)
    val_only = {t for e in val for t in e.targets} - train_captions
    assert caption_targets <= train_captions and val_only and not caption_targets & val_only
