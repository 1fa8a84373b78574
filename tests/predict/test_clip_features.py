"""Predict's CLIP path: features of an image file extracted on the fly with the project's Flax
CLIP and user-supplied weights are those `launch.extract_features` writes for the dataset path,
pooled as the feature store pools them (49 -> 36 tokens)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.data.test_extract import TorchCLIP, TorchModifiedResNet, _randomise_norms
from vlpet_jax.data.extract import extract_image_features
from vlpet_jax.data.features import ImageFeatureStore, image_tokens
from vlpet_jax.inference.inputs import ClipFeatures, FileVisuals, InputError


def test_clip_image_features_equal_the_extraction_pipeline(tmp_path):
    from PIL import Image

    torch.manual_seed(4)
    reference = _randomise_norms(TorchModifiedResNet((1, 1, 1, 1), width=8), seed=5)
    weights = tmp_path / "RN-tiny.pt"
    torch.save(TorchCLIP(reference).state_dict(), weights)
    images = tmp_path / "images"
    images.mkdir()
    rng = np.random.default_rng(0)
    Image.fromarray(rng.integers(0, 256, (180, 240, 3), dtype=np.uint8)).save(images / "a.png")
    extract_image_features(images, weights, tmp_path / "feats", batch_size=1)
    stored = ImageFeatureStore(tmp_path / "feats", expected_shape=(49, 256)).load("a")

    visuals = FileVisuals(ClipFeatures(str(weights), None), "image", 64, feat_dim=256)
    visuals.add(str(images / "a.png"))
    tokens = visuals([str(images / "a.png")])
    np.testing.assert_array_equal(tokens.feats, image_tokens(stored).feats)
    assert tokens.feats.shape == (36, 256) and tokens.feats.dtype == np.float16

    narrow = FileVisuals(ClipFeatures(str(weights), None), "image", 64, feat_dim=2048)
    with pytest.raises(InputError, match=r"a\.png: features of width 256, the model reads 2048"):
        narrow.add(str(images / "a.png"))
    with pytest.raises(InputError, match=r"video features need CLIP ViT-B/32 weights"):
        FileVisuals(ClipFeatures(str(weights), None), "video", 64, 512).add(str(images))
