"""Pieces every PET method uses: dense layers with the per-backbone initialisation, bottlenecks.

SPEC.md §3 "Initialisation": new layers on BART draw kernels from N(0, 0.02) with zero bias; on T5
they take PyTorch's `nn.Linear` default, U(±1/sqrt(fan_in)) for kernel *and* bias, and some of
them are then zeroed. `pet_dense` encodes that choice so each method only says which layers are
zero-initialised.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.layers import EMBED, Dense, gelu_tanh

Array = jax.Array
PET_RANK = "pet_rank"  # logical axis of a bottleneck's narrow side: never sharded.


def torch_linear_init(fan_in: int):
    """PyTorch's default for both kernel and bias of `nn.Linear`: U(±1/sqrt(fan_in))."""
    bound = 1.0 / fan_in**0.5

    def init(key, shape, dtype=jnp.float32):
        return jax.random.uniform(key, shape, dtype, -bound, bound)

    return init


def pet_dense(
    features: int,
    fan_in: int,
    family: str,
    axes: tuple[str, str],
    zero_init: bool = False,
    use_bias: bool = True,
    name: str | None = None,
    dtype: Any = jnp.float32,
) -> Dense:
    """A new trainable Dense initialised as the released code does for `family` (SPEC.md §3)."""
    if zero_init:
        kernel_init = bias_init = nn.initializers.zeros_init()
    elif family == "t5":
        kernel_init = bias_init = torch_linear_init(fan_in)
    else:
        kernel_init, bias_init = nn.initializers.normal(0.02), nn.initializers.zeros_init()
    return Dense(
        features,
        axes,
        use_bias=use_bias,
        kernel_init=kernel_init,
        bias_init=bias_init,
        dtype=dtype,
        name=name,
    )


class Bottleneck(nn.Module):
    """`up(gelu_tanh(down(x)))`: the adapter body shared by adapters and value adapters."""

    rank: int
    family: str
    zero_init_up: bool = False
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        h = pet_dense(self.rank, d, self.family, (EMBED, PET_RANK), name="down", dtype=self.dtype)(
            x
        )
        up = pet_dense(
            d, self.rank, self.family, (PET_RANK, EMBED), zero_init=self.zero_init_up,
            name="up", dtype=self.dtype,
        )  # fmt: skip
        return up(gelu_tanh(h))


def pet_option(pet: Mapping[str, Any], key: str, default: Any) -> Any:
    """`pet[key]`, or the paper's `default`. The `pet` mapping is shared by every method (config
    field `config.pet`), so a method reads only its own keys and ignores the others."""
    value = pet.get(key, default)
    return default if value is None else value


def reduced_rank(d_model: int, reduction: int, key: str) -> int:
    """Bottleneck width r = d // reduction, as the adapter baselines size it (SPEC.md §5)."""
    if reduction < 1 or d_model // reduction < 1:
        raise ValueError(
            f"pet field {key!r} is {reduction}; it must be between 1 and d_model={d_model}"
        )
    return d_model // reduction
