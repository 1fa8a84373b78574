"""The demo's text-only baseline guesser, on hand-made examples with hand-worked answers."""

from __future__ import annotations

from vlpet_jax.data.examples import Example
from vlpet_jax.demo.pipeline import majority_answer, question_type


def ex(text: str, *answers: str, scores: tuple[float, ...] | None = None) -> Example:
    return Example("vqa", text, text, answers, scores or (1.0,) * len(answers))


TRAIN = [
    ex("vqa: what color is the cube?", "red"),
    ex("vqa: what color is the cube?", "red"),
    ex("vqa: what color is the cube?", "blue"),
    ex("vqa: what color is the cone?", "green"),
    ex("vqa: what color is the sphere?", "green"),
    ex("vqa: is there a red cube?", "yes"),
    ex("vqa: is there a red cone?", "no", "yes", scores=(0.3, 1.0)),  # best target: "yes"
    ex("vqa: is there a blue cone?", "no"),
]


def test_exact_question_then_question_type_then_overall():
    guess = majority_answer(TRAIN)
    assert guess(ex("vqa: what color is the cube?")) == "red"  # 2 red vs 1 blue
    # Unseen string: questions starting "vqa: what color is" answer green 2, red 2, blue 1;
    # ties go to the first counted (red), as Counter.most_common keeps insertion order.
    assert guess(ex("vqa: what color is the cylinder?")) == "red"
    # "vqa: is there a": yes (red cube), yes (red cone's best target), no -> yes.
    assert guess(ex("vqa: is there a green sphere?")) == "yes"
    # A type train never saw: the overall majority of best targets (red 2, blue 1, green 2,
    # yes 2, no 1): the first of the tied twos, red.
    assert guess(ex("vqa: how many cubes are there?")) == "red"


def test_question_type_is_the_prompt_and_opening_words():
    assert question_type("vqa: what color is the cube?") == "vqa: what color is"
    assert question_type("gpa: what is to the left of the red cube?") == "gpa: what is to"
    assert question_type("nlvr: two") == "nlvr: two"
