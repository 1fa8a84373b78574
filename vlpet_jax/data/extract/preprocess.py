"""CLIP's image preprocessing with Pillow and NumPy (what the features of SPEC.md §2 were made with).

In CLIP's order: resize so the shorter side is ``size`` (bicubic; the longer side becomes
``int(size · long / short)``), center-crop ``size``×``size`` (offset ``round((len - size) / 2)``),
convert to RGB, scale to [0, 1], then normalise each channel with CLIP's mean and std::

    mean = (0.48145466, 0.4578275, 0.40821073)    std = (0.26862954, 0.26130258, 0.27577711)

Converting after resizing matters for palette and RGBA images, which Pillow resizes in their own
mode. The result is (size, size, 3) float32, channels last (the Flax encoders' layout).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image

CLIP_MEAN = np.array([0.48145466, 0.4578275, 0.40821073], np.float32)
CLIP_STD = np.array([0.26862954, 0.26130258, 0.27577711], np.float32)
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".gif", ".tif", ".tiff")


def resize_and_crop(image: Image.Image, size: int) -> Image.Image:
    """Shorter side -> ``size`` (bicubic), then the centered ``size``×``size`` square."""
    width, height = image.size
    if width <= height:
        new_size = (size, int(size * height / width))
    else:
        new_size = (int(size * width / height), size)
    image = image.resize(new_size, Image.Resampling.BICUBIC)
    left = round((new_size[0] - size) / 2.0)  # half to even, as torchvision
    top = round((new_size[1] - size) / 2.0)
    return image.crop((left, top, left + size, top + size))


def clip_preprocess(image: Image.Image, size: int = 224) -> np.ndarray:
    """A PIL image -> CLIP-normalised (size, size, 3) float32 (module docstring)."""
    pixels = np.asarray(resize_and_crop(image, size).convert("RGB"), np.float32) / 255.0
    return (pixels - CLIP_MEAN) / CLIP_STD


def load_image(path: str | Path, size: int = 224) -> np.ndarray:
    """Read and preprocess one image file; a file Pillow cannot read is named in the error."""
    try:
        with Image.open(path) as image:
            return clip_preprocess(image, size)
    except (OSError, SyntaxError, ValueError) as err:
        raise ValueError(f"{path}: not a readable image ({err})") from err
