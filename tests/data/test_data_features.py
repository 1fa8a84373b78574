"""Feature stores and the SPEC.md §2 pooling, checked against hand-computed values."""

from __future__ import annotations

import math

import numpy as np
import pytest

from vlpet_jax.data import features as F
from vlpet_jax.data.annotations import DataFormatError

# -- pooling -----------------------------------------------------------------------------------


def test_adaptive_windows_match_the_floor_ceil_rule():
    # 7 -> 6: every output row covers two input rows, stride 1 (SPEC.md §2).
    assert F.adaptive_windows(7, 6) == [(0, 2), (1, 3), (2, 4), (3, 5), (4, 6), (5, 7)]
    assert F.adaptive_windows(5, 3) == [(0, 2), (1, 4), (3, 5)]
    assert F.adaptive_windows(6, 4) == [(0, 2), (1, 3), (3, 5), (4, 6)]
    assert F.adaptive_windows(3, 5) == [(0, 1), (0, 2), (1, 2), (1, 3), (2, 3)]
    with pytest.raises(ValueError):
        F.adaptive_windows(0, 3)


def test_pool_1d_by_hand():
    x = np.array([3, 1, 4, 1, 5])
    np.testing.assert_array_equal(F.adaptive_max_pool_1d(x, 3), [3, 4, 5])
    y = np.array([[5, 0], [0, 9], [2, 1], [7, 1], [1, 8], [3, 2]])
    np.testing.assert_array_equal(
        F.adaptive_max_pool_1d(y, 4, axis=0), [[5, 9], [2, 9], [7, 8], [3, 8]]
    )


def test_pool_image_grid_7x7_to_6x6_by_hand():
    # Channel 0 = row-major index; channel 1 = minus it, so pooling picks the window's first cell.
    index = np.arange(49, dtype=np.float32)
    feats = np.stack([index, -index], axis=1)
    pooled = F.pool_image_grid(feats)
    assert pooled.shape == (36, 2)
    expected_max = [
        [8, 9, 10, 11, 12, 13],
        [15, 16, 17, 18, 19, 20],
        [22, 23, 24, 25, 26, 27],
        [29, 30, 31, 32, 33, 34],
        [36, 37, 38, 39, 40, 41],
        [43, 44, 45, 46, 47, 48],
    ]
    expected_neg = [
        [0, -1, -2, -3, -4, -5],
        [-7, -8, -9, -10, -11, -12],
        [-14, -15, -16, -17, -18, -19],
        [-21, -22, -23, -24, -25, -26],
        [-28, -29, -30, -31, -32, -33],
        [-35, -36, -37, -38, -39, -40],
    ]
    np.testing.assert_array_equal(pooled[:, 0].reshape(6, 6), expected_max)
    np.testing.assert_array_equal(pooled[:, 1].reshape(6, 6), expected_neg)


def _brute_force_pool(grid: np.ndarray, out_h: int, out_w: int) -> np.ndarray:
    h, w, c = grid.shape
    out = np.empty((out_h, out_w, c), grid.dtype)
    for i in range(out_h):
        r0, r1 = math.floor(i * h / out_h), math.ceil((i + 1) * h / out_h)
        for j in range(out_w):
            c0, c1 = math.floor(j * w / out_w), math.ceil((j + 1) * w / out_w)
            for k in range(c):
                out[i, j, k] = max(grid[r, s, k] for r in range(r0, r1) for s in range(c0, c1))
    return out


@pytest.mark.parametrize(("shape", "out"), [((7, 7, 3), (6, 6)), ((5, 9, 2), (3, 4))])
def test_pool_2d_general_sizes_match_brute_force(shape, out):
    grid = np.random.default_rng(0).normal(size=shape).astype(np.float16)
    np.testing.assert_array_equal(F.adaptive_max_pool_2d(grid, out), _brute_force_pool(grid, *out))


def test_pool_image_grid_rejects_non_square():
    with pytest.raises(ValueError, match="square"):
        F.pool_image_grid(np.zeros((48, 4)))


def test_image_tokens_ids_and_zero_boxes():
    tokens = F.image_tokens(np.ones((49, 4), np.float16))
    assert tokens.feats.shape == (36, 4)
    assert tokens.pos.shape == (36, 4) and not tokens.pos.any()
    assert tokens.img_order_ids.tolist() == [0] * 36
    assert tokens.obj_order_ids.tolist() == list(range(36))


def test_nlvr2_pair_gives_72_tokens_with_order_ids():
    first = np.full((49, 3), 1.0, np.float16)
    second = np.full((49, 3), 2.0, np.float16)
    tokens = F.image_pair_tokens(first, second)
    assert tokens.feats.shape == (72, 3)
    assert (tokens.feats[:36] == 1.0).all() and (tokens.feats[36:] == 2.0).all()
    assert tokens.img_order_ids.tolist() == [0] * 36 + [1] * 36
    assert tokens.obj_order_ids.tolist() == list(range(36)) + list(range(36))
    assert tokens.pos.shape == (72, 4) and not tokens.pos.any()


def test_video_short_is_zero_padded():
    feats = np.array([[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]], np.float32)
    np.testing.assert_array_equal(F.resize_video(feats, 4), [[1, 2], [3, 4], [5, 6], [0, 0]])
    tokens = F.video_tokens(np.ones((10, 512), np.float16))
    assert tokens.feats.shape == (64, 512)
    assert (tokens.feats[:10] == 1).all() and not tokens.feats[10:].any()
    assert tokens.obj_order_ids.tolist() == list(range(64))
    assert tokens.img_order_ids.tolist() == [0] * 64
    assert tokens.pos.shape == (64, 4) and not tokens.pos.any()


def test_video_long_is_max_pooled_over_time():
    feats = np.array([[5], [0], [2], [7], [1], [3]], np.float32)
    np.testing.assert_array_equal(F.resize_video(feats, 4), [[5], [2], [7], [3]])
    assert F.video_tokens(np.ones((100, 512), np.float16)).feats.shape == (64, 512)
    exact = np.arange(64 * 2, dtype=np.float32).reshape(64, 2)
    np.testing.assert_array_equal(F.resize_video(exact, 64), exact)


# -- stores --------------------------------------------------------------------------------------


def test_lru_cache_evicts_least_recently_used():
    cache = F.LRUCache(2)
    loads = []
    load = lambda k: loads.append(k) or k.upper()  # noqa: E731
    assert cache.get_or_load("a", load) == "A"
    cache.get_or_load("b", load)
    cache.get_or_load("a", load)  # a is now the most recent
    cache.get_or_load("c", load)  # evicts b
    assert "a" in cache and "c" in cache and "b" not in cache
    cache.get_or_load("b", load)
    assert loads == ["a", "b", "c", "b"]
    assert (cache.hits, cache.misses) == (1, 4)


def test_image_store_reads_validates_and_caches(tmp_path, write):
    feats = np.random.default_rng(1).normal(size=(49, 8)).astype(np.float16)
    path = write.h5(tmp_path, "COCO_val2014_000000000042", feats)
    store = F.ImageFeatureStore(tmp_path, expected_shape=(49, 8), cache_items=1)
    loaded = store.load("COCO_val2014_000000000042")
    assert loaded.dtype == np.float16
    np.testing.assert_array_equal(loaded, feats)
    path.unlink()  # served from the cache now
    np.testing.assert_array_equal(store.load("COCO_val2014_000000000042"), feats)
    write.h5(tmp_path, "other", feats)
    store.load("other")  # evicts the first image (cache of one)
    with pytest.raises(FileNotFoundError, match="COCO_val2014_000000000042"):
        store.load("COCO_val2014_000000000042")


def test_image_store_missing_file_names_path_and_id(tmp_path):
    store = F.ImageFeatureStore(tmp_path / "feats")
    with pytest.raises(FileNotFoundError) as info:
        store.load("img7")
    assert "img7" in str(info.value)
    assert str(tmp_path / "feats" / "img7.h5") in str(info.value)


def test_image_store_wrong_dataset_name(tmp_path, write):
    write.h5(tmp_path, "img1", np.zeros((49, 8), np.float16), dataset="img1/feats")
    store = F.ImageFeatureStore(tmp_path, expected_shape=(49, 8))
    with pytest.raises(DataFormatError, match=r"no dataset 'img1/features'.*img1/feats"):
        store.load("img1")


def test_image_store_wrong_shape_says_expected_and_found(tmp_path, write):
    write.h5(tmp_path, "img1", np.zeros((36, 2048), np.float16))
    with pytest.raises(DataFormatError, match=r"shape \(36, 2048\), expected \(49, 2048\)"):
        F.ImageFeatureStore(tmp_path).load("img1")


def test_video_store_reads_and_validates(tmp_path, write):
    feats = np.arange(6 * 512, dtype=np.float32).reshape(6, 512)
    write.npz(tmp_path, "friends_s01e01_seg01_clip_00", feats)
    store = F.VideoFeatureStore(tmp_path)
    np.testing.assert_array_equal(store.load("friends_s01e01_seg01_clip_00"), feats)
    with pytest.raises(FileNotFoundError, match="missing_clip"):
        store.load("missing_clip")
    write.npz(tmp_path, "bad_key", feats, key="feats")
    with pytest.raises(DataFormatError, match=r"no array 'features'.*feats"):
        store.load("bad_key")
    write.npz(tmp_path, "bad_dim", np.zeros((6, 256), np.float32))
    with pytest.raises(DataFormatError, match=r"shape \(6, 256\), expected \(T, 512\)"):
        store.load("bad_dim")


def test_visual_sources_dispatch_on_key_count(tmp_path, write):
    write.h5(tmp_path, "a", np.full((49, 8), 1.0, np.float16))
    write.h5(tmp_path, "b", np.full((49, 8), 2.0, np.float16))
    visuals = F.ImageVisuals(F.ImageFeatureStore(tmp_path, expected_shape=(49, 8)))
    assert visuals(["a"]).feats.shape == (36, 8)
    pair = visuals(["a", "b"])
    assert pair.feats.shape == (72, 8) and pair.img_order_ids[36] == 1
    with pytest.raises(ValueError, match="1 or 2 feature keys"):
        visuals(["a", "b", "a"])
    empty = visuals.empty(2)
    assert empty.feats.shape == (72, 8) and not empty.feats.any()
    assert empty.img_order_ids.tolist() == [0] * 36 + [1] * 36


def test_image_visuals_pool_each_image_once_and_match_the_reference(tmp_path, write):
    rng = np.random.default_rng(3)
    raw = {k: rng.normal(size=(49, 8)).astype(np.float16) for k in ("a", "b")}
    for key, feats in raw.items():
        write.h5(tmp_path, key, feats)
    visuals = F.ImageVisuals(F.ImageFeatureStore(tmp_path, expected_shape=(49, 8)))
    single = visuals(["a"])
    pair = visuals(["a", "b"])
    assert single.feats.dtype == np.float16  # pooled in float32, returned in the stored dtype
    np.testing.assert_array_equal(
        single.feats, _brute_force_pool(raw["a"].reshape(7, 7, 8), 6, 6).reshape(36, 8)
    )
    reference = F.image_pair_tokens(raw["a"], raw["b"])
    for got, want in zip(pair, reference):
        np.testing.assert_array_equal(got, want)
    # "a" was pooled for the first call and served from the pooled cache for the pair.
    assert (visuals.pooled.misses, visuals.pooled.hits) == (2, 1)
