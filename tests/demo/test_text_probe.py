"""The text-reasoning probe: grounded pairs carry the scenes, and the scoring is what it says."""

from __future__ import annotations

import re

import jax.numpy as jnp
import numpy as np
import pytest

from vlpet_jax.checkpoints.tokenizer import load_tokenizer
from vlpet_jax.data import synthetic
from vlpet_jax.data.batching import TextCollator
from vlpet_jax.demo import pipeline, text_probe
from vlpet_jax.demo.text_probe import GroundedPair, exact_match, load_splits, scores_by_type

SIZES = dict(coco_images=(12, 0, 10, 10), gqa_images=(16, 10, 10), nlvr_images=(10, 8, 8))


@pytest.fixture(scope="module")
def root(tmp_path_factory):
    path = tmp_path_factory.mktemp("probe") / "synthetic"
    synthetic.ensure_benchmark(path, seed=1, kind="image", nlvr_groups=(6, 3, 3), **SIZES)
    return str(path)


def test_every_context_names_the_objects_the_answer_is_about(root):
    train, val, guesses = load_splits(root)
    assert train and val and {p.task for p in val} == {"vqa", "gqa", "nlvr"}
    scenes = text_probe.scenes_by_image(root)
    for pair in val:
        images = pair.context.split(" ; ")
        assert len(images) == (2 if pair.task == "nlvr" else 1)
        assert pair.text() == f"{pair.question} context: {pair.context}"
        assert pair.question in guesses
        # "what color is the cube?" -> "red": the one cube of the scene is written "<size> red cube".
        asked = re.fullmatch(r"vqa: what color is the (\w+)\?", pair.question)
        if asked:
            assert re.search(rf"\b(small|large) {pair.answer} {asked.group(1)}\b", pair.context)
    # Every object of a scene is in its description, with its size, colour and shape.
    scene = next(iter(scenes.values()))
    words = text_probe.describe_scene(scene).split(" , ")
    assert words == [f"{o.size} {o.color} {o.shape}" for o in scene]


def test_text_only_column_matches_the_demo_baseline_metrics(root):
    """The probe's text-only exact match is the demo's baseline, computed by the metric
    functions (GQA accuracy, NLVR2 accuracy) over the same guesses."""
    _, val, guesses = load_splits(root)
    guessed = np.array([guesses[p.question] == p.answer for p in val])
    scores = scores_by_type(val, np.zeros(len(val), bool), guessed)
    baseline = pipeline.text_only_baseline(root)
    assert scores[("gqa", "all")][2] == pytest.approx(baseline["gqa_accuracy"])
    assert scores[("nlvr", "all")][2] == pytest.approx(baseline["nlvr_accuracy"])
    assert scores[("vqa", "all")][0] == sum(p.task == "vqa" for p in val)


def test_scores_by_type_hand_worked():
    pair = lambda task, kind: GroundedPair(task, kind, "q", "c", "a")  # noqa: E731
    pairs = [pair("vqa", "k1"), pair("vqa", "k1"), pair("vqa", "k2"), pair("gqa", "k1")]
    grounded = np.array([True, False, True, False])
    guessed = np.array([False, False, True, True])
    scores = scores_by_type(pairs, grounded, guessed)
    assert scores == {
        ("vqa", "k1"): (2, 50.0, 0.0),
        ("vqa", "k2"): (1, 100.0, 100.0),
        ("vqa", "all"): (3, pytest.approx(200 / 3), pytest.approx(100 / 3)),
        ("gqa", "k1"): (1, 0.0, 100.0),
        ("gqa", "all"): (1, 0.0, 100.0),
    }


class _FixedLogits:
    """A stand-in model whose logits are its 'params' (exact_match only reads the argmax)."""

    def apply(self, variables, input_ids, attention_mask, decoder_input_ids):
        return variables["params"]


def test_exact_match_needs_every_answer_token_and_ignores_padding(root):
    tokenizer = load_tokenizer(synthetic.tokenizer_path(root, "t5"))
    collator = TextCollator(tokenizer, "t5")
    inputs = ["vqa: what is above the red cube?"] * 3
    answers = ["blue sphere", "blue sphere", "red"]  # two answer tokens + EOS, one + EOS
    labels = collator.text_arrays(inputs, answers, text_probe.MAX_INPUT_LEN, 16)["labels"]
    logits = np.eye(len(tokenizer), dtype=np.float32)[np.maximum(labels, 0)]
    logits[1, 1] = np.roll(logits[1, 1], 1)  # the second answer's second token is wrong
    # Padding positions (label -100) predict token 0 here: they must not count.
    hits = exact_match(_FixedLogits(), jnp.asarray(logits), collator, inputs, answers)
    assert hits.tolist() == [True, False, True]


def test_probe_runs_end_to_end_and_reports_every_question_type(root):
    result = text_probe.probe("t5_tiny", root, steps=2)
    _, val, _ = load_splits(root)
    assert len(result.losses) == 1 and np.isfinite(result.losses[0])
    kinds = {(p.task, p.kind) for p in val} | {(t, "all") for t in ("vqa", "gqa", "nlvr")}
    assert set(result.by_type) == kinds
    assert all(0.0 <= s <= 100.0 for _, s, g in result.by_type.values() for s in (s, g))
    assert "| vqa | all |" in result.table()
    with pytest.raises(ValueError, match="steps must be >= 2"):
        text_probe.probe("t5_tiny", root, steps=1)
