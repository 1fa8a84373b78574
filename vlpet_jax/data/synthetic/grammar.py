"""Question templates that both write and read their text, and answer-balanced sampling.

A :class:`Template` renders a question from slot values ("what color is the {shape}?" with
shape=cube), parses such a question back into its slot values, and answers it on one or more
scenes. Generation and checking therefore share one definition: the generator writes
``render(params)`` with ``answer(scenes, params)`` as its label, and a test can recover the label
from nothing but the question text and the scene (``solve``), proving that the answer is a function
of what is in the image.

:func:`balance` subsamples candidate questions so that, for each group (a question string, or a
template), every answer occurs equally often: a model that sees only the text can do no better than
chance within the group, so it must read the visual tokens (DESIGN.md "Built-in benchmark").
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Callable, Hashable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from vlpet_jax.data.synthetic.scenes import Scene

Params = dict[str, str]
AnswerFn = Callable[[Sequence[Scene], Mapping[str, str]], "str | None"]
CandidateFn = Callable[[Sequence[Scene]], Iterable[Params]]
_SLOT = re.compile(r"\{(\w+)\}")
_A_BEFORE_VOWEL = re.compile(r"\ba (?=[aeiou])")
_AN_BEFORE_VOWEL = re.compile(r"\ban (?=[aeiou])")


def with_articles(text: str) -> str:
    """English articles: "a orange cube" -> "an orange cube"."""
    return _A_BEFORE_VOWEL.sub("an ", text)


def without_articles(text: str) -> str:
    """The inverse of :func:`with_articles`, so templates can be written with "a" only."""
    return _AN_BEFORE_VOWEL.sub("a ", text)


_C = TypeVar("_C")


@dataclass(frozen=True)
class Template:
    """One question form.

    Attributes:
      name: stable id (``vqa_color``), recorded nowhere in the official files but used for balancing.
      pattern: text with ``{slot}`` placeholders.
      slots: allowed values of every slot.
      answers: every answer the template can give (the label-noise vocabulary).
      answer_fn: ``answer_fn(scenes, params)`` -> the answer, or None when the question does not
        apply (its referent is missing or ambiguous).
      candidates_fn: proposes slot values worth asking on given scenes; default: every combination.
      answer_type / question_type: VQA's ``answer_type`` and ``question_type`` fields.
    """

    name: str
    pattern: str
    slots: Mapping[str, Sequence[str]]
    answers: Sequence[str]
    answer_fn: AnswerFn
    candidates_fn: CandidateFn | None = None
    answer_type: str = "other"
    question_type: str = ""
    _regex: re.Pattern[str] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        names = _SLOT.findall(self.pattern)
        if sorted(names) != sorted(self.slots):
            raise ValueError(f"template {self.name}: slots {sorted(self.slots)} != {names}")
        parts, last = [], 0
        for m in _SLOT.finditer(self.pattern):
            parts.append(re.escape(self.pattern[last : m.start()]))
            values = sorted(self.slots[m.group(1)], key=len, reverse=True)
            parts.append(f"(?P<{m.group(1)}>{'|'.join(map(re.escape, values))})")
            last = m.end()
        parts.append(re.escape(self.pattern[last:]))
        object.__setattr__(self, "_regex", re.compile("".join(parts)))

    def render(self, params: Mapping[str, str]) -> str:
        return with_articles(self.pattern.format(**params))

    def parse(self, text: str) -> Params | None:
        m = self._regex.fullmatch(without_articles(text))
        return m.groupdict() if m else None

    def answer(self, scenes: Sequence[Scene], params: Mapping[str, str]) -> str | None:
        return self.answer_fn(scenes, params)

    def candidates(self, scenes: Sequence[Scene]) -> Iterable[Params]:
        if self.candidates_fn is not None:
            return self.candidates_fn(scenes)
        keys = list(self.slots)
        return (dict(zip(keys, v)) for v in itertools.product(*(self.slots[k] for k in keys)))


@dataclass(frozen=True)
class Question:
    """A rendered question with its answer, ready to be written in some official format."""

    template: Template
    params: Params
    text: str
    answer: str
    source: Any  # what it was asked about (an image index, a pair of indices, ...)


def ask_all(templates: Sequence[Template], scenes: Sequence[Scene], source: Any) -> list[Question]:
    """Every applicable question of ``templates`` on ``scenes``, with its answer."""
    out = []
    for template in templates:
        for params in template.candidates(scenes):
            answer = template.answer(scenes, params)
            if answer is not None and answer in template.answers:
                out.append(Question(template, params, template.render(params), answer, source))
    return out


def solve(templates: Sequence[Template], text: str, scenes: Sequence[Scene]) -> str | None:
    """Answer ``text`` on ``scenes`` using the first template whose pattern matches it."""
    for template in templates:
        params = template.parse(text)
        if params is not None:
            return template.answer(scenes, params)
    return None


def balance(
    items: Sequence[_C],
    group: Callable[[_C], Hashable],
    answer: Callable[[_C], str],
    rng: np.random.Generator,
    cap: int,
    min_answers: int = 2,
) -> list[_C]:
    """Subsample ``items`` so that within each group every answer present occurs equally often.

    Per group, each answer keeps ``min(cap, rarest answer's count)`` items chosen at random; groups
    with fewer than ``min_answers`` distinct answers are dropped (their answer is guessable from
    the text). Order of the survivors is their input order, so the result is deterministic.
    """
    by_group: dict[Hashable, dict[str, list[int]]] = {}
    for index, item in enumerate(items):
        by_group.setdefault(group(item), {}).setdefault(answer(item), []).append(index)
    keep: list[int] = []
    for answers in by_group.values():
        if len(answers) < min_answers:
            continue
        per_answer = min(cap, min(len(v) for v in answers.values()))
        for key in sorted(answers):
            chosen = rng.choice(len(answers[key]), size=per_answer, replace=False)
            keep.extend(answers[key][i] for i in chosen)
    return [items[i] for i in sorted(keep)]
