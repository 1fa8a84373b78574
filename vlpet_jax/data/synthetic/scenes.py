"""Scenes of coloured shapes on a coarse lattice, sampled deterministically from a generator.

A scene is a tuple of objects, each with a colour, a shape, a size and a lattice cell. Objects sit
on a lattice that is coarser than the 7×7 feature grid so that no two objects share a feature cell
or a 2×2 pooling window: images use a 4×4 lattice on grid cells {0, 2, 4, 6}, video frames a 3×3
lattice on grid cells {0, 3, 6}. This keeps every object's identity readable from the visual
tokens the model actually sees (SPEC.md §2 pools 7×7 to 6×6 with 2×2 windows).

All randomness comes from an explicit ``numpy.random.Generator`` (STYLE.md rule 3).
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from vlpet_jax.data.synthetic.vocab import COLORS, SHAPES, SIZES


@dataclass(frozen=True)
class Lattice:
    """``side × side`` object positions; position (r, c) is feature-grid cell (r·stride, c·stride)."""

    side: int
    stride: int

    def grid_cell(self, row: int, col: int) -> tuple[int, int]:
        """The 7×7 feature-grid cell (and so the rendered 8×8 pixel block) of a lattice cell."""
        return row * self.stride, col * self.stride

    @property
    def num_positions(self) -> int:
        return self.side * self.side


IMAGE_LATTICE = Lattice(side=4, stride=2)
VIDEO_LATTICE = Lattice(side=3, stride=3)


@dataclass(frozen=True)
class SceneObject:
    """One shape; ``row``/``col`` are lattice coordinates (row 0 at the top)."""

    color: str
    shape: str
    size: str
    row: int
    col: int

    @property
    def position(self) -> tuple[int, int]:
        return self.row, self.col

    def name(self, with_size: bool = False) -> str:
        """``red cube`` or, with the size, ``large red cube``."""
        words = [self.size] if with_size else []
        return " ".join([*words, self.color, self.shape])

    def moved(self, row: int, col: int) -> SceneObject:
        return replace(self, row=row, col=col)

    def recoloured(self, color: str) -> SceneObject:
        return replace(self, color=color)


Scene = tuple[SceneObject, ...]


def sample_object(rng: np.random.Generator, row: int, col: int) -> SceneObject:
    """Attributes drawn independently and uniformly, so no attribute predicts another."""
    return SceneObject(
        color=COLORS[rng.integers(len(COLORS))],
        shape=SHAPES[rng.integers(len(SHAPES))],
        size=SIZES[rng.integers(len(SIZES))],
        row=row,
        col=col,
    )


def sample_scene(rng: np.random.Generator, lattice: Lattice, num_objects: tuple[int, int]) -> Scene:
    """A scene with ``num_objects[0]..num_objects[1]`` (inclusive) objects in distinct cells."""
    low, high = num_objects
    if not 1 <= low <= high <= lattice.num_positions:
        raise ValueError(
            f"num_objects must satisfy 1 <= min <= max <= {lattice.num_positions}, got {num_objects}"
        )
    count = int(rng.integers(low, high + 1))
    cells = rng.choice(lattice.num_positions, size=count, replace=False)
    objects = [sample_object(rng, int(c) // lattice.side, int(c) % lattice.side) for c in cells]
    # Reading order (top-left first) so equal scenes are equal tuples.
    return tuple(sorted(objects, key=lambda o: o.position))


def matching(
    scene: Scene, color: str | None = None, shape: str | None = None, size: str | None = None
) -> list[SceneObject]:
    """Objects whose given attributes all match (None = any)."""
    return [
        o
        for o in scene
        if (color is None or o.color == color)
        and (shape is None or o.shape == shape)
        and (size is None or o.size == size)
    ]


def unique(
    scene: Scene, color: str | None = None, shape: str | None = None, size: str | None = None
) -> SceneObject | None:
    """The single matching object, or None when there are zero or several (the phrase
    "the red cube" only refers when exactly one red cube exists)."""
    found = matching(scene, color, shape, size)
    return found[0] if len(found) == 1 else None


def free_positions(scene: Scene, lattice: Lattice) -> list[tuple[int, int]]:
    taken = {o.position for o in scene}
    return [(r, c) for r in range(lattice.side) for c in range(lattice.side) if (r, c) not in taken]
