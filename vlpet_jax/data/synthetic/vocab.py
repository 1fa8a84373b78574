"""The closed vocabulary of the synthetic benchmark: colours, shapes, sizes, relations, numbers.

Kept in one place because every part reads it: the renderer needs the RGB of each colour, the
feature extractor its palette, the grammars the words, the tokenizer helper the whole word list.
A few dozen words in total, so a tiny word-level tokenizer covers everything and a tiny model can
learn the language in minutes (DESIGN.md "Built-in benchmark").
"""

from __future__ import annotations

COLORS: tuple[str, ...] = ("red", "green", "blue", "yellow", "purple", "orange")
# Well separated in RGB so the nearest-palette colour of a noisy pixel is always its true colour.
COLOR_RGB: dict[str, tuple[float, float, float]] = {
    "red": (0.90, 0.10, 0.10),
    "green": (0.10, 0.75, 0.20),
    "blue": (0.15, 0.30, 0.95),
    "yellow": (0.95, 0.90, 0.10),
    "purple": (0.60, 0.20, 0.80),
    "orange": (1.00, 0.55, 0.00),
}
BACKGROUND_RGB: tuple[float, float, float] = (0.50, 0.50, 0.50)

SHAPES: tuple[str, ...] = ("cube", "sphere", "cylinder", "cone")
PLURAL: dict[str, str] = {s: f"{s}s" for s in SHAPES}
SINGULAR: dict[str, str] = {p: s for s, p in PLURAL.items()}
SIZES: tuple[str, ...] = ("small", "large")

# Spatial relations between two objects A and B, read as "A is <rel> B" (row 0 is the top).
RELATIONS: tuple[str, ...] = ("to the left of", "to the right of", "above", "below")

# Video events: directions of a move, and the words used to describe them.
DIRECTIONS: tuple[str, ...] = ("left", "right", "up", "down")
DIRECTION_STEP: dict[str, tuple[int, int]] = {
    "left": (0, -1),
    "right": (0, 1),
    "up": (-1, 0),
    "down": (1, 0),
}
DIRECTION_PHRASE: dict[str, str] = {
    "left": "to the left",
    "right": "to the right",
    "up": "up",
    "down": "down",
}

NUMBER_WORDS: tuple[str, ...] = ("zero", "one", "two", "three", "four", "five", "six", "seven")


def relation_holds(rel: str, a: tuple[int, int], b: tuple[int, int]) -> bool:
    """Whether the object at lattice cell ``a`` = (row, col) is ``rel`` the one at ``b``.

    The relation compares one axis only ("to the left of" = smaller column, any row), the way
    people describe a flat scene; an object can be both to the left of and above another.
    """
    if rel == "to the left of":
        return a[1] < b[1]
    if rel == "to the right of":
        return a[1] > b[1]
    if rel == "above":
        return a[0] < b[0]
    if rel == "below":
        return a[0] > b[0]
    raise ValueError(f"unknown relation {rel!r}; known: {', '.join(RELATIONS)}")


def shape_noun(shape: str, count: int) -> str:
    """``cube`` for one, ``cubes`` otherwise."""
    return shape if count == 1 else PLURAL[shape]
