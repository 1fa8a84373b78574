"""A trained PET model as a small shareable directory: `pet_model.safetensors` + `pet_config.json`.

    pet_dir/
      pet_model.safetensors   the trainable leaves only, keyed by their '/'-joined paths
      pet_config.json         what they belong to: method and sizes, backbone name and
                              architecture, trainability rules, vocabulary size, visual input,
                              the project version, and a fingerprint of the frozen parameters

Like PEFT's adapter files, the directory is loaded *on top of* the backbone it was trained on:
`vlpet_jax.init_params(config, rng, pet_dir=...)` builds the frozen tree from the config as usual
and replaces the trainable leaves with these. This module only reads and writes the files and
checks a directory against what the caller is about to build (`check_description`,
`check_weights`); building the
expected description from an experiment config is `vlpet_jax.pet_export`.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from vlpet_jax.checkpoints.atomic_dir import atomic_directory

WEIGHTS_FILE = "pet_model.safetensors"
CONFIG_FILE = "pet_config.json"
FORMAT = "vlpet_jax.pet_dir/1"
# Fields of pet_config.json that must agree with the model being built; each names what differs.
_ARCH_FIELDS = ("feat_dim", "num_images", "vocab_size")


class PetDirError(ValueError):
    """The directory is not a PET export, or not one for the model being built."""


def frozen_fingerprint(frozen: Mapping[str, Any]) -> str:
    """sha256 over the frozen leaves (path, shape, values rounded to bfloat16).

    bfloat16 so the fingerprint does not depend on `config.model.frozen_dtype` (float32 or
    bfloat16 frozen weights of the same backbone give the same one)."""
    import ml_dtypes

    digest = hashlib.sha256()
    for path in sorted(frozen):
        value = np.asarray(frozen[path])
        digest.update(f"{path}:{value.shape};".encode())
        digest.update(np.ascontiguousarray(value.astype(ml_dtypes.bfloat16)).tobytes())
    return digest.hexdigest()


def save_pet_dir(
    out_dir: str | os.PathLike,
    trainable: Mapping[str, Any],
    description: Mapping[str, Any],
    overwrite: bool = False,
) -> str:
    """Write `trainable` (`{path: array}`) and `description` (JSON-able) to `out_dir`, atomically."""
    from safetensors.numpy import save_file

    with atomic_directory(out_dir, overwrite) as tmp:
        tensors = {}
        for path, value in trainable.items():
            array = np.asarray(value)
            if array.dtype not in (np.float32, np.float16, np.float64):
                array = array.astype(np.float32)  # bfloat16: safetensors' NumPy writer has none
            tensors[path] = np.ascontiguousarray(array)
        save_file(tensors, os.path.join(tmp, WEIGHTS_FILE), metadata={"format": FORMAT})
        with open(os.path.join(tmp, CONFIG_FILE), "w") as f:
            json.dump({"format": FORMAT, **description}, f, indent=2, sort_keys=True)
    return os.path.abspath(os.fspath(out_dir))


def read_description(pet_dir: str | os.PathLike) -> dict[str, Any]:
    """`pet_config.json` of `pet_dir`; a missing or foreign file is a `PetDirError`."""
    path = os.path.join(os.fspath(pet_dir), CONFIG_FILE)
    if not os.path.isfile(path):
        raise PetDirError(
            f"{path}: not found; a PET directory written by launch.export (--pet_dir) holds "
            f"{CONFIG_FILE} and {WEIGHTS_FILE}"
        )
    try:
        with open(path) as f:
            description = json.load(f)
    except (OSError, ValueError) as err:
        raise PetDirError(f"{path}: not readable as JSON ({err})") from err
    if not isinstance(description, dict) or description.get("format") != FORMAT:
        raise PetDirError(f"{path}: field 'format' is not {FORMAT!r}; not a vlpet_jax PET export")
    return description


def read_weights(pet_dir: str | os.PathLike) -> dict[str, np.ndarray]:
    path = os.path.join(os.fspath(pet_dir), WEIGHTS_FILE)
    if not os.path.isfile(path):
        raise PetDirError(f"{path}: not found")
    from safetensors.numpy import load_file

    return load_file(path)


def check_description(
    pet_dir: str | os.PathLike, found: Mapping[str, Any], expected: Mapping[str, Any]
) -> None:
    """Raise `PetDirError` naming every difference between the directory's description
    (`found`) and the one of the model being built (`expected`, same layout): method, sizes,
    backbone architecture, visual input, vocabulary."""
    problems = []
    if found["method"] != expected["method"]:
        problems.append(
            f"it was exported for PET method {found['method']!r}, the config asks for "
            f"{expected['method']!r}"
        )
    else:
        for key in sorted(set(found["pet"]) | set(expected["pet"])):
            a, b = found["pet"].get(key), expected["pet"].get(key)
            if a != b:
                problems.append(f"config.pet.{key} is {a!r} in the export, {b!r} in the config")
    fb, eb = found["backbone"]["config"], expected["backbone"]["config"]
    for key in sorted(set(fb) | set(eb)):
        if fb.get(key) != eb.get(key) and "dropout" not in key:
            problems.append(
                f"backbone {key} is {fb.get(key)!r} in the export, {eb.get(key)!r} here"
            )
    for key in _ARCH_FIELDS:
        if found.get(key) != expected.get(key) and key not in fb:
            problems.append(
                f"{key} is {found.get(key)!r} in the export, {expected.get(key)!r} here"
            )
    if problems:
        raise PetDirError(
            f"{os.fspath(pet_dir)} does not fit this model: " + "; ".join(problems[:12])
        )


def check_weights(
    pet_dir: str | os.PathLike,
    found: Mapping[str, Any],
    expected: Mapping[str, Any],
    trainable_shapes: Mapping[str, tuple[int, ...]],
    weights: Mapping[str, np.ndarray],
) -> None:
    """The stored leaves are exactly the model's trainable ones (`trainable_shapes`), shaped alike."""
    problems = []
    missing = sorted(trainable_shapes.keys() - weights.keys())
    extra = sorted(weights.keys() - trainable_shapes.keys())
    if missing or extra:
        problems.append(
            f"its trainable parameters differ from the config's (trainability rules "
            f"{found['rules']!r} vs {expected['rules']!r}): missing {missing[:8] or 'none'}, "
            f"unexpected {extra[:8] or 'none'}"
        )
    for path in sorted(trainable_shapes.keys() & weights.keys()):
        if tuple(weights[path].shape) != tuple(trainable_shapes[path]):
            problems.append(
                f"{path} has shape {tuple(weights[path].shape)} in the export, "
                f"{tuple(trainable_shapes[path])} in the model"
            )
    if problems:
        raise PetDirError(
            f"{os.fspath(pet_dir)} does not fit this model: " + "; ".join(problems[:12])
        )
