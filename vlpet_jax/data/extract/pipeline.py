"""Files in, feature files out, in exactly the layouts the feature stores read (SPEC.md §2).

- :func:`extract_image_features`: ``<image_dir>/<img_id>.<jpg|png|…>`` -> ``<out_dir>/<img_id>.h5``
  with dataset ``<img_id>/features`` = the CLIP ResNet layer-4 map, row-major, float16: (49, 2048)
  for RN101 at 224 px.
- :func:`extract_video_features`: ``<frames_dir>/<vid_name>/<frame>.<jpg|png|…>`` (frames in file
  name order, already sampled from the video, e.g. with ffmpeg) -> ``<out_dir>/<vid_name>.npz`` with
  ``features`` = the (T, 512) CLIP ViT-B/32 image embeddings, float32 (``l2_normalize`` optionally
  scales each row to unit length, as CLIP does before its similarity).

Each output file is written to a temporary name and renamed, so an interrupted run leaves only
complete files, and a re-run skips them (unless ``overwrite``). Batches have one fixed shape (the
last is zero-padded) so the encoder compiles once.
"""

from __future__ import annotations

import functools
import os
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

import h5py
import jax
import numpy as np

from vlpet_jax.data.extract.preprocess import IMAGE_SUFFIXES, load_image
from vlpet_jax.data.extract.resnet import layer4_features, resnet_from_state_dict
from vlpet_jax.data.extract.vit import image_embeddings, vit_from_state_dict
from vlpet_jax.data.extract.weights import load_state_dict

Log = Callable[[str], None]


def _image_files(directory: Path) -> list[Path]:
    if not directory.is_dir():
        raise FileNotFoundError(f"directory not found: {directory}")
    files = sorted(p for p in directory.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
    stems = [p.stem for p in files]
    duplicates = sorted({s for s in stems if stems.count(s) > 1})
    if duplicates:
        raise ValueError(f"{directory}: several images share the id(s) {duplicates}")
    return files


def _atomic(path: Path, write: Callable[[Path], None]) -> None:
    tmp = path.with_name(f".{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def write_image_features(out_dir: Path, img_id: str, feats: np.ndarray) -> Path:
    """``<out_dir>/<img_id>.h5`` with dataset ``<img_id>/features`` (SPEC.md §2), atomically."""
    path = out_dir / f"{img_id}.h5"

    def write(tmp: Path) -> None:
        with h5py.File(tmp, "w") as f:
            f.create_dataset(f"{img_id}/features", data=feats)

    _atomic(path, write)
    return path


def write_video_features(out_dir: Path, vid_name: str, feats: np.ndarray) -> Path:
    """``<out_dir>/<vid_name>.npz`` with array ``features`` (VALUE layout), atomically."""
    path = out_dir / f"{vid_name}.npz"

    def write(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez(f, features=feats)

    _atomic(path, write)
    return path


def _padded_batches(images: np.ndarray, batch_size: int) -> Iterator[tuple[np.ndarray, int]]:
    for start in range(0, len(images), batch_size):
        chunk = images[start : start + batch_size]
        pad = np.zeros((batch_size - len(chunk), *chunk.shape[1:]), chunk.dtype)
        yield np.concatenate([chunk, pad]), len(chunk)


def _run_batched(encode: Callable, images: np.ndarray, batch_size: int) -> np.ndarray:
    outputs = [np.asarray(encode(b))[:n] for b, n in _padded_batches(images, batch_size)]
    return np.concatenate(outputs)


def extract_image_features(
    image_dir: str | Path,
    weights: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 32,
    image_size: int = 224,
    overwrite: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """CLIP ResNet layer-4 grids of every image in ``image_dir`` (module docstring)."""
    files = _image_files(Path(image_dir))
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [p for p in files if overwrite or not (out_dir / f"{p.stem}.h5").exists()]
    config, params = resnet_from_state_dict(load_state_dict(weights), str(weights))
    encode = jax.jit(functools.partial(layer4_features, config, params))
    started, shape = time.perf_counter(), None
    for start in range(0, len(todo), batch_size):
        chunk = todo[start : start + batch_size]
        images = np.stack([load_image(p, image_size) for p in chunk])
        grids = _run_batched(encode, images, batch_size)
        for path, grid in zip(chunk, grids):
            feats = grid.reshape(-1, grid.shape[-1]).astype(np.float16)  # row-major h, w
            write_image_features(out_dir, path.stem, feats)
            shape = feats.shape
        if log is not None:
            log(f"{start + len(chunk)}/{len(todo)} images")
    return {
        "kind": "image",
        "written": len(todo),
        "skipped": len(files) - len(todo),
        "feature_shape": list(shape) if shape else None,
        "model": f"ModifiedResNet layers={list(config.layers)} width={config.width}",
        "seconds": round(time.perf_counter() - started, 3),
    }


def extract_video_features(
    frames_dir: str | Path,
    weights: str | Path,
    out_dir: str | Path,
    *,
    batch_size: int = 32,
    l2_normalize: bool = False,
    overwrite: bool = False,
    log: Log | None = None,
) -> dict[str, Any]:
    """CLIP ViT embeddings of every frame of every video folder in ``frames_dir``."""
    frames_dir = Path(frames_dir)
    if not frames_dir.is_dir():
        raise FileNotFoundError(f"directory not found: {frames_dir}")
    videos: Sequence[Path] = sorted(p for p in frames_dir.iterdir() if p.is_dir())
    if not videos:
        raise ValueError(f"{frames_dir}: no video folders (expected <vid_name>/<frame>.jpg)")
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    todo = [v for v in videos if overwrite or not (out_dir / f"{v.name}.npz").exists()]
    config, params = vit_from_state_dict(load_state_dict(weights), str(weights))
    encode = jax.jit(functools.partial(image_embeddings, config, params))
    started = time.perf_counter()
    for k, video in enumerate(todo):
        frames = _image_files(video)
        if not frames:
            raise ValueError(f"{video}: no frame images ({', '.join(IMAGE_SUFFIXES)})")
        images = np.stack([load_image(p, config.input_resolution) for p in frames])
        feats = _run_batched(encode, images, batch_size).astype(np.float32)
        if l2_normalize:
            feats /= np.linalg.norm(feats, axis=-1, keepdims=True)
        write_video_features(out_dir, video.name, feats)
        if log is not None and (k + 1) % 100 == 0:
            log(f"{k + 1}/{len(todo)} videos")
    return {
        "kind": "video",
        "written": len(todo),
        "skipped": len(videos) - len(todo),
        "feature_dim": config.output_dim,
        "model": f"ViT patch={config.patch_size} width={config.width} layers={config.layers}",
        "seconds": round(time.perf_counter() - started, 3),
    }
