"""The multi-task round-robin (SPEC.md §6): counts, determinism, resume, host sharding, sampling."""

from __future__ import annotations

import json
import math
from collections import Counter

import numpy as np
import pytest

from vlpet_jax.data import features as F
from vlpet_jax.data.batching import IGNORE_ID, TextCollator
from vlpet_jax.data.examples import Example, draw_target
from vlpet_jax.data.multitask import (
    MultitaskIterator,
    TaskSource,
    eval_batches,
    load_task_source,
    task_batch_sizes,
)
from vlpet_jax.data.tasks import get_task


class KeyedVisuals:
    """Tokens whose first feature is the example's numeric key, so a row shows who filled it."""

    def __init__(self, tokens: int = 4, dim: int = 3) -> None:
        self.tokens, self.dim = tokens, dim

    def __call__(self, keys):
        feats = np.zeros((self.tokens * len(keys), self.dim), np.float16)
        feats[:, 0] = float(keys[0])
        return F.VisualTokens(
            feats=feats,
            pos=np.zeros((len(feats), 4), np.float32),
            img_order_ids=np.repeat(np.arange(len(keys), dtype=np.int32), self.tokens),
            obj_order_ids=np.tile(np.arange(self.tokens, dtype=np.int32), len(keys)),
        )

    def empty(self, num_images: int = 1):
        tokens = self(["0"] * num_images)
        return tokens._replace(feats=np.zeros_like(tokens.feats))


def make_source(task: str, n: int, batch_size: int, label=None) -> TaskSource:
    keys_per_example = get_task(task).images_per_example
    examples = [
        Example(
            task=task,
            uid=f"{task}{i}",
            input_text="vqa: what is red" + " blue" * (i % 4),
            targets=tuple(label) if label else ("red",),
            target_scores=tuple(label.values()) if label else (1.0,),
            score_weighted=task == "vqa",
            feature_keys=(str(i + 1),) * keys_per_example,
        )
        for i in range(n)
    ]
    return TaskSource(get_task(task), examples, batch_size, KeyedVisuals())


def three_tasks() -> list[TaskSource]:
    return [make_source("vqa", 10, 3), make_source("gqa", 7, 5), make_source("nlvr", 4, 4)]


def uids(batch) -> list[str]:
    return [ex.uid for ex in batch.examples if ex is not None]


def test_task_batch_sizes_follow_the_spec_ratios():
    image = ["vqa", "gqa", "nlvr", "caption"]
    assert task_batch_sizes(image, 60) == {"vqa": 60, "gqa": 100, "nlvr": 20, "caption": 50}
    assert task_batch_sizes(image, 500) == {"vqa": 500, "gqa": 833, "nlvr": 166, "caption": 416}
    video = ["tvqa", "how2qa", "tvc", "yc2c"]
    assert task_batch_sizes(video, 50) == {"tvqa": 50, "how2qa": 50, "tvc": 50, "yc2c": 50}
    with pytest.raises(ValueError, match="empty batch"):
        task_batch_sizes(["nlvr"], 2)


def test_each_epoch_lists_every_task_once_per_batch(t5_tokenizer):
    it = MultitaskIterator(three_tasks(), TextCollator(t5_tokenizer, "t5"), seed=42, num_epochs=2)
    assert it.steps_per_epoch == 4 + 2 + 1
    batches = list(it)
    assert len(batches) == 14
    for epoch in (batches[:7], batches[7:]):
        assert Counter(b.task for b in epoch) == {"vqa": 4, "gqa": 2, "nlvr": 1}
        for task, n in (("vqa", 10), ("gqa", 7), ("nlvr", 4)):
            seen = [u for b in epoch if b.task == task for u in uids(b)]
            assert sorted(seen) == sorted(f"{task}{i}" for i in range(n))
    for b in batches:
        mask = b.arrays["example_mask"]
        assert len(mask) == {"vqa": 3, "gqa": 5, "nlvr": 4}[b.task]
        assert (b.arrays["task_ids"] == get_task(b.task).task_id).all()
        assert (b.arrays["loss_weights"][mask == 0] == 0).all()
        assert (b.arrays["labels"][mask == 0] == IGNORE_ID).all()
    # 10 VQA examples in batches of 3: one padded batch per epoch with a single real row.
    assert sorted(int(b.arrays["example_mask"].sum()) for b in batches[:7] if b.task == "vqa") == [
        1, 3, 3, 3,
    ]  # fmt: skip
    nlvr = next(b for b in batches if b.task == "nlvr")
    assert nlvr.arrays["vis_feats"].shape == (4, 8, 3)
    assert nlvr.arrays["img_order_ids"][0].tolist() == [0] * 4 + [1] * 4


def test_order_is_shuffled_per_epoch_and_a_function_of_the_seed(t5_tokenizer):
    collator = TextCollator(t5_tokenizer, "t5")
    it = MultitaskIterator(three_tasks(), collator, seed=42)
    schedules = {tuple(it.epoch_schedule(e)) for e in range(6)}
    assert len(schedules) > 1
    run = lambda seed: [(b.task, uids(b)) for b in MultitaskIterator(  # noqa: E731
        three_tasks(), collator, seed=seed, num_epochs=2)]  # fmt: skip
    assert run(42) == run(42)
    assert run(42) != run(43)


def test_drop_remainder_keeps_only_full_batches(t5_tokenizer):
    it = MultitaskIterator(
        three_tasks(), TextCollator(t5_tokenizer, "t5"), seed=0, drop_remainder=True, num_epochs=1
    )
    batches = list(it)
    assert Counter(b.task for b in batches) == {"vqa": 3, "gqa": 1, "nlvr": 1}
    assert all(b.arrays["example_mask"].all() for b in batches)
    with pytest.raises(ValueError, match="fewer than its batch size"):
        MultitaskIterator([make_source("vqa", 2, 3)], it.collator, seed=0, drop_remainder=True)


def test_saved_state_resumes_identically_across_an_epoch_boundary(t5_tokenizer):
    collator = TextCollator(t5_tokenizer, "t5")
    first = MultitaskIterator(three_tasks(), collator, seed=7)
    consumed = [next(first) for _ in range(5)]
    state = json.loads(json.dumps(consumed[-1].state))
    expected = [next(first) for _ in range(6)]  # crosses into epoch 1
    resumed = MultitaskIterator(three_tasks(), collator, seed=7)
    resumed.set_state(state)
    got = [next(resumed) for _ in range(6)]
    assert [b.task for b in got] == [b.task for b in expected]
    for a, b in zip(got, expected):
        assert uids(a) == uids(b) and a.targets == b.targets
        assert a.arrays.keys() == b.arrays.keys()
        for key in a.arrays:
            np.testing.assert_array_equal(a.arrays[key], b.arrays[key])
    assert got[-1].state == expected[-1].state and got[-1].state["epoch"] == 1
    with pytest.raises(ValueError, match="'seed'"):
        MultitaskIterator(three_tasks(), collator, seed=8).set_state(state)
    other = [make_source("vqa", 11, 3), make_source("gqa", 7, 5), make_source("nlvr", 4, 4)]
    with pytest.raises(ValueError, match="'tasks'"):
        MultitaskIterator(other, collator, seed=7).set_state(state)


def test_host_slices_are_disjoint_and_make_up_the_global_batch(t5_tokenizer):
    collator = TextCollator(t5_tokenizer, "t5")
    whole = MultitaskIterator(three_tasks(), collator, seed=3, batch_multiple=2, num_epochs=1)
    hosts = [
        MultitaskIterator(three_tasks(), collator, seed=3, process_index=p, process_count=2,
                          num_epochs=1)
        for p in range(2)
    ]  # fmt: skip
    for global_batch, part0, part1 in zip(whole, *hosts):
        assert part0.task == part1.task == global_batch.task
        assert not set(uids(part0)) & set(uids(part1))
        assert uids(part0) + uids(part1) == uids(global_batch)
        for key, value in global_batch.arrays.items():
            np.testing.assert_array_equal(
                np.concatenate([part0.arrays[key], part1.arrays[key]]), value
            )
    with pytest.raises(ValueError, match="multiple of process_count"):
        MultitaskIterator(three_tasks(), collator, seed=0, process_count=2, batch_multiple=3)


def test_vqa_answers_are_drawn_in_proportion_to_their_scores(t5_tokenizer):
    label = {"a": 0.3, "b": 0.6, "c": 1.0}
    source = make_source("vqa", 40, 40, label=label)
    it = MultitaskIterator([source], TextCollator(t5_tokenizer, "t5"), seed=11, num_epochs=50)
    drawn: Counter[str] = Counter()
    per_example: dict[str, set[str]] = {}
    for batch in it:
        for ex, target, weight in zip(batch.examples, batch.targets,
                                      batch.arrays["loss_weights"]):  # fmt: skip
            drawn[target] += 1
            per_example.setdefault(ex.uid, set()).add(target)
            assert weight == pytest.approx(label[target])  # loss weight = the drawn score
    total = sum(drawn.values())
    assert total == 2000
    chi2 = sum((drawn[a] - total * s / 1.9) ** 2 / (total * s / 1.9) for a, s in label.items())
    assert chi2 < 13.82  # chi-square, 2 degrees of freedom, p = 0.001
    assert all(len(targets) > 1 for targets in per_example.values())


def test_draw_target_inverts_the_cumulative_scores():
    ex = Example("vqa", "1", "q", targets=("x", "y", "z"), target_scores=(0.0, 1.0, 3.0),
                 score_weighted=True)  # fmt: skip
    assert draw_target(ex, 0.0) == ("y", 1.0)
    assert draw_target(ex, 0.2499) == ("y", 1.0)
    assert draw_target(ex, 0.25) == ("z", 3.0)
    assert draw_target(ex, 0.9999) == ("z", 3.0)
    unweighted = Example("gqa", "1", "q", targets=("y",), target_scores=(0.5,))
    assert draw_target(unweighted, 0.7) == ("y", 1.0)


def test_eval_batches_cover_the_split_in_order(t5_tokenizer):
    source = make_source("vqa", 5, 2, label={"red": 0.3, "blue": 1.0})
    batches = list(eval_batches(source, TextCollator(t5_tokenizer, "t5")))
    assert [uids(b) for b in batches] == [["vqa0", "vqa1"], ["vqa2", "vqa3"], ["vqa4"]]
    assert batches[-1].arrays["example_mask"].tolist() == [1.0, 0.0]
    assert batches[0].targets == ["blue", "blue"]  # the best-scoring answer
    assert batches[0].arrays["loss_weights"].tolist() == [1.0, 1.0]


# -- end to end from official files ----------------------------------------------------------------


def test_from_files_to_batch_arrays(tmp_path, write, bart_tokenizer):
    rng = np.random.default_rng(5)
    feature_dir = tmp_path / "COCO" / "clip_features" / "data_clip_RN101_att"
    grids = {}
    for img_id in ("img_a", "img_b"):
        grids[img_id] = rng.normal(size=(49, 2048)).astype(np.float16)
        write.h5(feature_dir, img_id, grids[img_id])
    write.json(
        tmp_path / "vqa" / "karpathy_train.json",
        [{"img_id": i, "sent": "what is red", "question_id": k, "label": {"blue": 1.0}}
         for k, i in enumerate(["img_a", "img_b", "img_a"])],
    )  # fmt: skip
    source = load_task_source("vqa", tmp_path, "train", train=True, batch_size=4)
    it = MultitaskIterator([source], TextCollator(bart_tokenizer, "bart"), seed=0)
    batch = next(it)
    arrays = batch.arrays
    assert arrays["vis_feats"].shape == (4, 36, 2048) and arrays["vis_feats"].dtype == np.float32
    assert arrays["vis_pos"].shape == (4, 36, 4) and not arrays["vis_pos"].any()
    assert arrays["obj_order_ids"].shape == (4, 36) and arrays["img_order_ids"].dtype == np.int32
    for row, ex in enumerate(batch.examples):
        if ex is None:
            assert not arrays["vis_feats"][row].any()
            continue
        grid = grids[ex.feature_keys[0]].reshape(7, 7, 2048)
        # Each 6×6 output cell is the max over the 2×2 input cells starting at the same index.
        expected = np.maximum.reduce(
            [grid[:6, :6], grid[1:, :6], grid[:6, 1:], grid[1:, 1:]]
        ).reshape(36, 2048)
        np.testing.assert_array_equal(arrays["vis_feats"][row], expected.astype(np.float32))
    assert sorted(arrays) == sorted([
        "input_ids", "attention_mask", "vis_feats", "vis_pos", "img_order_ids", "obj_order_ids",
        "decoder_input_ids", "labels", "loss_weights", "example_mask", "task_ids",
    ])  # fmt: skip


def test_video_task_from_files(tmp_path, write, t5_tokenizer):
    vid = "friends_s01e01_seg02_clip_00"
    write.jsonl(tmp_path / "video" / "ann" / "tv_subtitles.jsonl",
                [{"vid_name": vid, "sub": [{"text": "hi", "start": 0, "end": 1}]}])  # fmt: skip
    record = {"qid": 1, "q": "what", "a0": "a", "a1": "b", "a2": "c", "a3": "d", "a4": "a",
              "answer_idx": 1, "ts": "0.00-1.00", "vid_name": vid}  # fmt: skip
    write.jsonl(tmp_path / "video" / "ann" / "tvqa" / "tvqa_train.jsonl", [record])
    write.npz(tmp_path / "video" / "vis_features" / "tv" / "clip-vit", vid,
              np.ones((100, 512), np.float16))  # fmt: skip
    source = load_task_source("tvqa", tmp_path, "train", train=True, batch_size=2)
    batch = next(MultitaskIterator([source], TextCollator(t5_tokenizer, "t5"), seed=0))
    assert batch.arrays["vis_feats"].shape == (2, 64, 512)
    assert batch.arrays["vis_feats"][0].all() and not batch.arrays["vis_feats"][1].any()
    assert batch.targets == ["a1", ""]
    assert math.isclose(float(batch.arrays["loss_weights"][0]), 1.0)
