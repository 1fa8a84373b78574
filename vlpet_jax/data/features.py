"""Visual feature stores and the SPEC.md §2 preprocessing, in NumPy.

Images: CLIP RN101 grid features, one HDF5 file per image, ``<dir>/<img_id>.h5`` holding the
dataset ``<img_id>/features`` of shape (49, 2048) float16 (the 7×7 layer-4 map, row-major). They are
adaptive-max-pooled to 6×6 = 36 tokens; NLVR2 pools its two images separately and concatenates them
(72 tokens) with image-order ids 0…0,1…1 and object-order ids 0..35,0..35. Boxes are zeros: every
grid token gets the box ``[x1, y1, x2, y2] = 0``; the model appends the area (x2-x1)(y2-y1) = 0
itself, giving SPEC.md §2's 5-vector ``[box, area]`` (as the released code does).

Videos: CLIP ViT-B/32 frame features, ``<dir>/<vid_name>.npz`` with key ``features`` of shape
(T, 512). Fewer than 64 frames are padded with zero rows (no mask: the encoder attends to them, as
the released code does); more are adaptive-max-pooled over time to 64.

Pooling happens here, on the host, so the accelerator receives exactly the tokens the model embeds.
"""

from __future__ import annotations

import math
import threading
from collections import OrderedDict
from collections.abc import Callable, Hashable, Sequence
from pathlib import Path
from typing import Generic, NamedTuple, TypeVar

import h5py
import numpy as np

from vlpet_jax.data.annotations import DataFormatError

IMAGE_GRID = 7  # CLIP RN101 layer-4 map at 224 px: 7×7 (SPEC.md §2)
IMAGE_POOLED_GRID = 6  # adaptive max-pool target: 6×6 = 36 tokens per image
IMAGE_FEAT_DIM = 2048
VIDEO_FEAT_DIM = 512
VIDEO_TOKENS = 64
# The dtype each kind of feature is stored in (SPEC.md §2), which batches keep on the host: the
# model widens float16 exactly on device, and NumPy's float16 -> float32 cast costs more than the
# rest of building a batch.
STORED_DTYPE = {"image": np.float16, "video": np.float32}
BOX_DIM = 4  # [x1, y1, x2, y2], all zeros; the model appends the area (SPEC.md §2)

_K = TypeVar("_K", bound=Hashable)
_V = TypeVar("_V")


class VisualTokens(NamedTuple):
    """The visual part of one example, ready to be stacked into a batch.

    feats (V, F); pos (V, 4) float32 zero boxes; img_order_ids (V,) int32; obj_order_ids (V,) int32.
    """

    feats: np.ndarray
    pos: np.ndarray
    img_order_ids: np.ndarray
    obj_order_ids: np.ndarray


# --------------------------------------------------------------------------------------------------
# Pooling (SPEC.md §2)


def adaptive_windows(in_size: int, out_size: int) -> list[tuple[int, int]]:
    """Half-open input windows of adaptive pooling: output i covers [⌊i·n/m⌋, ⌈(i+1)·n/m⌉).

    This is PyTorch's ``AdaptiveMaxPool`` rule, which the released code uses (7→6 gives 2-wide,
    stride-1 windows).
    """
    if in_size < 1 or out_size < 1:
        raise ValueError(f"adaptive pooling needs positive sizes, got {in_size} -> {out_size}")
    return [
        ((i * in_size) // out_size, -((-(i + 1) * in_size) // out_size)) for i in range(out_size)
    ]


def adaptive_max_pool_1d(x: np.ndarray, out_size: int, axis: int = 0) -> np.ndarray:
    """Adaptive max-pool ``x`` along ``axis`` from its length n to ``out_size`` (any n, m ≥ 1)."""
    x = np.asarray(x)
    windows = adaptive_windows(x.shape[axis], out_size)
    starts = np.array([start for start, _ in windows])
    last = np.array([end - 1 for _, end in windows])
    pooled = np.take(x, starts, axis=axis)
    # Window k's offset-j element, clamped to its last one (a repeat does not change the max).
    for offset in range(1, int((last - starts).max()) + 1):
        pooled = np.maximum(pooled, np.take(x, np.minimum(starts + offset, last), axis=axis))
    return pooled


def adaptive_max_pool_2d(grid: np.ndarray, out_hw: tuple[int, int]) -> np.ndarray:
    """Adaptive max-pool an (H, W, C) grid to (out_h, out_w, C); max is separable over the axes."""
    if grid.ndim != 3:
        raise ValueError(f"expected an (H, W, C) grid, found shape {grid.shape}")
    if grid.dtype == np.float16:
        # NumPy's float16 max is not vectorised: pooling a widened copy is exact and 3x faster.
        return adaptive_max_pool_2d(grid.astype(np.float32), out_hw).astype(np.float16)
    rows = adaptive_max_pool_1d(grid, out_hw[0], axis=0)
    return adaptive_max_pool_1d(rows, out_hw[1], axis=1)


def pool_image_grid(feats: np.ndarray, out_grid: int = IMAGE_POOLED_GRID) -> np.ndarray:
    """(L, C) row-major square grid features -> (out_grid², C) tokens (SPEC.md §2: 49 -> 36)."""
    length, channels = feats.shape
    side = math.isqrt(length)
    if side * side != length:
        raise ValueError(f"image features must form a square grid, found {length} tokens")
    pooled = adaptive_max_pool_2d(feats.reshape(side, side, channels), (out_grid, out_grid))
    return pooled.reshape(out_grid * out_grid, channels)


def image_tokens(feats: np.ndarray, out_grid: int = IMAGE_POOLED_GRID) -> VisualTokens:
    """One image: pooled grid, zero boxes, image-order 0, object-order 0..V-1."""
    pooled = pool_image_grid(feats, out_grid)
    count = pooled.shape[0]
    return VisualTokens(
        feats=pooled,
        pos=np.zeros((count, BOX_DIM), np.float32),
        img_order_ids=np.zeros((count,), np.int32),
        obj_order_ids=np.arange(count, dtype=np.int32),
    )


def image_pair_tokens(
    feats0: np.ndarray, feats1: np.ndarray, out_grid: int = IMAGE_POOLED_GRID
) -> VisualTokens:
    """NLVR2's two images, each pooled on its own, then concatenated (SPEC.md §2: 72 tokens)."""
    return concat_images(image_tokens(feats0, out_grid), image_tokens(feats1, out_grid))


def concat_images(first: VisualTokens, second: VisualTokens) -> VisualTokens:
    """Two images' tokens side by side; the second one gets image-order id 1."""
    return VisualTokens(
        feats=np.concatenate([first.feats, second.feats]),
        pos=np.concatenate([first.pos, second.pos]),
        img_order_ids=np.concatenate([first.img_order_ids, second.img_order_ids + 1]),
        obj_order_ids=np.concatenate([first.obj_order_ids, second.obj_order_ids]),
    )


def resize_video(feats: np.ndarray, num_tokens: int = VIDEO_TOKENS) -> np.ndarray:
    """(T, D) -> (num_tokens, D): zero rows appended when short, adaptive max-pool when long."""
    length = feats.shape[0]
    if length < num_tokens:
        pad = np.zeros((num_tokens - length, feats.shape[1]), feats.dtype)
        return np.concatenate([feats, pad])
    if length > num_tokens:
        return adaptive_max_pool_1d(feats, num_tokens, axis=0)
    return feats


def video_tokens(feats: np.ndarray, num_tokens: int = VIDEO_TOKENS) -> VisualTokens:
    """A video: resized frames, zero boxes, image-order 0, object-order 0..num_tokens-1."""
    resized = resize_video(feats, num_tokens)
    return VisualTokens(
        feats=resized,
        pos=np.zeros((num_tokens, BOX_DIM), np.float32),
        img_order_ids=np.zeros((num_tokens,), np.int32),
        obj_order_ids=np.arange(num_tokens, dtype=np.int32),
    )


# --------------------------------------------------------------------------------------------------
# Stores


class LRUCache(Generic[_K, _V]):
    """A small thread-safe least-recently-used cache (the prefetch thread and the trainer share it).

    ``max_items=0`` disables caching.
    """

    def __init__(self, max_items: int) -> None:
        if max_items < 0:
            raise ValueError(f"max_items must be >= 0, got {max_items}")
        self.max_items = max_items
        self._items: OrderedDict[_K, _V] = OrderedDict()
        self._lock = threading.Lock()
        self.hits = 0
        self.misses = 0

    def get_or_load(self, key: _K, load: Callable[[_K], _V]) -> _V:
        """Return the cached value of ``key``, calling ``load(key)`` on a miss."""
        with self._lock:
            if key in self._items:
                self._items.move_to_end(key)
                self.hits += 1
                return self._items[key]
            self.misses += 1
        value = load(key)  # outside the lock: file reads of different keys may overlap
        if self.max_items:
            with self._lock:
                self._items[key] = value
                self._items.move_to_end(key)
                while len(self._items) > self.max_items:
                    self._items.popitem(last=False)
        return value

    def __len__(self) -> int:
        return len(self._items)

    def __contains__(self, key: object) -> bool:
        return key in self._items


class ImageFeatureStore:
    """Per-image HDF5 grid features (SPEC.md §2), validated and LRU-cached.

    Args:
      feature_dir: directory holding ``<img_id>.h5`` files (e.g.
        ``datasets/COCO/clip_features/data_clip_RN101_att``).
      expected_shape: (tokens, dim) every image must have; (49, 2048) for CLIP RN101.
      cache_items: how many images to keep in memory (0 disables the cache).
    """

    def __init__(
        self,
        feature_dir: str | Path,
        expected_shape: tuple[int, int] = (IMAGE_GRID * IMAGE_GRID, IMAGE_FEAT_DIM),
        cache_items: int = 1024,
    ) -> None:
        self.feature_dir = Path(feature_dir)
        self.expected_shape = tuple(expected_shape)
        self.cache: LRUCache[str, np.ndarray] = LRUCache(cache_items)

    def path(self, img_id: str) -> Path:
        return self.feature_dir / f"{img_id}.h5"

    def load(self, img_id: str) -> np.ndarray:
        """The raw (49, 2048) features of ``img_id`` in the stored dtype (float16)."""
        return self.cache.get_or_load(img_id, self._read)

    def _read(self, img_id: str) -> np.ndarray:
        path = self.path(img_id)
        if not path.is_file():
            raise FileNotFoundError(f"image features for id '{img_id}' not found: {path}")
        dataset_name = f"{img_id}/features"
        with h5py.File(path, "r") as f:
            if dataset_name not in f:
                found: list[str] = []
                f.visit(found.append)
                raise DataFormatError(
                    f"{path}: no dataset '{dataset_name}' for image id '{img_id}' "
                    f"(found: {', '.join(found) or 'nothing'})"
                )
            feats = f[dataset_name][...]
        if feats.shape != self.expected_shape:
            raise DataFormatError(
                f"{path}: dataset '{dataset_name}' has shape {feats.shape}, "
                f"expected {self.expected_shape}"
            )
        return feats


class VideoFeatureStore:
    """Per-video ``.npz`` frame features (VALUE release, SPEC.md §2), validated and LRU-cached."""

    def __init__(
        self, feature_dir: str | Path, feat_dim: int = VIDEO_FEAT_DIM, cache_items: int = 256
    ) -> None:
        self.feature_dir = Path(feature_dir)
        self.feat_dim = feat_dim
        self.cache: LRUCache[str, np.ndarray] = LRUCache(cache_items)

    def path(self, vid_name: str) -> Path:
        return self.feature_dir / f"{vid_name}.npz"

    def load(self, vid_name: str) -> np.ndarray:
        """The raw (T, 512) frame features of ``vid_name``."""
        return self.cache.get_or_load(vid_name, self._read)

    def _read(self, vid_name: str) -> np.ndarray:
        path = self.path(vid_name)
        if not path.is_file():
            raise FileNotFoundError(f"video features for '{vid_name}' not found: {path}")
        with np.load(path) as archive:
            if "features" not in archive.files:
                raise DataFormatError(
                    f"{path}: no array 'features' for video '{vid_name}' "
                    f"(found: {', '.join(archive.files) or 'nothing'})"
                )
            feats = archive["features"]
        if feats.ndim != 2 or feats.shape[0] < 1 or feats.shape[1] != self.feat_dim:
            raise DataFormatError(
                f"{path}: 'features' has shape {feats.shape}, expected (T, {self.feat_dim}) "
                "with T >= 1"
            )
        return feats


# --------------------------------------------------------------------------------------------------
# Example -> visual tokens


class ImageVisuals:
    """Visual tokens of an image example: one key -> 36 tokens, two keys (NLVR2) -> 72."""

    def __init__(
        self,
        store: ImageFeatureStore,
        out_grid: int = IMAGE_POOLED_GRID,
        cache_items: int | None = None,
    ) -> None:
        self.store = store
        self.out_grid = out_grid
        # An image is asked about many times an epoch (VQA has ~5 questions per image): pooling it
        # once per stay in the cache keeps the host side of a step well ahead of the device.
        # Default size: the store's cache (give the store none, and this one is the only copy).
        size = store.cache.max_items if cache_items is None else cache_items
        self.pooled: LRUCache[str, VisualTokens] = LRUCache(size)

    def image(self, key: str) -> VisualTokens:
        """The 36 pooled tokens of one image (cached)."""
        return self.pooled.get_or_load(
            key, lambda k: image_tokens(self.store.load(k), self.out_grid)
        )

    def __call__(self, feature_keys: Sequence[str]) -> VisualTokens:
        if len(feature_keys) == 1:
            return self.image(feature_keys[0])
        if len(feature_keys) == 2:
            return concat_images(self.image(feature_keys[0]), self.image(feature_keys[1]))
        raise ValueError(f"an image example has 1 or 2 feature keys, found {list(feature_keys)}")

    def empty(self, num_images: int = 1) -> VisualTokens:
        """Zero tokens of the right shape, for the padding rows of a batch."""
        count = num_images * self.out_grid * self.out_grid
        dim = self.store.expected_shape[1]
        per_image = self.out_grid * self.out_grid
        return VisualTokens(
            feats=np.zeros((count, dim), np.float16),
            pos=np.zeros((count, BOX_DIM), np.float32),
            img_order_ids=np.repeat(np.arange(num_images, dtype=np.int32), per_image),
            obj_order_ids=np.tile(np.arange(per_image, dtype=np.int32), num_images),
        )


class VideoVisuals:
    """Visual tokens of a video example: 64 frame tokens."""

    def __init__(self, store: VideoFeatureStore, num_tokens: int = VIDEO_TOKENS) -> None:
        self.store = store
        self.num_tokens = num_tokens

    def __call__(self, feature_keys: Sequence[str]) -> VisualTokens:
        if len(feature_keys) != 1:
            raise ValueError(f"a video example has 1 feature key, found {list(feature_keys)}")
        return video_tokens(self.store.load(feature_keys[0]), self.num_tokens)

    def empty(self, num_images: int = 1) -> VisualTokens:
        del num_images
        return video_tokens(np.zeros((1, self.store.feat_dim), np.float16), self.num_tokens)
