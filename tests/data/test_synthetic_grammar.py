"""Synthetic benchmark, language side: templates that read back what they write, balancing,
captions."""

from __future__ import annotations

import re
from collections import Counter

import numpy as np
import pytest

from vlpet_jax.data.synthetic.grammar import ask_all, balance, solve, with_articles
from vlpet_jax.data.synthetic.image_questions import (
    GQA_TEMPLATES,
    NLVR_TEMPLATES,
    VQA_TEMPLATES,
    caption_candidates,
    captions,
    random_params,
)
from vlpet_jax.data.synthetic.scenes import IMAGE_LATTICE, SceneObject, matching, sample_scene
from vlpet_jax.data.synthetic.vocab import NUMBER_WORDS, relation_holds


def _scenes(seed: int, count: int, objects=(2, 6)):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, IMAGE_LATTICE, objects) for _ in range(count)]


@pytest.mark.parametrize("templates", [VQA_TEMPLATES, GQA_TEMPLATES], ids=["vqa", "gqa"])
def test_every_question_parses_back_to_one_template_and_its_answer(templates):
    asked = 0
    for k, scene in enumerate(_scenes(0, 40)):
        for q in ask_all(templates, (scene,), k):
            asked += 1
            matches = [t for t in templates if t.parse(q.text) is not None]
            assert matches == [q.template], q.text  # unambiguous grammar
            assert q.template.parse(q.text) == q.params
            assert solve(templates, q.text, (scene,)) == q.answer
            assert q.answer in q.template.answers
    assert asked > 500


def test_nlvr_statements_parse_back_and_answer_true_or_false():
    rng = np.random.default_rng(1)
    scenes = _scenes(1, 20)
    answers = Counter()
    for _ in range(300):
        template = NLVR_TEMPLATES[rng.integers(len(NLVR_TEMPLATES))]
        params = random_params(template, rng)
        text = template.render(params)
        pair = (scenes[rng.integers(20)], scenes[rng.integers(20)])
        assert [t for t in NLVR_TEMPLATES if t.parse(text)] == [template]
        answer = solve(NLVR_TEMPLATES, text, pair)
        assert answer in ("true", "false")
        answers[answer] += 1
    assert min(answers.values()) > 50


def test_answers_follow_the_scene():
    red_cube = SceneObject("red", "cube", "large", 1, 1)
    blue_sphere = SceneObject("blue", "sphere", "small", 1, 3)
    orange_cone = SceneObject("orange", "cone", "small", 0, 1)
    scene = (orange_cone, red_cube, blue_sphere)
    assert solve(VQA_TEMPLATES, "what color is the cube?", (scene,)) == "red"
    assert solve(VQA_TEMPLATES, "what size is the red cube?", (scene,)) == "large"
    assert solve(VQA_TEMPLATES, "how many spheres are there?", (scene,)) == "1"
    assert solve(VQA_TEMPLATES, "is there an orange cone?", (scene,)) == "yes"
    assert solve(VQA_TEMPLATES, "is there a green cone?", (scene,)) == "no"
    q = "what is to the right of the red cube?"
    assert solve(GQA_TEMPLATES, q, (scene,)) == "blue sphere"
    assert solve(GQA_TEMPLATES, "what color is the object above the red cube?", (scene,)) == (
        "orange"
    )
    # Two objects to the left of the blue sphere: the question does not apply.
    assert solve(GQA_TEMPLATES, "what is to the left of the blue sphere?", (scene,)) is None
    assert solve(GQA_TEMPLATES, "is the blue sphere below the orange cone?", (scene,)) == "yes"
    other = (SceneObject("red", "cube", "small", 2, 2),)
    assert solve(NLVR_TEMPLATES, "both images contain a cube", (scene, other)) == "true"
    assert solve(
        NLVR_TEMPLATES, "the right image contains exactly two objects", (scene, other)
    ) == ("false")
    assert solve(NLVR_TEMPLATES, "the left image has more cubes than the other image", (
        scene, other)) == "false"  # fmt: skip


def test_articles():
    assert with_articles("is there a orange cube?") == "is there an orange cube?"
    assert with_articles("a red cube and a orange cone") == "a red cube and an orange cone"
    template = VQA_TEMPLATES[-1]  # "is there a {color} {shape}?"
    assert template.render({"color": "orange", "shape": "cube"}) == "is there an orange cube?"
    assert template.parse("is there an orange cube?") == {"color": "orange", "shape": "cube"}


def test_balance_equalises_answers_within_each_group():
    rng = np.random.default_rng(0)
    items = [("q1", "a")] * 10 + [("q1", "b")] * 3 + [("q2", "a")] * 5 + [("q3", "x")] * 4
    items += [("q2", "c")] * 7
    kept = balance(items, lambda i: i[0], lambda i: i[1], rng, cap=4)
    counts = Counter(kept)
    assert counts == {("q1", "a"): 3, ("q1", "b"): 3, ("q2", "a"): 4, ("q2", "c"): 4}
    # q3 has a single answer: guessable from the text alone, so it is dropped.
    again = balance(items, lambda i: i[0], lambda i: i[1], np.random.default_rng(0), cap=4)
    assert again == kept


_REL_CAPTION = re.compile(
    r"an? (\w+) (\w+) (\w+) (to the left of|to the right of|above|below) an? (\w+) (\w+) (\w+)"
)


def test_captions_are_true_of_their_scene():
    rng = np.random.default_rng(0)
    checked = 0
    for scene in _scenes(2, 30):
        texts = captions(scene, rng)
        assert len(texts) == len(set(texts)) == 5
        assert set(texts) <= {with_articles(c) for c in caption_candidates(scene)}
        for text in texts:
            if m := _REL_CAPTION.fullmatch(text):
                size, color, shape, rel, size2, color2, shape2 = m.groups()
                firsts = matching(scene, color, shape, size)
                seconds = matching(scene, color2, shape2, size2)
                assert any(
                    relation_holds(rel, a.position, b.position)
                    for a in firsts
                    for b in seconds
                    if a is not b
                ), text
                checked += 1
            if text.startswith("there are"):
                assert text == f"there are {NUMBER_WORDS[len(scene)]} objects"
    # One object is counted in the singular.
    single = (SceneObject("red", "cube", "small", 0, 0),)
    assert set(caption_candidates(single)) == {
        "there is one object",
        "one object including a small red cube",
    }
    assert checked > 10
