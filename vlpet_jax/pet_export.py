"""Share what you trained: the PET directory and the original code's PyTorch format.

    vlpet_jax.pet_export.export_pet(params, config, "my_pet/")        # pet_model.safetensors + json
    params = vlpet_jax.init_params(config, jax.random.key(seed), pet_dir="my_pet/")
    vlpet_jax.pet_export.export_original(params, config, "VLBart_mine.pth")

The PET directory holds the trainable leaves only (a few MB for VL-PET on a base-size backbone)
and a description of the model they belong to (`checkpoints/pet_files.py`); loading it checks the
description against the config and says what differs: another method, other sizes, another
backbone, other trainability rules, or other frozen weights (a fingerprint of the frozen tree: the
added vocabulary rows and a backbone without a checkpoint are random, from the run's init seed).
The original format is the whole model under the released names (`checkpoints/export_official.py`),
which the original VL-PET / VL-Adapter code loads, and `launch.convert` imports back.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
from collections.abc import Sequence
from typing import Any

import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax import api
from vlpet_jax.checkpoints import pet_files
from vlpet_jax.checkpoints.export_official import (
    IMAGE_TASK_ALIASES,
    VIDEO_TASK_ALIASES,
    official_state_dict,
    save_official,
)
from vlpet_jax.pet.trainability import trainable_paths


def project_version() -> str:
    try:
        return importlib.metadata.version("vlpet_jax")
    except importlib.metadata.PackageNotFoundError:  # run from a checkout without installing
        return "unknown"


def describe(config: api.Config) -> dict[str, Any]:
    """What a PET directory of this config's model says about itself (pet_config.json)."""
    backbone = api.backbone_config(config)
    pet = config.pet.to_dict()
    pet.pop("rules", None)
    method = pet.pop("method")
    return {
        "method": method,
        "pet": pet,
        "rules": [[regex, bool(trainable)] for regex, trainable in api.trainability_rules(config)],
        "backbone": {
            "name": config.model.backbone,
            "checkpoint": config.model.checkpoint,
            "config": dataclasses.asdict(backbone),
        },
        "vocab_size": backbone.vocab_size,
        "feat_dim": config.model.feat_dim,
        "num_images": config.model.num_images,
        "modality": config.modality,
        "init_seed": int(config.train.seed),
        "project_version": project_version(),
    }


def _split_flat(params: Any, config: api.Config) -> tuple[dict, dict]:
    decision = trainable_paths(params, api.trainability_rules(config))
    flat = flatten_dict(dict(params), sep="/")
    trainable = {p: v for p, v in flat.items() if decision[p]}
    frozen = {p: v for p, v in flat.items() if not decision[p]}
    return trainable, frozen


def export_pet(
    params: Any, config: api.Config, out_dir: str | os.PathLike, overwrite: bool = False
) -> str:
    """Write the trainable part of `params` (a full tree of `config`'s model) to `out_dir`."""
    trainable, frozen = _split_flat(params, config)
    description = describe(config)
    description["frozen_fingerprint"] = pet_files.frozen_fingerprint(frozen)
    description["trainable_params"] = int(sum(np.size(v) for v in trainable.values()))
    description["config"] = json.loads(config.to_json_best_effort())
    weights = {p: np.asarray(v) for p, v in trainable.items()}
    return pet_files.save_pet_dir(out_dir, weights, description, overwrite=overwrite)


def load_pet(
    params: Any, config: api.Config, pet_dir: str | os.PathLike, check_backbone: bool = True
) -> dict[str, Any]:
    """`params` (from `init_params(config, ...)`) with its trainable leaves read from `pet_dir`.

    Raises `PetDirError` when the directory belongs to another method, sizes, backbone or rules,
    and (unless `check_backbone=False`) when the frozen leaves differ from those it was trained
    with."""
    found = pet_files.read_description(pet_dir)
    expected = describe(config)
    pet_files.check_description(pet_dir, found, expected)
    weights = pet_files.read_weights(pet_dir)
    trainable, frozen = _split_flat(params, config)
    shapes = {p: tuple(v.shape) for p, v in trainable.items()}
    pet_files.check_weights(pet_dir, found, expected, shapes, weights)
    if check_backbone and pet_files.frozen_fingerprint(frozen) != found["frozen_fingerprint"]:
        raise pet_files.PetDirError(
            f"{os.fspath(pet_dir)}: the frozen parameters differ from those this PET model was "
            f"trained with (backbone checkpoint {found['backbone']['checkpoint']!r}, init seed "
            f"{found['init_seed']}; here {config.model.checkpoint!r}). Load it on the backbone "
            "it was trained on, with the same seed (random parts: added vocabulary rows, or the "
            "whole backbone without a checkpoint), or pass check_backbone=False"
        )
    flat = flatten_dict(dict(params), sep="/")
    for path, value in weights.items():
        flat[path] = jnp.asarray(value, dtype=flat[path].dtype)
    return unflatten_dict(flat, sep="/")


def default_task_aliases(config: api.Config) -> tuple[str, ...]:
    """Every task of the family: the original code keys its single adapters by task name."""
    return VIDEO_TASK_ALIASES if config.modality == "video" else IMAGE_TASK_ALIASES


def export_original(
    params: Any,
    config: api.Config,
    path: str | os.PathLike,
    task_aliases: Sequence[str] | None = None,
) -> str:
    """Write the whole model in the released PyTorch format (`.pth`; `.safetensors` also works)."""
    backbone = api.backbone_config(config)
    method = api.pet_method(config, backbone)
    state = official_state_dict(
        params,
        backbone,
        config.pet.method,
        method.hooks,
        tuple(task_aliases or default_task_aliases(config)),
    )
    return save_official(state, path)
