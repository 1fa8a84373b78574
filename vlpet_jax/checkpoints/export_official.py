"""Our parameter tree -> a state dict in the released PyTorch format (the reverse of `official.py`).

    state = official_state_dict(params, backbone_cfg, "vl_pet_large", hooks)
    save_official(state, "VLBart_ours.pth")   # torch.load(...) reads it; so does the original code

The name table is the importer's (`official_names.py`, SPEC.md §9), walked backwards: every leaf
is written under its released key, in the PyTorch layout (`Linear.weight` is (out, in), BART's
`final_logits_bias` is (1, vocab), VL-PET's multi-head down projection is split back into its
N_h heads), with the duplicates the original trainer saves: the `module.` prefix of its
DistributedDataParallel wrapper, the tied token table under all five names, and every "single"
adapter or LoRA tensor once per task alias. The whole model is written, frozen backbone included,
as the original trainer does: its loader expects one file with everything.

Torch is needed only to write a `.pth` (imported when that happens); `.safetensors` needs none.
"""

from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict

from vlpet_jax.checkpoints.official import DDP_PREFIX
from vlpet_jax.checkpoints.official_names import TASK, official_names
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks

# The task aliases of the released image checkpoints (SPEC.md §9) and of the video ones (the
# released video trainer keys its modules by the VALUE task names).
IMAGE_TASK_ALIASES = ("vqa", "gqa", "nlvr", "caption")
VIDEO_TASK_ALIASES = ("tvqa", "how2qa", "tvc", "yc2c")


def official_state_dict(
    params: Mapping[str, Any],
    backbone_cfg: BackboneConfig,
    method_name: str,
    hooks: PetHooks,
    task_aliases: Sequence[str] = IMAGE_TASK_ALIASES,
    *,
    ddp_prefix: bool = True,
) -> dict[str, np.ndarray]:
    """`{released key: float32 array}` for every tensor the original trainer saves.

    Copies of one tensor (tied table, task aliases) are the *same* array object, so a writer
    that deduplicates storage (torch) stores each once.
    """
    if not task_aliases:
        raise ValueError("task_aliases is empty: a single adapter is saved under each task alias")
    flat = flatten_dict(dict(params), sep="/")
    names = official_names(method_name, backbone_cfg, hooks)
    missing, extra = sorted(names.keys() - flat.keys()), sorted(flat.keys() - names.keys())
    if missing or extra:
        raise ValueError(
            f"the parameter tree is not a {method_name!r} model of this backbone: missing "
            f"{missing[:10] or 'none'}; without a released name {extra[:10] or 'none'}"
        )
    prefix = DDP_PREFIX if ddp_prefix else ""
    out: dict[str, np.ndarray] = {}
    for path, src in names.items():
        array = np.asarray(flat[path], np.float32)
        if src.flatten:
            array = array.reshape(1, -1)
        if src.transpose:
            array = array.T
        if array.shape[0] % len(src.parts):
            raise ValueError(f"{path}: {array.shape[0]} rows do not split into {len(src.parts)}")
        for part, value in zip(src.parts, np.split(array, len(src.parts), axis=0)):
            value = np.ascontiguousarray(value)
            for template in part:
                keys = (
                    [template.replace(TASK, t) for t in task_aliases]
                    if TASK in template
                    else [template]
                )
                for key in keys:
                    if prefix + key in out:
                        raise RuntimeError(f"two of our parameters map to the released key {key}")
                    out[prefix + key] = value
    return out


def save_official(state: Mapping[str, np.ndarray], path: str | os.PathLike) -> str:
    """Write `state` as `torch.save` does (`.pth`/`.pt`/`.bin`) or as `.safetensors`; atomic."""
    path = os.path.abspath(os.fspath(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = f"{path}.tmp-{os.getpid()}"
    if path.endswith(".safetensors"):
        from safetensors.numpy import save_file

        # safetensors refuses shared tensors: each copy is written on its own.
        save_file({k: np.array(v) for k, v in state.items()}, tmp)
    else:
        try:
            import torch
        except ImportError as err:
            raise ImportError(
                f"{path}: writing the original PyTorch format needs torch (pip install torch); "
                "or write a .safetensors file"
            ) from err
        tensors: dict[int, Any] = {}  # one torch tensor per distinct array: copies share storage
        torch_state = {}
        for key, value in state.items():
            if id(value) not in tensors:
                tensors[id(value)] = torch.from_numpy(np.array(value))
            torch_state[key] = tensors[id(value)]
        torch.save(torch_state, tmp)
    os.replace(tmp, path)
    return path
