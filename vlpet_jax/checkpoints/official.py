"""Released PyTorch VL-PET / VL-Adapter / LoRA checkpoints -> our `VLModel` parameter tree.

    params = official.load("VLBart_VL-PET-large.pth", backbone_cfg, "vl_pet_large", pet_sizes)
    logits = VLModel(backbone_cfg, get_method("vl_pet_large", backbone_cfg, pet_sizes).hooks)
        .apply({"params": params}, batch)

Key names and duplicates: SPEC.md §9 and `official_names.py`. The original trainer saves the
`state_dict()` of a DistributedDataParallel wrapper (every key starts with `module.`) and loads
it non-strictly. We are strict: every leaf of our tree must be found, every tensor in the file
must be used, duplicate copies must be equal and shapes must agree, and each failure names the
file, the keys and both shapes, so a wrong method, size or backbone is reported as such instead
of silently leaving a module at its initial value.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax.checkpoints.official_names import (
    TASK,
    NameTable,
    Source,
    official_names,
    visual_prefix,
)
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import get_method

DDP_PREFIX = "module."
_LIST_LIMIT = 40  # keys listed per error; the count is always given


class OfficialCheckpointError(ValueError):
    """The file is not a released checkpoint of the requested method, backbone and sizes."""


class OfficialStateDict:
    """A released state dict (`.pth`/`.pt`/`.bin` via torch, or `.safetensors`), read lazily.

    Keys are stored without the DDP `module.` prefix. Tensors are read one at a time (torch files
    are memory-mapped), so importing never holds two copies of the model.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = os.fspath(path)
        if not os.path.isfile(self.path):
            raise FileNotFoundError(f"{self.path}: official checkpoint not found")
        self.is_safetensors = self.path.endswith(".safetensors")
        raw_keys = self._safetensors_keys() if self.is_safetensors else self._torch_keys()
        self._raw_key: dict[str, str] = {}
        for raw in raw_keys:
            key = raw.removeprefix(DDP_PREFIX)
            if key in self._raw_key:
                raise OfficialCheckpointError(
                    f"{self.path}: keys {self._raw_key[key]!r} and {raw!r} both map to {key!r} "
                    f"once the {DDP_PREFIX!r} prefix is stripped"
                )
            self._raw_key[key] = raw

    def _safetensors_keys(self) -> list[str]:
        from safetensors import safe_open

        with safe_open(self.path, framework="numpy") as f:
            return list(f.keys())

    def _torch_keys(self) -> list[str]:
        try:
            import torch
        except ImportError as err:
            raise ImportError(
                f"{self.path}: reading a PyTorch checkpoint needs torch (pip install torch), or "
                "convert it to .safetensors first"
            ) from err
        try:
            state = torch.load(self.path, map_location="cpu", mmap=True, weights_only=True)
        except RuntimeError as err:
            if "mmap" not in str(err):
                raise
            # Files written with the legacy (pre-zip) serialisation cannot be memory-mapped.
            state = torch.load(self.path, map_location="cpu", weights_only=True)
        if not isinstance(state, Mapping) or not all(
            isinstance(v, torch.Tensor) for v in state.values()
        ):
            raise OfficialCheckpointError(
                f"{self.path}: expected a state dict (a mapping of names to tensors), found "
                f"{type(state).__name__}"
            )
        self._torch_state = state
        return list(state)

    def keys(self) -> set[str]:
        return set(self._raw_key)

    def __contains__(self, key: str) -> bool:
        return key in self._raw_key

    def shape(self, key: str) -> tuple[int, ...]:
        raw = self._raw_key[key]
        if self.is_safetensors:
            from safetensors import safe_open

            with safe_open(self.path, framework="numpy") as f:
                return tuple(f.get_slice(raw).get_shape())
        return tuple(self._torch_state[raw].shape)

    def get(self, key: str) -> np.ndarray:
        """The tensor as NumPy; floating tensors as float32 (the checkpoints are fp32 or fp16)."""
        raw = self._raw_key[key]
        if self.is_safetensors:
            from safetensors import safe_open

            with safe_open(self.path, framework="numpy") as f:
                array = f.get_tensor(raw)
        else:
            tensor = self._torch_state[raw]
            if tensor.is_floating_point():
                tensor = tensor.float()
            array = tensor.numpy()
        if np.issubdtype(array.dtype, np.floating):
            return array.astype(np.float32, copy=False)
        return array


# ---------------------------------------------------------------- key resolution


def _template_regex(template: str) -> re.Pattern[str]:
    return re.compile(re.escape(template).replace(re.escape(TASK), r"([^.]+)"))


def _present_copies(template: str, keys: set[str], by_task: dict[str, list[str]]) -> list[str]:
    if TASK not in template:
        return [template] if template in keys else []
    return by_task.get(template, [])


def _index_task_templates(names: NameTable, keys: set[str]) -> dict[str, list[str]]:
    """Each `{task}` template -> the checkpoint keys it matches (one per task alias), sorted."""
    templates = {t for src in names.values() for part in src.parts for t in part if TASK in t}
    if not templates:
        return {}
    # Group by the text before the placeholder so each key is tried against few templates.
    by_head: dict[str, list[str]] = {}
    for template in templates:
        by_head.setdefault(template.split(TASK)[0], []).append(template)
    found: dict[str, list[str]] = {t: [] for t in templates}
    compiled = {t: _template_regex(t) for t in templates}
    for key in keys:
        for head, group in by_head.items():
            if key.startswith(head):
                for template in group:
                    if compiled[template].fullmatch(key):
                        found[template].append(key)
    return {t: sorted(v) for t, v in found.items()}


def resolve_keys(names: NameTable, keys: set[str], source: str) -> dict[str, list[list[str]]]:
    """`{our path: [[present copies of part 0], ...]}`; raises listing missing and unknown keys."""
    by_task = _index_task_templates(names, keys)
    resolved: dict[str, list[list[str]]] = {}
    missing: list[str] = []
    used: set[str] = set()
    for path, src in names.items():
        parts = []
        for part in src.parts:
            present = [k for t in part for k in _present_copies(t, keys, by_task)]
            if not present:
                missing.append(f"{part[0]} (for {path})")
            used.update(present)
            parts.append(present)
        resolved[path] = parts
    unknown = sorted(keys - used)
    if missing or unknown:
        raise OfficialCheckpointError(
            f"{source}: the checkpoint does not match the requested method and backbone; "
            f"{len(missing)} missing keys: {_listing(missing)}; {len(unknown)} unknown keys: "
            f"{_listing(unknown)}"
        )
    return resolved


def _listing(items: list[str]) -> str:
    if not items:
        return "none"
    shown = ", ".join(items[:_LIST_LIMIT])
    return shown + (f", ... ({len(items) - _LIST_LIMIT} more)" if len(items) > _LIST_LIMIT else "")


# ---------------------------------------------------------------- assembling leaves


def _official_shape(src: Source, expected: tuple[int, ...]) -> str:
    """Our expected leaf shape written in the official layout, for error messages."""
    shape = expected[::-1] if src.transpose else expected
    if src.flatten:
        shape = (1, *shape)
    n = len(src.parts)
    if n > 1:
        return f"{n} parts of {(shape[0] // n, *shape[1:])}"
    return str(tuple(shape))


def _read_part(state: OfficialStateDict, copies: list[str], errors: list[str]) -> np.ndarray:
    """The first present copy; every other copy must be equal to it (SPEC.md §9)."""
    array = state.get(copies[0])
    for other in copies[1:]:
        value = state.get(other)
        if value.shape != array.shape:
            errors.append(
                f"{other!r} has shape {value.shape} but its copy {copies[0]!r} has {array.shape}"
            )
        elif not np.array_equal(value, array):
            diff = float(np.max(np.abs(value.astype(np.float64) - array)))
            errors.append(
                f"{other!r} differs from its copy {copies[0]!r} (max |difference| {diff:.3g}); "
                "a released checkpoint holds equal copies of tied and task-shared tensors"
            )
    return array


def _assemble(
    state: OfficialStateDict,
    path: str,
    src: Source,
    copies: list[list[str]],
    expected: tuple[int, ...],
    errors: list[str],
) -> np.ndarray | None:
    parts = [_read_part(state, part, errors) for part in copies]
    found = [p.shape for p in parts]
    if len(parts) > 1:
        if len({s[1:] for s in found}) != 1:
            errors.append(
                f"{[c[0] for c in copies]} (for {path}) have shapes {found} that do not stack "
                f"along axis 0; expected {_official_shape(src, expected)}"
            )
            return None
        array = np.concatenate(parts, axis=0)
    else:
        array = parts[0]
    if src.transpose:
        array = array.T
    if src.flatten:
        array = array.reshape(-1)
    if array.shape != tuple(expected):
        shown = found[0] if len(found) == 1 else f"{len(found)} parts of {found}"
        errors.append(
            f"{copies[0][0]!r} has shape {shown}, expected {_official_shape(src, expected)} "
            f"(our parameter {path} has shape {tuple(expected)})"
        )
        return None
    return np.ascontiguousarray(array)


def abstract_vl_params(
    cfg: BackboneConfig, hooks: PetHooks, num_images: int = 2, feat_dim: int = 2048
) -> dict[str, jax.ShapeDtypeStruct]:
    """Flat `{path: shape}` of `VLModel(cfg, hooks)`'s parameters, without allocating them."""
    model = VLModel(cfg, hooks, num_images=num_images)
    batch = {
        "input_ids": jnp.ones((1, 2), jnp.int32),
        "attention_mask": jnp.ones((1, 2), jnp.int32),
        "vis_feats": jnp.ones((1, 1, feat_dim), jnp.float32),
        "decoder_input_ids": jnp.ones((1, 2), jnp.int32),
        "task_ids": jnp.zeros((1,), jnp.int32),  # read only by task-conditioned methods
    }
    variables = jax.eval_shape(model.init, jax.random.key(0), batch)
    return flatten_dict(nn.unbox(variables["params"]), sep="/")


def _feat_dim(state: OfficialStateDict, cfg: BackboneConfig) -> int:
    """CLIP feature width (2048 images, 512 videos), read from `feat_embedding.0.weight`."""
    key = f"{visual_prefix(cfg)}feat_embedding.0.weight"
    if key in state and len(state.shape(key)) == 2:
        return state.shape(key)[1]
    return 2048  # the key is missing or malformed: the strict checks below report it


def load_official(
    path: str | os.PathLike,
    backbone_cfg: BackboneConfig,
    method_name: str,
    pet_sizes: Mapping[str, Any] | None = None,
    *,
    num_images: int = 2,
    param_dtype: Any = jnp.float32,
    place: Callable[[str, np.ndarray], jax.Array] | None = None,
) -> dict[str, Any]:
    """Read a released checkpoint into the parameter tree of `VLModel` for this method.

    Args:
      path: the `.pth` state dict saved by the original trainer (or a `.safetensors` of it).
      backbone_cfg: the backbone *after* the VL-T5 vocabulary resize (see `backbone_config_for`).
      method_name: a registered PET method with an official layout (`importable_methods()`).
      pet_sizes: the method's sizes (`config.pet`); must be those the checkpoint was trained with.
      num_images: rows of the image-order table (2 in every release).
      param_dtype: dtype of the returned leaves.
      place: `place(path, array) -> jax.Array`, e.g. to shard each leaf as it is read.
    """
    state = OfficialStateDict(path)
    method = get_method(method_name, backbone_cfg, pet_sizes)
    names = official_names(method_name, backbone_cfg, method.hooks)
    abstract = abstract_vl_params(
        backbone_cfg, method.hooks, num_images, _feat_dim(state, backbone_cfg)
    )
    uncovered = sorted(abstract.keys() - names.keys())
    extra = sorted(names.keys() - abstract.keys())
    if uncovered or extra:  # the name table and the model disagree: a bug on our side
        raise RuntimeError(
            f"official layout of {method_name!r} does not cover our tree: parameters without an "
            f"official name {uncovered[:20]}, names for absent parameters {extra[:20]}"
        )
    resolved = resolve_keys(names, state.keys(), state.path)
    place = place or (lambda _path, array: jnp.asarray(array))
    errors: list[str] = []
    flat: dict[str, Any] = {}
    for leaf, src in names.items():
        array = _assemble(state, leaf, src, resolved[leaf], tuple(abstract[leaf].shape), errors)
        if array is not None and not errors:
            flat[leaf] = place(leaf, array.astype(param_dtype))
    if errors:
        raise OfficialCheckpointError(
            f"{state.path}: {len(errors)} problems: " + "; ".join(errors[:_LIST_LIMIT])
        )
    return unflatten_dict(flat, sep="/")


def backbone_config_for(
    official_path: str | os.PathLike, backbone_checkpoint: str | os.PathLike
) -> BackboneConfig:
    """The backbone a released checkpoint was trained with: the architecture from the Hugging Face
    `config.json` in `backbone_checkpoint`, the vocabulary size from the checkpoint's (resized)
    token table, and for T5 a tied head unless the checkpoint's `lm_head` differs from it."""
    cfg = BackboneConfig.from_pretrained(backbone_checkpoint)
    state = OfficialStateDict(official_path)
    shared = "model.shared.weight" if cfg.family == "bart" else "shared.weight"
    if shared not in state:
        raise OfficialCheckpointError(
            f"{state.path}: no {shared!r}; is this a {cfg.family} checkpoint, as "
            f"{os.fspath(backbone_checkpoint)}/config.json says?"
        )
    cfg = cfg.replace(vocab_size=state.shape(shared)[0])
    if cfg.family == "t5" and "lm_head.weight" in state:
        tied = np.array_equal(state.get("lm_head.weight"), state.get(shared))
        cfg = cfg.replace(tie_word_embeddings=tied, scale_decoder_outputs=tied)
    return cfg


def load(
    path: str | os.PathLike,
    config: Any,
    method_name: str | None = None,
    pet_sizes: Mapping[str, Any] | None = None,
    **kwargs: Any,
) -> dict[str, Any]:
    """`load(path, config)` with an experiment config, or `load(path, backbone_cfg, method, sizes)`.

    The experiment-config form (DESIGN.md "Python API") builds exactly the tree `build_model(config)`
    uses: the backbone of `vlpet_jax.api.backbone_config` (a preset, or `config.model.checkpoint`'s
    `config.json`), the method and sizes of `config.pet`, `config.model.num_images`, and the dtypes
    `init_params` gives (frozen leaves in `config.model.frozen_dtype`).
    """
    if isinstance(config, BackboneConfig):
        if method_name is None:
            raise TypeError("load(path, backbone_cfg, method_name, pet_sizes): method_name missing")
        return load_official(path, config, method_name, pet_sizes, **kwargs)
    if method_name is not None or pet_sizes is not None:
        raise TypeError("load(path, config): the method and sizes come from config.pet")
    from vlpet_jax import api

    backbone = api.backbone_config(config)
    sizes = {k: v for k, v in config.pet.to_dict().items() if k not in ("method", "rules")}
    params = load_official(
        path,
        backbone,
        config.pet.method,
        sizes,
        num_images=config.model.num_images,
        param_dtype=api.dtype_of(config.model.param_dtype),
        **kwargs,
    )
    frozen_dtype = api.dtype_of(config.model.frozen_dtype)
    return api.cast_frozen(params, api.trainability_rules(config), frozen_dtype)
