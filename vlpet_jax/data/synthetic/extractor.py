"""The fixed feature extractor: rendered pixels -> tensors in the official CLIP layouts (SPEC.md §2).

Images -> (49, image_dim) float16, one row per cell of the 7×7 grid in row-major order, like the
CLIP RN101 layer-4 map. Video frames -> (T, video_dim) float32, one row per frame, like the CLIP
ViT-B/32 frame embeddings of the VALUE release.

How a row is made: a small descriptor of what is visible (the share of pixels of each object
colour, the silhouette of the foreground, the mean colour's offset from the background), a fixed
random projection, and a ReLU. An empty cell's descriptor is zero up to pixel noise, so its features
are near zero and an object's token stands out, as objects do on a CLIP map. An earlier descriptor
had a constant part (a bias entry, the background's share, the absolute mean colour) that every
cell shared: after a random projection and LayerNorm an object's token had cosine 0.91-0.97 with an
empty one, and tiny T5 VL-PET-large trained only on 600 "what color is the <shape>?" questions
stayed at chance (23%) for 500 steps; with this descriptor it reached 50% by step 375.
The projection is drawn once from ``EXTRACTOR_SEED`` and never changes, so the features of a scene
are a pure function of its pixels. Its rows come in ± pairs, ``relu([V·x; −V·x])``, so each unit is
a rectified random feature (sparse and non-negative, like a CLIP map) while ``V·x`` = first half −
second half: the descriptor, and with it the colour, shape and size of the object in each cell, is
*linearly* recoverable. That is what makes the benchmark learnable by a small model that must read
the visual tokens, and lets the tests check that the tokens carry every answer.

Frames use a coarser descriptor (row/column silhouette profiles at the nine positions of the 3×3
video lattice) so that 512 dimensions still hold it exactly.
"""

from __future__ import annotations

import numpy as np

from vlpet_jax.data.synthetic.render import CELL_PX, GRID, IMAGE_PX
from vlpet_jax.data.synthetic.scenes import VIDEO_LATTICE
from vlpet_jax.data.synthetic.vocab import BACKGROUND_RGB, COLOR_RGB, COLORS

EXTRACTOR_SEED = 20230817  # fixed forever: changing it changes every feature file
IMAGE_FEAT_DIM = 2048  # CLIP RN101 grid
VIDEO_FEAT_DIM = 512  # CLIP ViT-B/32 frames

PALETTE = np.array([*(COLOR_RGB[c] for c in COLORS), BACKGROUND_RGB], np.float32)  # (7, 3)
BACKGROUND_INDEX = len(COLORS)
NUM_BINS = len(PALETTE)
CELL_DESC_DIM = NUM_BINS - 1 + CELL_PX * CELL_PX + 3  # colour shares, silhouette, mean rgb
FRAME_POS_DESC_DIM = NUM_BINS + 2 * CELL_PX  # hist, row profile, column profile
FRAME_DESC_DIM = VIDEO_LATTICE.num_positions * FRAME_POS_DESC_DIM + 3 + 1
_IMAGE_STREAM, _VIDEO_STREAM = 0, 1
_SPARSE_ROW = 8  # an empty cell has 3 non-zero descriptor entries (the noisy mean colour)


def _projection(out_dim: int, in_dim: int, stream: int) -> np.ndarray:
    """V of ``relu([V·x; −V·x])``, transposed: (in_dim, out_dim / 2) float64, fixed forever."""
    if out_dim < 2 or out_dim % 2:
        raise ValueError(f"feature dimension must be even and >= 2, got {out_dim}")
    rng = np.random.default_rng([EXTRACTOR_SEED, stream, out_dim])
    proj = rng.standard_normal((out_dim // 2, in_dim)) / np.sqrt(in_dim)
    return np.ascontiguousarray(proj.T)


def _project(desc: np.ndarray, proj_t: np.ndarray) -> np.ndarray:
    """``desc @ proj_t`` in float64, skipping the descriptor entries that are zero.

    Deliberately not a BLAS matmul: most image cells are empty background (5 non-zero entries of
    75), and a multi-threaded BLAS on a busy machine costs far more than the arithmetic. Rows are
    split into sparse and dense ones, each group summed over the columns it uses; leaving out exact
    zeros does not change a sum, so a row's value does not depend on the other rows of the batch,
    and float64 keeps the float16/float32 outputs identical across CPUs.
    """
    desc = desc.reshape(-1, desc.shape[-1]).astype(np.float64)
    out = np.empty((desc.shape[0], proj_t.shape[1]))
    nonzero = desc != 0
    sparse = nonzero.sum(1) <= _SPARSE_ROW
    for rows in (np.flatnonzero(sparse), np.flatnonzero(~sparse)):
        if rows.size:
            columns = np.flatnonzero(nonzero[rows].any(0))
            out[rows] = np.einsum("ij,jk->ik", desc[np.ix_(rows, columns)], proj_t[columns])
    return out


def _rectify_pairs(proj_t: np.ndarray, desc: np.ndarray, dtype: type) -> np.ndarray:
    """relu([V·x; −V·x]) for descriptors (..., in) -> (..., 2·out) in ``dtype``."""
    z = _project(desc, proj_t)
    half = z.shape[-1]
    out = np.empty((z.shape[0], 2 * half), dtype)
    np.maximum(z, 0.0, out=out[:, :half], casting="same_kind")
    np.negative(z, out=z)
    np.maximum(z, 0.0, out=out[:, half:], casting="same_kind")
    return out.reshape(*desc.shape[:-1], 2 * half)


def palette_index(images: np.ndarray) -> np.ndarray:
    """(..., H, W, 3) -> (..., H, W) index of the nearest palette colour (background last)."""
    # argmin |p - c|² = argmax (2 p·c - |c|²), computed channel by channel on whole arrays.
    r, g, b = images[..., 0], images[..., 1], images[..., 2]
    scores = [2.0 * (c[0] * r + c[1] * g + c[2] * b) - float(c @ c) for c in PALETTE]
    return np.argmax(np.stack(scores, axis=-1), axis=-1)


def _cells(x: np.ndarray) -> np.ndarray:
    """(..., 56, 56, C) -> (..., 7, 7, 8, 8, C): the grid cells."""
    lead = x.shape[:-3]
    x = x.reshape(*lead, GRID, CELL_PX, GRID, CELL_PX, x.shape[-1])
    return np.moveaxis(x, -4, -3)


def cell_descriptors(images: np.ndarray) -> np.ndarray:
    """(..., 56, 56, 3) images -> (..., 49, CELL_DESC_DIM), row-major over the 7×7 grid."""
    _check_image(images.shape[-3:])
    lead = images.shape[:-3]
    onehot = np.eye(NUM_BINS, dtype=np.float32)[palette_index(images)]  # (..., 56, 56, 7)
    cells = _cells(onehot).reshape(*lead, GRID * GRID, CELL_PX * CELL_PX, NUM_BINS)
    shares = cells[..., :BACKGROUND_INDEX].mean(-2)
    silhouette = 1.0 - cells[..., BACKGROUND_INDEX]  # (..., 49, 64): 1 on the object
    mean_rgb = _cells(images).reshape(*lead, GRID * GRID, CELL_PX * CELL_PX, 3).mean(-2)
    return np.concatenate([shares, silhouette / CELL_PX, mean_rgb - BACKGROUND_RGB], axis=-1)


def frame_descriptors(frames: np.ndarray) -> np.ndarray:
    """(T, 56, 56, 3) frames -> (T, FRAME_DESC_DIM): per video-lattice position hist + profiles."""
    _check_image(frames.shape[-3:])
    # Only the cells of the video lattice can hold an object: read just those.
    cells = np.stack(
        [
            frames[:, r * CELL_PX : (r + 1) * CELL_PX, c * CELL_PX : (c + 1) * CELL_PX]
            for r, c in (
                VIDEO_LATTICE.grid_cell(i, j)
                for i in range(VIDEO_LATTICE.side)
                for j in range(VIDEO_LATTICE.side)
            )
        ],
        axis=1,
    )  # (T, 9, 8, 8, 3)
    onehot = np.eye(NUM_BINS, dtype=np.float32)[palette_index(cells)]  # (T, 9, 8, 8, 7)
    silhouette = 1.0 - onehot[..., BACKGROUND_INDEX]  # (T, 9, 8, 8)
    per_position = np.concatenate(
        [onehot.mean((2, 3)), silhouette.mean(3), silhouette.mean(2)], axis=-1
    )  # (T, 9, 7 + 8 + 8): hist, row profile, column profile
    count = frames.shape[0]
    mean_rgb = frames.reshape(count, -1, 3).mean(1)
    return np.concatenate(
        [per_position.reshape(count, -1), mean_rgb, np.ones((count, 1), np.float32)], axis=1
    )


def _check_image(shape: tuple[int, ...]) -> None:
    if tuple(shape) != (IMAGE_PX, IMAGE_PX, 3):
        raise ValueError(f"expected ({IMAGE_PX}, {IMAGE_PX}, 3) RGB images, found {shape}")


class FeatureExtractor:
    """Images -> (49, image_dim) float16 grid features; frames -> (T, video_dim) float32.

    The dimensions default to the official ones (2048, 512); smaller even values give a tiny
    variant with the same layout for fast tests.
    """

    def __init__(self, image_dim: int = IMAGE_FEAT_DIM, video_dim: int = VIDEO_FEAT_DIM) -> None:
        self.image_dim = image_dim
        self.video_dim = video_dim
        self._image_proj = _projection(image_dim, CELL_DESC_DIM, _IMAGE_STREAM)
        self._video_proj = _projection(video_dim, FRAME_DESC_DIM, _VIDEO_STREAM)

    def image_features(self, images: np.ndarray) -> np.ndarray:
        """(..., 56, 56, 3) -> (..., 49, image_dim) float16, the CLIP RN101 grid layout.

        Pass a batch of images where you can: one large matmul is much cheaper than many small.
        """
        return _rectify_pairs(self._image_proj, cell_descriptors(images), np.float16)

    def frame_features(self, frames: np.ndarray) -> np.ndarray:
        """(T, 56, 56, 3) -> (T, video_dim) float32, the CLIP ViT-B/32 frame layout."""
        if frames.ndim != 4:
            raise ValueError(f"expected (T, H, W, 3) frames, found shape {frames.shape}")
        return _rectify_pairs(self._video_proj, frame_descriptors(frames), np.float32)

    def recover_image_descriptors(self, feats: np.ndarray) -> np.ndarray:
        """(..., image_dim) -> (..., image_dim/2): V·x, a linear function of the features."""
        half = self.image_dim // 2
        feats = np.asarray(feats, np.float32)
        return feats[..., :half] - feats[..., half:]
