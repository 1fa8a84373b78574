"""Rendering scenes to small RGB images: 56×56 = a 7×7 grid of 8×8-pixel cells.

Each object is a flat-coloured silhouette centred in its grid cell (cube = square, sphere = disc,
cylinder = tall rectangle, cone = triangle; small or large), on a grey background with a little
seeded pixel noise so that no two renders are identical. The 7×7 cell grid is the same grid the
feature extractor reads, mirroring CLIP RN101's 7×7 layer-4 map at 224 px (SPEC.md §2).
"""

from __future__ import annotations

from functools import cache

import numpy as np

from vlpet_jax.data.synthetic.scenes import Lattice, Scene
from vlpet_jax.data.synthetic.vocab import BACKGROUND_RGB, COLOR_RGB, SHAPES, SIZES

GRID = 7
CELL_PX = 8
IMAGE_PX = GRID * CELL_PX
_RADIUS = {"small": 2.6, "large": 3.9}
PIXEL_NOISE = 0.05


@cache
def shape_mask(shape: str, size: str) -> np.ndarray:
    """(8, 8) bool silhouette of a shape, centred in a cell. Cached: it is a pure function."""
    if shape not in SHAPES or size not in SIZES:
        raise ValueError(f"unknown shape/size {shape!r}/{size!r}")
    centre = (CELL_PX - 1) / 2
    dy, dx = np.mgrid[0:CELL_PX, 0:CELL_PX].astype(np.float64) - centre
    r = _RADIUS[size]
    if shape == "cube":
        mask = (np.abs(dx) <= 0.8 * r) & (np.abs(dy) <= 0.8 * r)
    elif shape == "sphere":
        mask = dx**2 + dy**2 <= r**2
    elif shape == "cylinder":
        mask = (np.abs(dx) <= 0.5 * r) & (np.abs(dy) <= r)
    else:  # cone: apex up, base down
        mask = (np.abs(dy) <= r) & (np.abs(dx) <= 0.5 * (dy + r) + 0.25)
    mask.setflags(write=False)
    return mask


def render_scene(
    scene: Scene, lattice: Lattice, rng: np.random.Generator | None = None
) -> np.ndarray:
    """(56, 56, 3) float32 RGB in [0, 1]; ``rng`` adds pixel noise (None: a clean render)."""
    image = np.empty((IMAGE_PX, IMAGE_PX, 3), np.float32)
    image[...] = BACKGROUND_RGB
    for obj in scene:
        gr, gc = lattice.grid_cell(obj.row, obj.col)
        cell = image[gr * CELL_PX : (gr + 1) * CELL_PX, gc * CELL_PX : (gc + 1) * CELL_PX]
        cell[shape_mask(obj.shape, obj.size)] = COLOR_RGB[obj.color]
    if rng is not None:
        # Uniform in ±PIXEL_NOISE: 5× cheaper to draw than Gaussian noise, and just as good here.
        noise = rng.random(image.shape, dtype=np.float32)
        image += (2.0 * PIXEL_NOISE) * noise - PIXEL_NOISE
        np.clip(image, 0.0, 1.0, out=image)
    return image


def to_uint8(image: np.ndarray) -> np.ndarray:
    """For saving or viewing (pillow: ``Image.fromarray(to_uint8(img))``)."""
    return np.round(np.clip(image, 0.0, 1.0) * 255).astype(np.uint8)
