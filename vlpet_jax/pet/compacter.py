"""Compacter: the sequential adapter with PHM (hypercomplex) layers (SPEC.md §5).

A PHM layer replaces a Dense(d_in → d_out) kernel by a sum of Kronecker products

    W = Σ_{i=1..n} A_i ⊗ B_i        A_i: n×n ("phm rule"), B_i: (d_in/n)×(d_out/n)
    y = x · W + b

Choices of the released run (`single_compacter.sh`: `--hypercomplex_division 2
--shared_phm_rule False --factorized_phm False --reduction_factor 8 --use_single_adapter`):
n = 2; every PHM layer has its own A_i (no rule shared across layers); B_i are full matrices (no
low-rank factorisation); one module set shared by all tasks. The released `PHMLinear`
initialises B_i per slice with Glorot-uniform at gain sqrt(2), A_i with N(0, phm_init_range = 0.01)
and b with zeros, for both backbones (it is not an `nn.Linear`, so BART's re-initialisation does
not touch it). Placement and trainable norms are those of the sequential adapter (adapters.py).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks, Site
from vlpet_jax.models.layers import gelu_tanh, logical_param
from vlpet_jax.pet import rules
from vlpet_jax.pet.common import pet_option, reduced_rank
from vlpet_jax.pet.registry import PetMethod, register

Array = jax.Array
COMPACTER_REDUCTION = 8
PHM_DIM = 2  # n, the released `--hypercomplex_division`
PHM_INIT_RANGE = 0.01  # std of the A_i (released `--phm_init_range` default)


def phm_kernel_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32) -> Array:
    """Glorot-uniform with gain sqrt(2) on every (d_in/n, d_out/n) slice B_i."""
    fan_in, fan_out = shape[-2], shape[-1]
    bound = (2.0**0.5) * (6.0 / (fan_in + fan_out)) ** 0.5
    return jax.random.uniform(key, shape, dtype, -bound, bound)


def phm_weight(rule: Array, kernel: Array) -> Array:
    """Σ_i A_i ⊗ B_i for A (n, n, n) and B (n, p, q): the (n·p, n·q) matrix of the layer."""
    n, p, q = kernel.shape
    return jnp.einsum("iab,icd->acbd", rule, kernel).reshape(n * p, n * q)


class PHMDense(nn.Module):
    """`y = x · Σ_i A_i ⊗ B_i + b` with parameters `phm_rule` (A), `phm_kernel` (B), `bias`."""

    features: int
    phm_dim: int = PHM_DIM
    init_range: float = PHM_INIT_RANGE
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d_in, n = x.shape[-1], self.phm_dim
        if d_in % n or self.features % n:
            raise ValueError(
                f"PHM layer {d_in}→{self.features}: both widths must be divisible by "
                f"compacter_n={n}"
            )
        rule = logical_param(
            self, "phm_rule", nn.initializers.normal(self.init_range), (n, n, n),
            (None, None, None), jnp.float32,
        )  # fmt: skip
        kernel = logical_param(
            self, "phm_kernel", phm_kernel_init, (n, d_in // n, self.features // n),
            (None, None, None), jnp.float32,
        )  # fmt: skip
        bias = logical_param(
            self, "bias", nn.initializers.zeros_init(), (self.features,), (None,), jnp.float32
        )
        weight = phm_weight(rule, kernel).astype(self.dtype)
        return jnp.dot(x.astype(self.dtype), weight) + bias.astype(self.dtype)


class PHMBottleneck(nn.Module):
    """`up(gelu_tanh(down(h)))` with PHM layers: Compacter's ΔH."""

    rank: int
    phm_dim: int = PHM_DIM
    init_range: float = PHM_INIT_RANGE
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, h: Array) -> Array:
        phm = dict(phm_dim=self.phm_dim, init_range=self.init_range, dtype=self.dtype)
        z = PHMDense(self.rank, name="down", **phm)(h)
        return PHMDense(h.shape[-1], name="up", **phm)(gelu_tanh(z))


class CompacterAdapter(nn.Module):
    """`h + PHMBottleneck(h)` on one sub-layer output (the residual input X is unused)."""

    rank: int
    phm_dim: int = PHM_DIM
    init_range: float = PHM_INIT_RANGE
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, h: Array, train: bool = False) -> Array:
        del x, train
        body = PHMBottleneck(self.rank, self.phm_dim, self.init_range, self.dtype, name="mod")
        return h + body(h).astype(h.dtype)


@dataclasses.dataclass(frozen=True)
class CompacterHooks(PetHooks):
    """A Compacter adapter on every sub-layer of both stacks."""

    rank: int = 96
    phm_dim: int = PHM_DIM
    init_range: float = PHM_INIT_RANGE

    def sublayer(self, site: Site) -> nn.Module | None:
        del site
        return CompacterAdapter(self.rank, self.phm_dim, self.init_range)


def compacter_sizes(backbone: BackboneConfig, pet: Mapping[str, Any]) -> dict[str, Any]:
    """rank, phm_dim and init_range from the `pet` mapping (keys `compacter_*`)."""
    reduction = pet_option(pet, "compacter_reduction", COMPACTER_REDUCTION)
    return dict(
        rank=reduced_rank(backbone.d_model, reduction, "compacter_reduction"),
        phm_dim=pet_option(pet, "compacter_n", PHM_DIM),
        init_range=pet_option(pet, "compacter_init_range", PHM_INIT_RANGE),
    )


@register("compacter")
def _compacter(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
    hooks = CompacterHooks(**compacter_sizes(backbone, pet))
    trainable = [rules.VISUAL, rules.PET, *rules.all_norm_rules(backbone)]
    return PetMethod(
        name="compacter",
        hooks=hooks,
        rules=[*trainable, rules.FREEZE_REST],
        description=f"Compacter (single): PHM adapters r={hooks.rank}, n={hooks.phm_dim}",
        decay_exceptions=[rules.PHM_BIAS_DECAYED],
    )
