"""How the trainer hands visual features to the device: in their stored dtype by default
(`config.data.vis_dtype`), float16 image grids and float32 video frames; the model widens float16
exactly on device."""

from __future__ import annotations

import numpy as np
import pytest

from vlpet_jax import api
from vlpet_jax.data.batching import stack_visuals
from vlpet_jax.data.features import image_tokens
from vlpet_jax.train import data_setup


def test_image_batches_keep_float16_and_video_batches_float32():
    image = api.load_config("configs/image_text.py:backbone=t5_tiny,method=vl_pet_large")
    video = api.load_config("configs/video_text.py:backbone=t5_tiny,method=vl_pet_large")
    assert data_setup.visual_dtype(image) == np.float16
    assert data_setup.visual_dtype(video) == np.float32
    image.data.vis_dtype = "float32"  # features saved wider than the official files
    assert data_setup.visual_dtype(image) == np.float32
    image.data.vis_dtype = "bfloat16"
    with pytest.raises(
        ValueError, match="vis_dtype must be 'float16' or 'float32', got 'bfloat16'"
    ):
        data_setup.visual_dtype(image)


def test_float16_batches_hold_exactly_the_stored_features():
    stored = np.random.default_rng(0).normal(size=(49, 16)).astype(np.float16)
    tokens = [image_tokens(stored)] * 3
    narrow = stack_visuals(tokens, np.float16)["vis_feats"]
    wide = stack_visuals(tokens, np.float32)["vis_feats"]
    assert narrow.dtype == np.float16
    np.testing.assert_array_equal(narrow.astype(np.float32), wide)
