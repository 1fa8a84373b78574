"""Reading a user-supplied CLIP checkpoint into NumPy, and filling a Flax tree from torch names.

OpenAI distributes CLIP as TorchScript archives (``RN101.pt``, ``ViT-B-32.pt``) whose state dict
holds the image encoder under ``visual.*`` (fp16). We also accept a plain ``torch.save``d state
dict, ``.safetensors`` and ``.npz`` with the same key names, with or without the ``visual.`` prefix
(an image-encoder-only export). torch is imported only for ``.pt`` / ``.pth`` / ``.bin``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import jax
import numpy as np

StateDict = dict[str, np.ndarray]
VISUAL_PREFIX = "visual."
TORCH_SUFFIXES = (".pt", ".pth", ".bin")


def _torch_state_dict(path: Path) -> Mapping[str, Any]:
    try:
        import torch
    except ImportError as err:
        raise ImportError(
            f"{path}: reading a PyTorch checkpoint needs torch (pip install torch), or convert it "
            "to .safetensors / .npz with the same key names"
        ) from err
    try:
        loaded: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # TorchScript archives (OpenAI's release) are not plain pickles
        try:
            loaded = torch.jit.load(str(path), map_location="cpu")
        except Exception as err:
            raise ValueError(
                f"{path}: neither a torch state dict nor a TorchScript archive ({err})"
            ) from err
    if hasattr(loaded, "state_dict"):
        loaded = loaded.state_dict()
    if isinstance(loaded, Mapping) and "state_dict" in loaded:
        loaded = loaded["state_dict"]
    if not isinstance(loaded, Mapping):
        raise ValueError(f"{path}: expected a state dict, found {type(loaded).__name__}")
    return {
        k: v.float().numpy() if v.dtype == torch.bfloat16 else v.numpy() for k, v in loaded.items()
    }


def load_state_dict(path: str | Path) -> StateDict:
    """The image-encoder tensors of a CLIP checkpoint, keyed without the ``visual.`` prefix."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"CLIP weights not found: {path}")
    suffix = path.suffix.lower()
    if suffix == ".safetensors":
        from safetensors.numpy import load_file

        tensors: Mapping[str, np.ndarray] = load_file(path)
    elif suffix == ".npz":
        with np.load(path) as archive:
            tensors = {k: archive[k] for k in archive.files}
    elif suffix in TORCH_SUFFIXES:
        tensors = _torch_state_dict(path)
    else:
        raise ValueError(
            f"{path}: unknown weight format '{suffix}'; expected .pt/.pth/.bin (torch), "
            ".safetensors or .npz"
        )
    visual = {k[len(VISUAL_PREFIX) :]: v for k, v in tensors.items() if k.startswith(VISUAL_PREFIX)}
    return visual or {k: np.asarray(v) for k, v in tensors.items()}


def fill_tree(
    state: Mapping[str, np.ndarray],
    abstract: Any,
    rename: Callable[[str], tuple[tuple[str, ...], Callable[[np.ndarray], np.ndarray]] | None],
    source: str,
) -> dict[str, Any]:
    """Build a float32 param tree shaped like ``abstract`` from torch-named tensors.

    ``rename(key)`` gives the tree path of a torch key and how to lay it out (e.g. transpose a
    conv kernel), or None for keys the encoder does not use (attention pooling, BN counters).
    Every leaf of ``abstract`` must be filled with its exact shape, and no key may be left over;
    otherwise the error lists what is missing, unexpected or misshapen.
    """
    expected = {
        tuple(p.key for p in path): leaf.shape
        for path, leaf in jax.tree_util.tree_flatten_with_path(abstract)[0]
    }
    tree: dict[str, Any] = {}
    filled: set[tuple[str, ...]] = set()
    unexpected, misshapen = [], []
    for key, value in state.items():
        target = rename(key)
        if target is None:
            continue
        path, layout = target
        if path not in expected:
            unexpected.append(key)
            continue
        array = layout(np.asarray(value, np.float32))
        if array.shape != expected[path]:
            misshapen.append(f"{key}: {array.shape} for {'/'.join(path)} {expected[path]}")
            continue
        node = tree
        for name in path[:-1]:
            node = node.setdefault(name, {})
        node[path[-1]] = array
        filled.add(path)
    missing = sorted("/".join(p) for p in set(expected) - filled)
    if missing or unexpected or misshapen:
        raise ValueError(
            f"{source}: the weights do not fit the model. missing: {missing[:8] or 'none'}"
            f"{' …' if len(missing) > 8 else ''}; unexpected: {unexpected[:8] or 'none'}; "
            f"wrong shape: {misshapen[:8] or 'none'}"
        )
    return tree


def conv_kernel(weight: np.ndarray) -> np.ndarray:
    """torch (out, in, kh, kw) -> Flax (kh, kw, in, out)."""
    return weight.transpose(2, 3, 1, 0)


def dense_kernel(weight: np.ndarray) -> np.ndarray:
    """torch Linear (out, in) -> Flax Dense (in, out)."""
    return weight.T


def identity(array: np.ndarray) -> np.ndarray:
    return array
