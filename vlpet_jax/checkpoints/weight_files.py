"""Lazy, one-tensor-at-a-time access to the weight files of a Hugging Face checkpoint.

Supports `model.safetensors`, sharded safetensors with `model.safetensors.index.json`, and
`pytorch_model.bin` (sharded or not; needs torch). Tensors are read only when asked for, so a
loader that converts and places each tensor before reading the next never holds two copies of
the model.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable

import numpy as np

SAFETENSORS = "model.safetensors"
SAFETENSORS_INDEX = "model.safetensors.index.json"
TORCH_BIN = "pytorch_model.bin"
TORCH_BIN_INDEX = "pytorch_model.bin.index.json"


class WeightFiles:
    """Maps tensor names to the file holding them; reads tensors as float32/float16 NumPy."""

    def __init__(self, checkpoint_dir: str | os.PathLike):
        self.dir = os.fspath(checkpoint_dir)
        self._file_of: dict[str, str] = {}
        self._torch_shards: dict[str, dict] = {}
        self.kind = self._discover()

    def _discover(self) -> str:
        for index_name, kind in ((SAFETENSORS_INDEX, "safetensors"), (TORCH_BIN_INDEX, "torch")):
            index_path = os.path.join(self.dir, index_name)
            if os.path.isfile(index_path):
                with open(index_path) as f:
                    try:
                        weight_map = json.load(f)["weight_map"]
                    except (json.JSONDecodeError, KeyError) as err:
                        raise ValueError(
                            f"{index_path}: expected JSON with a 'weight_map' object ({err!r})"
                        ) from err
                for key, shard in weight_map.items():
                    self._file_of[key] = os.path.join(self.dir, shard)
                for shard in sorted(set(self._file_of.values())):
                    if not os.path.isfile(shard):
                        raise FileNotFoundError(f"{index_path}: lists shard {shard}, not found")
                if kind == "torch":
                    _require_torch(index_path)
                return kind
        single = os.path.join(self.dir, SAFETENSORS)
        if os.path.isfile(single):
            for key in self._safetensors_keys(single):
                self._file_of[key] = single
            return "safetensors"
        single = os.path.join(self.dir, TORCH_BIN)
        if os.path.isfile(single):
            _require_torch(single)
            for key in self._torch_shard(single):
                self._file_of[key] = single
            return "torch"
        raise FileNotFoundError(
            f"{self.dir}: no weights found; expected {SAFETENSORS}, {SAFETENSORS_INDEX}, "
            f"{TORCH_BIN} or {TORCH_BIN_INDEX}"
        )

    @staticmethod
    def _safetensors_keys(path: str) -> Iterable[str]:
        from safetensors import safe_open

        with safe_open(path, framework="numpy") as f:
            return list(f.keys())

    def _torch_shard(self, path: str) -> dict:
        # mmap keeps the shard on disk; tensors are materialised one at a time in `get`.
        if path not in self._torch_shards:
            import torch

            self._torch_shards[path] = torch.load(
                path, map_location="cpu", mmap=True, weights_only=True
            )
        return self._torch_shards[path]

    def keys(self) -> set[str]:
        return set(self._file_of)

    def __contains__(self, key: str) -> bool:
        return key in self._file_of

    def file_of(self, key: str) -> str:
        return self._file_of[key]

    def get(self, key: str) -> np.ndarray:
        if key not in self._file_of:
            raise KeyError(f"{self.dir}: tensor {key!r} is not in the checkpoint")
        path = self._file_of[key]
        if self.kind == "safetensors":
            from safetensors import safe_open

            with safe_open(path, framework="numpy") as f:
                return f.get_tensor(key)
        tensor = self._torch_shard(path)[key]
        if str(tensor.dtype) == "torch.bfloat16":
            tensor = tensor.float()
        return tensor.numpy()


def _require_torch(path: str) -> None:
    try:
        import torch  # noqa: F401
    except ImportError as err:
        raise ImportError(
            f"{path}: reading PyTorch .bin weights needs torch (pip install torch), or convert "
            "the checkpoint to safetensors"
        ) from err
