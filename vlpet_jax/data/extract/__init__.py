"""Optional: make the SPEC.md §2 visual features from raw images and video frames.

Images -> CLIP RN101 layer-4 grids (7×7×2048 at 224 px) in the per-image HDF5 layout; video frames
-> CLIP ViT-B/32 embeddings (512-d) in the VALUE npz layout. Both encoders are Flax re-implementations
(``resnet``, ``vit``) fed with OpenAI's released weights, which the user supplies as a local file
(``weights``); ``preprocess`` is CLIP's resize / crop / normalisation; ``pipeline`` walks the files.
Launcher: ``python -m launch.extract_features``.
"""

from vlpet_jax.data.extract.pipeline import extract_image_features, extract_video_features
from vlpet_jax.data.extract.preprocess import CLIP_MEAN, CLIP_STD, clip_preprocess
from vlpet_jax.data.extract.resnet import ModifiedResNet, ResNetConfig, resnet_from_state_dict
from vlpet_jax.data.extract.vit import VisionTransformer, ViTConfig, vit_from_state_dict
from vlpet_jax.data.extract.weights import load_state_dict

__all__ = [
    "CLIP_MEAN",
    "CLIP_STD",
    "ModifiedResNet",
    "ResNetConfig",
    "ViTConfig",
    "VisionTransformer",
    "clip_preprocess",
    "extract_image_features",
    "extract_video_features",
    "load_state_dict",
    "resnet_from_state_dict",
    "vit_from_state_dict",
]
