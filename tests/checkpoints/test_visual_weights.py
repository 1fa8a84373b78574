"""A backbone's visual embedding saved next to its Hugging Face weights, and loaded by init_params."""

from __future__ import annotations

import re

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from safetensors.numpy import load_file, save_file

from vlpet_jax import api
from vlpet_jax.checkpoints.visual_weights import (
    FILE,
    load_visual_embedding,
    save_visual_embedding,
    visual_name_map,
)
from vlpet_jax.models.presets import get_preset


def _perturbed(tree, seed):
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: np.asarray(x) + rng.normal(size=x.shape).astype(x.dtype), tree)


@pytest.mark.parametrize("family", ["t5", "bart"])
def test_names_are_vl_t5s_and_round_trip(family, tmp_path):
    cfg = get_preset(f"{family}_tiny")
    config = api.load_config(f"configs/image_text.py:backbone={family}_tiny,method=vl_pet_large")
    like = api.abstract_params(config)["visual_embedding"]
    params = _perturbed(jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), like), 0)
    save_visual_embedding(cfg, params, tmp_path)
    keys = set(load_file(tmp_path / FILE))
    prefix = "model.encoder." if family == "bart" else "encoder."
    assert f"{prefix}visual_embedding.feat_embedding.0.weight" in keys
    assert keys == {key for key, _ in visual_name_map(cfg).values()}
    loaded = load_visual_embedding(tmp_path, cfg, like)
    flat, back = flatten_dict(params, sep="/"), flatten_dict(loaded, sep="/")
    assert flat.keys() == back.keys()
    for path in flat:
        np.testing.assert_array_equal(flat[path], back[path])
    assert load_visual_embedding(tmp_path / "absent", cfg, like) is None


def test_loading_is_strict(tmp_path):
    cfg = get_preset("t5_tiny")
    config = api.load_config("configs/image_text.py:backbone=t5_tiny,method=vl_pet_large")
    like = api.abstract_params(config)["visual_embedding"]
    save_visual_embedding(cfg, jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), like), tmp_path)
    tensors = load_file(tmp_path / FILE)
    save_file(
        {**tensors, "encoder.visual_embedding.extra": np.zeros(2, np.float32)}, tmp_path / FILE
    )
    with pytest.raises(
        ValueError, match=re.escape("unexpected: ['encoder.visual_embedding.extra']")
    ):
        load_visual_embedding(tmp_path, cfg, like)
    key = "encoder.visual_embedding.img_order_embedding.weight"
    save_file({**tensors, key: np.zeros((3, cfg.d_model), np.float32)}, tmp_path / FILE)
    with pytest.raises(ValueError, match=re.escape("img_order_embedding.weight has shape (3, 64)")):
        load_visual_embedding(tmp_path, cfg, like)
    # A BART file does not load as T5 (LayerNorm biases, other prefix).
    save_visual_embedding(
        get_preset("bart_tiny"),
        jax.tree.map(
            lambda s: np.zeros(s.shape, s.dtype),
            api.abstract_params(
                api.load_config("configs/image_text.py:backbone=bart_tiny,method=vl_pet_large")
            )["visual_embedding"],
        ),
        tmp_path,
    )
    with pytest.raises(ValueError, match="missing"):
        load_visual_embedding(tmp_path, cfg, like)
