"""A backbone's pretrained visual embedding, saved next to its Hugging Face weights.

A vision-and-language backbone (VL-T5's, or the demo's tiny ones after their image-caption
pretraining) comes with the visual embedding it was pretrained with. Hugging Face's `T5` / `BART`
classes have no such module, so it is kept out of `model.safetensors` (which stays loadable by
`from_pretrained` and by our strict loader) in a second file of the same directory,
`visual_embedding.safetensors`, under VL-T5's own names and PyTorch layouts (SPEC.md §9:
`encoder.visual_embedding.feat_embedding.0.weight`, ...). `api.init_params` starts the (trainable)
visual embedding from it when the checkpoint directory has one, and from the released code's
initialisation otherwise.
"""

from __future__ import annotations

import os
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax.checkpoints.official_names import visual_prefix
from vlpet_jax.models.config import BackboneConfig

FILE = "visual_embedding.safetensors"


def visual_name_map(cfg: BackboneConfig) -> dict[str, tuple[str, bool]]:
    """`{our path under visual_embedding/: (VL-T5 key, transpose)}`."""
    prefix = visual_prefix(cfg)
    names = {"img_order_embedding": (f"{prefix}img_order_embedding.weight", False)}
    for ours, theirs in (("feat", "feat_embedding"), ("box", "absolute_vis_pos_embedding")):
        names[f"{ours}_proj/kernel"] = (f"{prefix}{theirs}.0.weight", True)
        names[f"{ours}_proj/bias"] = (f"{prefix}{theirs}.0.bias", False)
        names[f"{ours}_norm/scale"] = (f"{prefix}{theirs}.1.weight", False)
        if cfg.family == "bart":  # LayerNorm; T5's RMSNorm has no bias
            names[f"{ours}_norm/bias"] = (f"{prefix}{theirs}.1.bias", False)
    return names


def save_visual_embedding(cfg: BackboneConfig, params: Any, out_dir: str | os.PathLike) -> str:
    """Write the `visual_embedding` subtree `params` to `<out_dir>/visual_embedding.safetensors`
    (written to a temporary name, then renamed); returns the file's path."""
    from safetensors.numpy import save_file

    flat = flatten_dict(dict(params), sep="/")
    names = visual_name_map(cfg)
    if set(flat) != set(names):
        raise KeyError(
            f"save_visual_embedding: expected leaves {sorted(names)}, found {sorted(flat)}"
        )
    tensors = {}
    for path, (key, transpose) in names.items():
        array = np.asarray(flat[path], dtype=np.float32)
        tensors[key] = np.ascontiguousarray(array.T if transpose else array)
    path = os.path.join(os.fspath(out_dir), FILE)
    tmp = path + ".tmp"
    save_file(tensors, tmp, metadata={"format": "pt"})
    os.replace(tmp, path)
    return path


def load_visual_embedding(
    checkpoint_dir: str | os.PathLike, cfg: BackboneConfig, like: Any
) -> dict[str, Any] | None:
    """The saved visual embedding of `checkpoint_dir` as a subtree shaped like `like` (the freshly
    initialised one, whose dtypes it takes), or None when the directory has none. Strict: a
    missing or unknown key, or a shape that differs from `like`'s, is an error."""
    from safetensors.numpy import load_file

    path = os.path.join(os.fspath(checkpoint_dir), FILE)
    if not os.path.isfile(path):
        return None
    tensors = load_file(path)
    names = visual_name_map(cfg)
    wanted = {key for key, _ in names.values()}
    missing, unknown = sorted(wanted - set(tensors)), sorted(set(tensors) - wanted)
    if missing or unknown:
        raise ValueError(
            f"{path}: keys do not match a {cfg.family} visual embedding; missing: "
            f"{missing or 'none'}; unexpected: {unknown or 'none'}"
        )
    reference = flatten_dict(dict(like), sep="/")
    out = {}
    for ours, (key, transpose) in names.items():
        array = tensors[key].T if transpose else tensors[key]
        expected = reference[ours]
        if array.shape != tuple(expected.shape):
            raise ValueError(
                f"{path}: {key} has shape {array.shape} (as ours), the model expects "
                f"{tuple(expected.shape)} for visual_embedding/{ours}"
            )
        out[ours] = np.asarray(array, dtype=expected.dtype)
    return unflatten_dict(out, sep="/")
