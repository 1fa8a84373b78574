"""Synthetic benchmark, visual side: scenes, rendering, the fixed feature extractor, videos."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from vlpet_jax.data.synthetic import extractor as ex
from vlpet_jax.data.synthetic.render import CELL_PX, IMAGE_PX, render_scene, shape_mask
from vlpet_jax.data.synthetic.scenes import (
    IMAGE_LATTICE,
    VIDEO_LATTICE,
    SceneObject,
    sample_scene,
    unique,
)
from vlpet_jax.data.synthetic.video import MIN_EVENT_GAP, apply_event, sample_video
from vlpet_jax.data.synthetic.vocab import BACKGROUND_RGB, COLOR_RGB, COLORS, SHAPES, SIZES


def _scenes(seed: int, count: int = 20):
    rng = np.random.default_rng(seed)
    return [sample_scene(rng, IMAGE_LATTICE, (2, 5)) for _ in range(count)]


def test_scenes_are_a_function_of_the_seed():
    assert _scenes(0) == _scenes(0)
    assert _scenes(0) != _scenes(1)
    for scene in _scenes(0):
        assert 2 <= len(scene) <= 5
        assert len({o.position for o in scene}) == len(scene)
        for o in scene:
            assert o.color in COLORS and o.shape in SHAPES and o.size in SIZES
            assert 0 <= o.row < 4 and 0 <= o.col < 4


def test_scene_rejects_impossible_object_counts():
    with pytest.raises(ValueError, match="num_objects"):
        sample_scene(np.random.default_rng(0), IMAGE_LATTICE, (3, 17))


def test_unique_names_an_object_only_when_there_is_exactly_one():
    a = SceneObject("red", "cube", "small", 0, 0)
    b = SceneObject("red", "cube", "large", 0, 1)
    c = SceneObject("blue", "cube", "large", 1, 1)
    assert unique((a, b, c), color="red", shape="cube") is None
    assert unique((a, b, c), color="blue") is c
    assert unique((a, b, c), shape="cube", size="small") is a
    assert unique((a, c), color="green") is None


def test_every_shape_and_size_has_its_own_silhouette():
    masks = np.stack([shape_mask(s, z).ravel() for s in SHAPES for z in SIZES]).astype(float)
    assert np.linalg.matrix_rank(masks) == len(SHAPES) * len(SIZES)
    # The frame descriptor keeps only row/column profiles: they must still tell all eight apart.
    grids = masks.reshape(-1, CELL_PX, CELL_PX)
    profiles = np.concatenate([grids.mean(1), grids.mean(2)], axis=1)
    assert np.linalg.matrix_rank(profiles) == len(SHAPES) * len(SIZES)


def test_render_paints_each_object_in_its_grid_cell():
    obj = SceneObject("green", "cube", "large", 1, 2)
    image = render_scene((obj,), IMAGE_LATTICE)  # no rng: a clean render
    assert image.shape == (IMAGE_PX, IMAGE_PX, 3) and image.dtype == np.float32
    gr, gc = IMAGE_LATTICE.grid_cell(1, 2)
    cell = image[gr * CELL_PX : (gr + 1) * CELL_PX, gc * CELL_PX : (gc + 1) * CELL_PX]
    np.testing.assert_allclose(cell[shape_mask("cube", "large")], [COLOR_RGB["green"]] * 36)
    np.testing.assert_allclose(image[:CELL_PX, :CELL_PX].reshape(-1, 3), [BACKGROUND_RGB] * 64)
    noisy = render_scene((obj,), IMAGE_LATTICE, np.random.default_rng(0))
    assert noisy.min() >= 0.0 and noisy.max() <= 1.0 and not np.array_equal(noisy, image)


def test_extractor_gives_the_official_layouts():
    extractor = ex.FeatureExtractor()
    scene = _scenes(0, 1)[0]
    image = render_scene(scene, IMAGE_LATTICE, np.random.default_rng(0))
    feats = extractor.image_features(image)
    assert feats.shape == (49, 2048) and feats.dtype == np.float16
    assert feats.min() >= 0 and feats.max() > 0  # rectified, like a CLIP RN101 map
    frames = sample_video(np.random.default_rng(0), (9, 9)).render(np.random.default_rng(0))
    frame_feats = extractor.frame_features(frames)
    assert frame_feats.shape == (9, 512) and frame_feats.dtype == np.float32
    tiny = ex.FeatureExtractor(image_dim=32, video_dim=16)
    assert tiny.image_features(image).shape == (49, 32)
    assert tiny.frame_features(frames).shape == (9, 16)
    # A batch gives exactly the rows of one-at-a-time extraction.
    batch = np.stack([image, render_scene(_scenes(1, 1)[0], IMAGE_LATTICE)])
    np.testing.assert_array_equal(extractor.image_features(batch)[0], feats)
    with pytest.raises(ValueError, match="even"):
        ex.FeatureExtractor(image_dim=33)
    with pytest.raises(ValueError, match="56, 56, 3"):
        extractor.image_features(np.zeros((32, 32, 3), np.float32))


def test_extractor_is_fixed_forever_and_local_per_cell():
    """The projection depends on the fixed EXTRACTOR_SEED only, and a cell's features depend on
    that cell's pixels only (so an object's identity sits in its own grid token)."""
    a, b = ex.FeatureExtractor(image_dim=64), ex.FeatureExtractor(image_dim=64)
    np.testing.assert_array_equal(a._image_proj, b._image_proj)
    base = (SceneObject("red", "cube", "small", 0, 0), SceneObject("blue", "cone", "large", 3, 3))
    changed = (base[0], SceneObject("yellow", "sphere", "small", 3, 3))
    f0 = a.image_features(render_scene(base, IMAGE_LATTICE))
    f1 = a.image_features(render_scene(changed, IMAGE_LATTICE))
    differs = np.flatnonzero(np.any(f0 != f1, axis=1))
    assert differs.tolist() == [6 * 7 + 6]  # only grid cell (6, 6) of lattice cell (3, 3)


def test_an_object_stands_out_from_empty_cells():
    """Empty cells carry (almost) nothing, so an object's token is not hidden under a component
    that every cell shares: after a random projection and LayerNorm, as the model's visual
    embedding first sees them, object and empty tokens point in unrelated directions."""
    extractor = ex.FeatureExtractor()
    scene = (SceneObject("red", "cube", "small", 1, 1),)
    feats = extractor.image_features(render_scene(scene, IMAGE_LATTICE, np.random.default_rng(0)))
    feats = feats.astype(np.float32)
    object_cell, empty_cell = 2 * 7 + 2, 0
    norms = np.linalg.norm(feats, axis=1)
    assert norms[empty_cell] < 0.05 * norms[object_cell]
    proj = np.random.default_rng(1).standard_normal((feats.shape[1], 64)) / np.sqrt(feats.shape[1])
    tokens = feats @ proj
    tokens = (tokens - tokens.mean(1, keepdims=True)) / tokens.std(1, keepdims=True)
    cosine = tokens[object_cell] @ tokens[empty_cell] / 64
    assert abs(cosine) < 0.5, cosine


def test_descriptor_is_linearly_recoverable_from_the_features():
    extractor = ex.FeatureExtractor(image_dim=256)
    image = render_scene(_scenes(3, 1)[0], IMAGE_LATTICE, np.random.default_rng(1))
    desc = ex.cell_descriptors(image)
    recovered = extractor.recover_image_descriptors(extractor.image_features(image))
    np.testing.assert_allclose(recovered, desc @ extractor._image_proj, atol=2e-3)
    # V has full column rank, so the descriptor itself (colour shares, silhouette) comes back.
    solved = np.linalg.lstsq(extractor._image_proj.T, recovered.T, rcond=None)[0].T
    np.testing.assert_allclose(solved, desc, atol=2e-2)


def test_palette_index_matches_the_nearest_colour():
    rng = np.random.default_rng(0)
    pixels = rng.random((4, 56, 56, 3), dtype=np.float32)
    expected = ((pixels[..., None, :] - ex.PALETTE) ** 2).sum(-1).argmin(-1)
    np.testing.assert_array_equal(ex.palette_index(pixels), expected)


def test_videos_have_spaced_events_and_unique_names():
    rng = np.random.default_rng(0)
    for _ in range(50):
        video = sample_video(rng, (8, 24), (2, 3), (1, 2))
        assert 8 <= video.num_frames <= 24
        frames = [e.frame for e in video.events]
        assert all(2 <= f <= video.num_frames - 2 for f in frames)
        assert all(b - a >= MIN_EVENT_GAP for a, b in itertools.pairwise(frames))
        for t in range(video.num_frames):
            scene = video.scene_at(t)
            assert len({(o.color, o.shape) for o in scene}) == len(scene)
            assert len({o.position for o in scene}) == len(scene)
            assert all(0 <= o.row < VIDEO_LATTICE.side for o in scene)
        for e in video.events:
            before, after = video.scene_at(e.frame - 1), video.scene_at(e.frame)
            assert apply_event(before, e) == after
            if e.before is not None:
                assert e.before in before and e.before not in after
            if e.after is not None:
                assert e.after in after
    with pytest.raises(ValueError, match="too few"):
        sample_video(rng, (5, 6), num_events=(2, 2))


def test_event_descriptions():
    rng = np.random.default_rng(5)
    kinds = set()
    for _ in range(40):
        for e in sample_video(rng, (10, 20)).events:
            kinds.add(e.kind)
            text = e.describe(0)
            assert e.subject.shape in text and e.subject.color in text
            if e.kind == "turn":
                assert text.endswith(f"turns {e.after.color}")
                assert e.describe(1).endswith(f"becomes {e.after.color}")
            if e.kind == "appear" and e.subject.color == "orange":
                assert text.startswith("an orange")
    assert kinds == {"move", "turn", "appear", "disappear"}
