"""Write an imported official checkpoint to disk (what `launch.convert` produces).

A deliberately small, swappable piece: the trainer's checkpoint layout (Orbax `CheckpointManager`,
trainable state only, DESIGN.md "Checkpoints") is not fixed yet, so an import is saved as one
Orbax tree of *all* parameters. All of them, because a released checkpoint's frozen part is not
only the pretrained backbone: the 200 vocabulary rows VL-T5 added were randomly initialised in the
original run and the object-order codes read them (SPEC.md §1, §2), so they cannot be re-read from
the Hugging Face checkpoint.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import Any

from vlpet_jax.checkpoints.atomic_dir import atomic_directory
from vlpet_jax.checkpoints.official import backbone_config_for, load_official
from vlpet_jax.models.config import BackboneConfig

PARAMS_ITEM = "params"


def save_params(params: Any, out_dir: str | os.PathLike, overwrite: bool = False) -> str:
    """Write `params` as an Orbax checkpoint at `out_dir/params`, atomically.

    Everything is written under a temporary sibling directory that is renamed to `out_dir` only
    once complete, so a crash never leaves a half-written `out_dir`. Returns the absolute path.
    """
    import orbax.checkpoint as ocp

    with (
        atomic_directory(out_dir, overwrite) as tmp,
        ocp.StandardCheckpointer() as checkpointer,
    ):
        checkpointer.save(os.path.join(tmp, PARAMS_ITEM), params)
        checkpointer.wait_until_finished()
    return os.path.abspath(os.fspath(out_dir))


def restore_params(out_dir: str | os.PathLike) -> dict[str, Any]:
    """Read back what `save_params` wrote."""
    import orbax.checkpoint as ocp

    path = os.path.join(os.path.abspath(os.fspath(out_dir)), PARAMS_ITEM)
    if not os.path.isdir(path):
        raise FileNotFoundError(f"{path}: not found; expected a directory written by save_params")
    with ocp.StandardCheckpointer() as checkpointer:
        return checkpointer.restore(path)


def convert(
    official_path: str | os.PathLike,
    backbone_checkpoint: str | os.PathLike,
    method_name: str,
    out_dir: str | os.PathLike,
    pet_sizes: Mapping[str, Any] | None = None,
    *,
    num_images: int = 2,
    overwrite: bool = False,
) -> tuple[BackboneConfig, str]:
    """Import a released checkpoint (SPEC.md §9) and save it; returns (backbone config, out dir)."""
    cfg = backbone_config_for(official_path, backbone_checkpoint)
    params = load_official(official_path, cfg, method_name, pet_sizes, num_images=num_images)
    return cfg, save_params(params, out_dir, overwrite=overwrite)
