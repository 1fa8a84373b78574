"""The grammars of the four image-text tasks: VQA, GQA-style relations, NLVR2-style statements,
and captions.

Every question names objects by attributes only ("the red cube"), applies only when the name picks
exactly one object, and is answered from the scene. Attributes are drawn uniformly and
independently (``scenes.py``) and the generator balances answers per question (``grammar.balance``),
so the text alone says which *kind* of answer is wanted but not which one.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from vlpet_jax.data.synthetic.grammar import Params, Template, with_articles
from vlpet_jax.data.synthetic.scenes import Scene, SceneObject, matching, unique
from vlpet_jax.data.synthetic.vocab import (
    COLORS,
    NUMBER_WORDS,
    PLURAL,
    RELATIONS,
    SHAPES,
    SINGULAR,
    SIZES,
    relation_holds,
)

YES_NO = ("yes", "no")
TRUE_FALSE = ("true", "false")
COUNTS = ("0", "1", "2", "3")
OBJECT_NAMES = tuple(f"{c} {s}" for c in COLORS for s in SHAPES)


def _yes(flag: bool) -> str:
    return "yes" if flag else "no"


def _true(flag: bool) -> str:
    return "true" if flag else "false"


def _count(n: int) -> str | None:
    return str(n) if str(n) in COUNTS else None


# -- VQA ------------------------------------------------------------------------------------------


def _vqa_color(scenes: Sequence[Scene], p: Mapping[str, str]) -> str | None:
    obj = unique(scenes[0], shape=p["shape"])
    return obj.color if obj else None


def _vqa_shape(scenes: Sequence[Scene], p: Mapping[str, str]) -> str | None:
    obj = unique(scenes[0], color=p["color"])
    return obj.shape if obj else None


def _vqa_size(scenes: Sequence[Scene], p: Mapping[str, str]) -> str | None:
    obj = unique(scenes[0], color=p["color"], shape=p["shape"])
    return obj.size if obj else None


VQA_TEMPLATES: tuple[Template, ...] = (
    Template(
        "vqa_color", "what color is the {shape}?", {"shape": SHAPES}, COLORS, _vqa_color,
        question_type="what color is the",
    ),
    Template(
        "vqa_shape", "what shape is the {color} object?", {"color": COLORS}, SHAPES, _vqa_shape,
        question_type="what shape is the",
    ),
    Template(
        "vqa_size", "what size is the {color} {shape}?", {"color": COLORS, "shape": SHAPES},
        SIZES, _vqa_size, question_type="what size is the",
    ),
    Template(
        "vqa_count_shape", "how many {shapes} are there?", {"shapes": tuple(PLURAL.values())},
        COUNTS, lambda s, p: _count(len(matching(s[0], shape=SINGULAR[p["shapes"]]))),
        answer_type="number", question_type="how many",
    ),
    Template(
        "vqa_count_color", "how many {color} objects are there?", {"color": COLORS}, COUNTS,
        lambda s, p: _count(len(matching(s[0], color=p["color"]))),
        answer_type="number", question_type="how many",
    ),
    Template(
        "vqa_exist", "is there a {color} {shape}?", {"color": COLORS, "shape": SHAPES}, YES_NO,
        lambda s, p: _yes(bool(matching(s[0], color=p["color"], shape=p["shape"]))),
        answer_type="yes/no", question_type="is there a",
    ),
)  # fmt: skip


# -- GQA ------------------------------------------------------------------------------------------


def _related(scene: Scene, p: Mapping[str, str]) -> SceneObject | None:
    """The one object that is ``rel`` the uniquely named referent, if exactly one is."""
    ref = unique(scene, color=p["color"], shape=p["shape"])
    if ref is None:
        return None
    hits = [o for o in scene if o is not ref and relation_holds(p["rel"], o.position, ref.position)]
    return hits[0] if len(hits) == 1 else None


def _referent_candidates(scenes: Sequence[Scene]) -> Iterable[Params]:
    """Only uniquely named objects can be referents: ask about those, in every relation."""
    for obj in scenes[0]:
        if unique(scenes[0], color=obj.color, shape=obj.shape) is obj:
            for rel in RELATIONS:
                yield {"rel": rel, "color": obj.color, "shape": obj.shape}


def _pair_candidates(scenes: Sequence[Scene]) -> Iterable[Params]:
    named = [o for o in scenes[0] if unique(scenes[0], color=o.color, shape=o.shape) is o]
    for a in named:
        for b in named:
            if a is not b:
                for rel in RELATIONS:
                    yield {
                        "color": a.color, "shape": a.shape, "rel": rel,
                        "color2": b.color, "shape2": b.shape,
                    }  # fmt: skip


def _gqa_pair(scenes: Sequence[Scene], p: Mapping[str, str]) -> str | None:
    a = unique(scenes[0], color=p["color"], shape=p["shape"])
    b = unique(scenes[0], color=p["color2"], shape=p["shape2"])
    if a is None or b is None or a is b:
        return None
    return _yes(relation_holds(p["rel"], a.position, b.position))


_REF = {"rel": RELATIONS, "color": COLORS, "shape": SHAPES}
GQA_TEMPLATES: tuple[Template, ...] = (
    Template(
        "gqa_rel_color", "what color is the object {rel} the {color} {shape}?", _REF, COLORS,
        lambda s, p: (o.color if (o := _related(s[0], p)) else None), _referent_candidates,
    ),
    Template(
        "gqa_rel_shape", "what shape is the object {rel} the {color} {shape}?", _REF, SHAPES,
        lambda s, p: (o.shape if (o := _related(s[0], p)) else None), _referent_candidates,
    ),
    Template(
        "gqa_rel_name", "what is {rel} the {color} {shape}?", _REF, OBJECT_NAMES,
        lambda s, p: (o.name() if (o := _related(s[0], p)) else None), _referent_candidates,
    ),
    Template(
        "gqa_rel_verify", "is the {color} {shape} {rel} the {color2} {shape2}?",
        {**_REF, "color2": COLORS, "shape2": SHAPES}, YES_NO, _gqa_pair, _pair_candidates,
        answer_type="yes/no",
    ),
)  # fmt: skip


# -- NLVR2 ----------------------------------------------------------------------------------------

SIDES = ("left", "right")
_NLVR_COUNT_WORDS = ("two", "three", "four")
_NLVR_OBJECT_WORDS = ("two", "three", "four", "five")


def _side(scenes: Sequence[Scene], side: str) -> Scene:
    return scenes[0] if side == "left" else scenes[1]


def _other(scenes: Sequence[Scene], side: str) -> Scene:
    return scenes[1] if side == "left" else scenes[0]


def _num(word: str) -> int:
    return NUMBER_WORDS.index(word)


NLVR_TEMPLATES: tuple[Template, ...] = (
    Template(
        "nlvr_side_has", "the {side} image contains a {color} {shape}",
        {"side": SIDES, "color": COLORS, "shape": SHAPES}, TRUE_FALSE,
        lambda s, p: _true(bool(matching(_side(s, p["side"]), p["color"], p["shape"]))),
    ),
    Template(
        "nlvr_both_shape", "both images contain a {shape}", {"shape": SHAPES}, TRUE_FALSE,
        lambda s, p: _true(all(matching(x, shape=p["shape"]) for x in s)),
    ),
    Template(
        "nlvr_both_color", "both images contain a {color} object", {"color": COLORS}, TRUE_FALSE,
        lambda s, p: _true(all(matching(x, color=p["color"]) for x in s)),
    ),
    Template(
        "nlvr_total", "there are exactly {num} {shapes} in the two images",
        {"num": _NLVR_COUNT_WORDS, "shapes": tuple(PLURAL.values())}, TRUE_FALSE,
        lambda s, p: _true(
            sum(len(matching(x, shape=SINGULAR[p["shapes"]])) for x in s) == _num(p["num"])
        ),
    ),
    Template(
        "nlvr_more", "the {side} image has more {shapes} than the other image",
        {"side": SIDES, "shapes": tuple(PLURAL.values())}, TRUE_FALSE,
        lambda s, p: _true(
            len(matching(_side(s, p["side"]), shape=SINGULAR[p["shapes"]]))
            > len(matching(_other(s, p["side"]), shape=SINGULAR[p["shapes"]]))
        ),
    ),
    Template(
        "nlvr_side_count", "the {side} image contains exactly {num} objects",
        {"side": SIDES, "num": _NLVR_OBJECT_WORDS}, TRUE_FALSE,
        lambda s, p: _true(len(_side(s, p["side"])) == _num(p["num"])),
    ),
)  # fmt: skip


def random_params(template: Template, rng: np.random.Generator) -> Params:
    """Uniform slot values (NLVR2 statements are chosen before the images that make them true)."""
    return {k: v[rng.integers(len(v))] for k, v in template.slots.items()}


# -- captions -------------------------------------------------------------------------------------


def _true_relations(a: SceneObject, b: SceneObject) -> list[str]:
    return [r for r in RELATIONS if relation_holds(r, a.position, b.position)]


def count_phrase(n: int) -> str:
    """``one object``, ``three objects``."""
    return f"{NUMBER_WORDS[n]} object{'' if n == 1 else 's'}"


def count_sentence(n: int) -> str:
    """``there is one object``, ``there are three objects``."""
    return f"there {'is' if n == 1 else 'are'} {count_phrase(n)}"


def caption_candidates(scene: Scene) -> list[str]:
    """Every caption the grammar can say about ``scene`` (true of it, by construction)."""
    n = len(scene)
    counted = n < len(NUMBER_WORDS)
    out = [count_sentence(n)] if counted else []
    for a in scene:
        if counted:
            out.append(f"{count_phrase(n)} including a {a.name(with_size=True)}")
        for b in scene:
            if a is b:
                continue
            out.append(f"a {a.name()} and a {b.name()}")
            for rel in _true_relations(a, b):
                out.append(f"a {a.name(with_size=True)} {rel} a {b.name(with_size=True)}")
                out.append(f"a scene with a {a.name()} {rel} a {b.name()}")
    return out


def captions(scene: Scene, rng: np.random.Generator, count: int = 5) -> list[str]:
    """``count`` distinct captions (fewer only if the scene allows fewer), like COCO's five."""
    pool = sorted({with_articles(c) for c in caption_candidates(scene)})
    chosen = rng.choice(len(pool), size=min(count, len(pool)), replace=False)
    return [pool[i] for i in chosen]
