"""Pick the backbone class for a `BackboneConfig`."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp

from vlpet_jax.models.bart import BartModel
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.models.t5 import T5Model

BACKBONES = {"t5": T5Model, "bart": BartModel}


def build_backbone(
    cfg: BackboneConfig,
    hooks: PetHooks | None = None,
    dtype: Any = jnp.float32,
    param_dtype: Any = jnp.float32,
) -> T5Model | BartModel:
    """The Flax encoder-decoder for `cfg.family`, with PET `hooks` attached (none by default)."""
    if cfg.family not in BACKBONES:
        raise ValueError(f"unknown backbone family {cfg.family!r}; known: {sorted(BACKBONES)}")
    return BACKBONES[cfg.family](
        cfg, hooks=hooks or PetHooks(), dtype=dtype, param_dtype=param_dtype
    )
