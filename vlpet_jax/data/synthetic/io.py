"""Byte-deterministic writers for the official file formats (SPEC.md §2, §6).

The same seed must give the same bytes (the tests hash every file), so nothing time-dependent may
reach a file: HDF5 is written without timestamps, and ``.npz`` archives are built here with a fixed
member date instead of ``numpy.savez`` (whose zip entries carry the current time).
"""

from __future__ import annotations

import io
import json
import zipfile
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import h5py
import numpy as np

_ZIP_DATE = (1980, 1, 1, 0, 0, 0)


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: Iterable[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_image_h5(directory: Path, img_id: str, feats: np.ndarray) -> Path:
    """``<directory>/<img_id>.h5`` with dataset ``<img_id>/features``, the CLIP release layout."""
    path = directory / f"{img_id}.h5"
    with h5py.File(path, "w", track_order=False) as f:
        f.create_dataset(f"{img_id}/features", data=feats, track_times=False)
    return path


def write_video_npz(directory: Path, vid_name: str, feats: np.ndarray) -> Path:
    """``<directory>/<vid_name>.npz`` with key ``features`` (VALUE release), byte-stable."""
    path = directory / f"{vid_name}.npz"
    buffer = io.BytesIO()
    np.lib.format.write_array(buffer, np.ascontiguousarray(feats), allow_pickle=False)
    info = zipfile.ZipInfo("features.npy", date_time=_ZIP_DATE)
    info.compress_type = zipfile.ZIP_STORED
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr(info, buffer.getvalue())
    return path
