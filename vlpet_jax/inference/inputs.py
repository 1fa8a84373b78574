"""A user's files -> the visual tokens and encoder texts the task readers would have produced.

Images are files (or folders of them); a video is a folder of frame images in file-name order
(already sampled from the video, e.g. with ffmpeg). Features come from one of two extractors:

- `SyntheticFeatures`: the built-in benchmark's fixed extractor (`data/synthetic/extractor.py`),
  for models trained on it (the demo's, `runlocal=True`): 56×56 renders -> (49, D) grids, frames
  -> (T, D) rows, exactly what the benchmark's feature files hold;
- `ClipFeatures`: the project's Flax CLIP (`data/extract/`) with user-supplied weights: RN101
  layer-4 grids for images, ViT-B/32 embeddings for frames (SPEC.md §2), as
  `launch.extract_features` writes them.

Either way the tokens are then pooled by the same functions the feature stores use
(`data/features.py`: 49 -> 36 per image, NLVR2's pair -> 72, frames -> 64), and the texts are
built with the task readers' prompts and formats (`data/tasks/`).
"""

from __future__ import annotations

import functools
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlpet_jax.data.extract.preprocess import IMAGE_SUFFIXES
from vlpet_jax.data.features import VisualTokens, concat_images, image_tokens, video_tokens
from vlpet_jax.data.tasks.tvqa import format_choices
from vlpet_jax.data.tasks.video_text import format_ts

IMAGE_TASKS = ("vqa", "gqa", "nlvr", "caption")
VIDEO_QA_TASKS = ("tvqa", "how2qa")
NUM_CHOICES = {"tvqa": 5, "how2qa": 4}


class InputError(ValueError):
    """A missing, unreadable or malformed input file, or inputs that do not fit the task."""


# ---------------------------------------------------------------- files


def image_files(paths: Sequence[str | os.PathLike]) -> list[Path]:
    """Files as given and every image of each folder (sorted); a missing path is an error."""
    files: list[Path] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
            if not found:
                raise InputError(f"{path}: folder holds no images ({', '.join(IMAGE_SUFFIXES)})")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise InputError(f"{path}: image not found")
    return files


def frame_files(folder: str | os.PathLike) -> list[Path]:
    """A video's frames: the images of `folder` in file-name order."""
    path = Path(folder)
    if not path.exists():
        raise InputError(f"{path}: video folder not found")
    if not path.is_dir():
        raise InputError(f"{path}: a video is a folder of frame images, found a file")
    frames = sorted(p for p in path.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    if not frames:
        raise InputError(
            f"{path}: video folder without frames (expected images: {', '.join(IMAGE_SUFFIXES)})"
        )
    return frames


def read_rgb(path: Path) -> np.ndarray:
    """(H, W, 3) float32 in [0, 1]; a file Pillow cannot read is named in the error."""
    from PIL import Image

    try:
        with Image.open(path) as image:
            return np.asarray(image.convert("RGB"), np.float32) / 255.0
    except (OSError, SyntaxError, ValueError) as err:
        raise InputError(f"{path}: not a readable image ({err})") from err


# ---------------------------------------------------------------- features


class SyntheticFeatures:
    """The synthetic benchmark's extractor, applied to image files (56×56 renders)."""

    name = "synthetic"

    def __init__(self, image_dim: int, video_dim: int):
        from vlpet_jax.data.synthetic.extractor import FeatureExtractor

        self.extractor = FeatureExtractor(image_dim=image_dim, video_dim=video_dim)

    def _pixels(self, path: Path) -> np.ndarray:
        from vlpet_jax.data.synthetic.render import IMAGE_PX

        pixels = read_rgb(path)
        if pixels.shape != (IMAGE_PX, IMAGE_PX, 3):
            raise InputError(
                f"{path}: the synthetic benchmark's extractor reads {IMAGE_PX}×{IMAGE_PX} renders, "
                f"found {pixels.shape[1]}×{pixels.shape[0]}; for photos use CLIP features "
                "(features='clip' with the CLIP weights)"
            )
        return pixels

    def image(self, path: Path) -> np.ndarray:
        return self.extractor.image_features(self._pixels(path))

    def video(self, frames: Sequence[Path]) -> np.ndarray:
        return self.extractor.frame_features(np.stack([self._pixels(p) for p in frames]))


class ClipFeatures:
    """The project's Flax CLIP: RN101 grids for images, ViT-B/32 embeddings for frames."""

    name = "clip"

    def __init__(
        self,
        image_weights: str | None,
        video_weights: str | None,
        image_size: int = 224,
        l2_normalize: bool = False,
    ):
        self.image_weights, self.video_weights = image_weights, video_weights
        self.image_size, self.l2_normalize = image_size, l2_normalize

    @functools.cached_property
    def _resnet(self):
        import jax

        from vlpet_jax.data.extract.resnet import layer4_features, resnet_from_state_dict
        from vlpet_jax.data.extract.weights import load_state_dict

        if not self.image_weights:
            raise InputError("image features need CLIP RN101 weights (clip_weights=RN101.pt)")
        config, params = resnet_from_state_dict(
            load_state_dict(self.image_weights), str(self.image_weights)
        )
        return jax.jit(functools.partial(layer4_features, config, params))

    @functools.cached_property
    def _vit(self):
        import jax

        from vlpet_jax.data.extract.vit import image_embeddings, vit_from_state_dict
        from vlpet_jax.data.extract.weights import load_state_dict

        if not self.video_weights:
            raise InputError("video features need CLIP ViT-B/32 weights (clip_weights=ViT-B-32.pt)")
        config, params = vit_from_state_dict(
            load_state_dict(self.video_weights), str(self.video_weights)
        )
        return config.input_resolution, jax.jit(functools.partial(image_embeddings, config, params))

    def image(self, path: Path) -> np.ndarray:
        from vlpet_jax.data.extract.preprocess import load_image

        try:
            pixels = load_image(path, self.image_size)
        except ValueError as err:
            raise InputError(str(err)) from err
        grid = np.asarray(self._resnet(pixels[None]))[0]
        return grid.reshape(-1, grid.shape[-1]).astype(np.float16)  # row-major, as stored

    def video(self, frames: Sequence[Path]) -> np.ndarray:
        from vlpet_jax.data.extract.preprocess import load_image

        size, encode = self._vit
        try:
            pixels = np.stack([load_image(p, size) for p in frames])
        except ValueError as err:
            raise InputError(str(err)) from err
        feats = np.asarray(encode(pixels), np.float32)
        if self.l2_normalize:
            feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
        return feats


class FileVisuals:
    """A `VisualSource` (data/batching.py) over files: keys are image paths or video folders,
    features extracted once per key and pooled as the feature stores pool them."""

    def __init__(self, extractor: Any, kind: str, num_video_tokens: int, feat_dim: int):
        self.extractor, self.kind = extractor, kind
        self.num_video_tokens, self.feat_dim = num_video_tokens, feat_dim
        self._tokens: dict[str, VisualTokens] = {}

    def add(self, key: str) -> None:
        if key in self._tokens:
            return
        if self.kind == "video":
            feats = self.extractor.video(frame_files(key))
            tokens = video_tokens(feats, self.num_video_tokens)
        else:
            tokens = image_tokens(self.extractor.image(Path(key)))
        if tokens.feats.shape[-1] != self.feat_dim:
            raise InputError(
                f"{key}: features of width {tokens.feats.shape[-1]}, the model reads "
                f"{self.feat_dim} (config.model.feat_dim)"
            )
        self._tokens[key] = tokens

    def __call__(self, feature_keys: Sequence[str]) -> VisualTokens:
        if len(feature_keys) == 2:
            return concat_images(self._tokens[feature_keys[0]], self._tokens[feature_keys[1]])
        return self._tokens[feature_keys[0]]

    def empty(self, num_images: int = 1) -> VisualTokens:
        if self.kind == "video":
            return video_tokens(np.zeros((1, self.feat_dim), np.float32), self.num_video_tokens)
        one = image_tokens(np.zeros((49, self.feat_dim), np.float16))
        return one if num_images == 1 else concat_images(one, one)


# ---------------------------------------------------------------- texts


def question_text(prompt: str, question: str) -> str:
    """VQA, GQA and NLVR2: `prompt + sentence`, as `read_vqa` / `read_gqa` / `read_nlvr2`."""
    return f"{prompt}{question}"


def video_question_text(
    prompt: str,
    question: str,
    choices: Sequence[str],
    subtitles: str = "",
    ts: Any = None,
) -> str:
    """TVQA / How2QA: `[Subs] … [Q] … [TS] (…) [Choices] a0: …. … <prompt>`, as
    `read_multiple_choice` builds it (subtitles already joined)."""
    sent = " ".join([f"[Subs] {subtitles}", f"[Q] {question.strip()}", format_ts(ts),
                     format_choices(list(choices))])  # fmt: skip
    return f"{sent} {prompt}"


def check_choices(task: str, choices: Sequence[str]) -> None:
    wanted = NUM_CHOICES[task]
    if len(choices) != wanted:
        raise InputError(
            f"{task} asks with {wanted} choices (a0..a{wanted - 1}), got {len(choices)}"
        )


def as_list(value: str | Sequence[str] | None) -> list[str]:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


def subtitle_string(subtitles: str | Sequence[str] | Mapping[str, Any] | None) -> str:
    """Free text, or lines (stripped and space-joined, as the readers join subtitle lines)."""
    if subtitles is None:
        return ""
    if isinstance(subtitles, str):
        return subtitles.strip()
    return " ".join(str(line).strip() for line in subtitles)
