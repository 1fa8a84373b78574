"""The demo's vision-and-language pretraining images: disjoint from the benchmark, readable as COCO."""

from __future__ import annotations

import os

import numpy as np
import pytest

from vlpet_jax.data import synthetic
from vlpet_jax.data.synthetic import pretraining
from vlpet_jax.data.synthetic.generate import IMAGE_FEATURES
from vlpet_jax.data.synthetic.scenes import IMAGE_LATTICE, sample_scene
from vlpet_jax.data.tasks.registry import get_task

# The demo's benchmark sizes (DemoOptions), whose scenes the pretraining images must avoid.
SIZES = dict(
    coco_images=(150, 0, 40, 40),
    gqa_images=(150, 40, 40),
    nlvr_images=(150, 40, 40),
    nlvr_groups=(120, 24, 24),
)
TINY = dict(
    image_feat_dim=64, coco_images=(4, 0, 2, 2), gqa_images=(3, 2, 2), nlvr_images=(4, 2, 2),
    nlvr_groups=(2, 1, 1),
)  # fmt: skip


def test_pool_is_disjoint_from_every_benchmark_scene_and_deterministic():
    pool = synthetic.caption_pretraining_pool(0, 1200, **SIZES)
    assert len(pool) == 1200 and len({img_id for img_id, _ in pool}) == 1200
    assert all(img_id.startswith(pretraining.PREFIX + "_") for img_id, _ in pool)
    taken = {s for p in synthetic.image_pools(0, **SIZES).values() for _, s in p}
    assert not taken & {scene for _, scene in pool}
    assert pool[:50] == synthetic.caption_pretraining_pool(0, 50, **SIZES)
    assert pool[:50] != synthetic.caption_pretraining_pool(1, 50, **SIZES)


def test_a_scene_the_benchmark_shows_is_drawn_again(monkeypatch):
    rng = synthetic.stream_rng(0, "scenes", pretraining.PREFIX)
    first, second = (sample_scene(rng, IMAGE_LATTICE, (2, 5)) for _ in range(2))
    monkeypatch.setattr(pretraining, "image_pools", lambda seed, **sizes: {"x": [("a", first)]})
    assert [scene for _, scene in synthetic.caption_pretraining_pool(0, 1)] == [second]


def test_tree_is_read_by_the_caption_task_and_checked_on_reuse(tmp_path):
    root = tmp_path / "vlp"
    manifest = synthetic.ensure_caption_pretraining(root, seed=0, images=6, **TINY)
    assert manifest["images"] == 6
    examples = list(get_task("caption").load(root, "train", train=True))
    assert len(examples) == 6 * 5  # one example per caption, five captions an image
    ids = {ex.feature_keys[0] for ex in examples}
    assert len(ids) == 6 and all(i.startswith(pretraining.PREFIX) for i in ids)
    files = os.listdir(root / "COCO" / IMAGE_FEATURES)
    assert sorted(files) == sorted(f"{i}.h5" for i in ids)
    assert synthetic.ensure_caption_pretraining(root, seed=0, images=6, **TINY) == manifest
    with pytest.raises(ValueError, match="remove it"):
        synthetic.ensure_caption_pretraining(root, seed=0, images=7, **TINY)
    assert not [p for p in os.listdir(tmp_path) if p.startswith(".")]  # no staging left behind
    assert np.all([len(ex.targets[0].split()) > 1 for ex in examples])
