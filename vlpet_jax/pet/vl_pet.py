"""VL-PET: granularity-controlled modular modification of every encoder sub-layer (SPEC.md §3)
and the lightweight decoder: a value adapter on cross-attention only (SPEC.md §4).

Encoder sub-layer with input X on the residual path and output H:
    ΔH = W_up · gelu_tanh(W_down · H + b_down) + b_up        (multi-head down = one Dense(d→r))
    Hs = H + ΔH
    H' = s · G ⊙ Hs                                           (then dropout, residual add)
with G chosen by `level` (large / middle_x / middle_y / small), a static choice: each level is a
different module, so the granularity is compiled into the program.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.hooks import PetHooks, Site
from vlpet_jax.models.layers import EMBED, gelu_tanh, logical_param
from vlpet_jax.pet.common import PET_RANK, Bottleneck, pet_dense

Array = jax.Array
LEVELS = ("large", "middle_x", "middle_y", "small")


class GranularityGate(nn.Module):
    """The matrix G of SPEC.md §3, broadcastable to (B, N, d).

    large: sigmoid(up(gelu_tanh(down(X))))        (B, N, d)
    middle_x: sigmoid(w · (X + Hs) + b)          (B, N, 1)
    middle_y: 1 + z  (no sigmoid)                 (1, 1, d)
    small: mean_N sigmoid(w · [X; Hs] + b)        (B, 1, 1)   mean over every token, pads included
    """

    level: str
    family: str
    gate_rank: int
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, hs: Array) -> Array:
        d = x.shape[-1]
        zero = self.family == "t5"  # T5 zero-inits every gate output layer (SPEC.md §3)
        if self.level == "large":
            h = pet_dense(self.gate_rank, d, self.family, (EMBED, PET_RANK), name="down")(x)
            up = pet_dense(
                d, self.gate_rank, self.family, (PET_RANK, EMBED), zero_init=zero, name="up"
            )
            return jax.nn.sigmoid(up(gelu_tanh(h)).astype(jnp.float32))
        if self.level == "middle_x":
            gate = pet_dense(1, d, self.family, (EMBED, None), zero_init=zero, name="proj")
            return jax.nn.sigmoid(gate(x + hs).astype(jnp.float32))
        if self.level == "middle_y":
            init = nn.initializers.zeros_init() if zero else nn.initializers.normal(0.02)
            z = logical_param(self, "z", init, (d,), (EMBED,), jnp.float32)
            return (1.0 + z)[None, None, :]
        if self.level == "small":
            gate = pet_dense(1, 2 * d, self.family, (None, None), zero_init=zero, name="proj")
            per_token = jax.nn.sigmoid(gate(jnp.concatenate([x, hs], -1)).astype(jnp.float32))
            return jnp.mean(per_token, axis=1, keepdims=True)
        raise ValueError(f"unknown VL-PET granularity {self.level!r}; known: {LEVELS}")


class GatedModification(nn.Module):
    """H' = s · G ⊙ (H + ΔH) on one encoder sub-layer. `modification` computes ΔH from H: here
    VL-PET's multi-head bottleneck; subclasses put an existing method's body there instead
    (`gated_designs.py`, SPEC.md §5 "VL-PET designs on existing methods")."""

    level: str
    family: str
    rank: int
    gate_rank: int
    scale: float
    dtype: Any = jnp.float32

    def modification(self, h: Array) -> Array:
        return Bottleneck(self.rank, self.family, zero_init_up=self.family == "t5", name="mod")(h)

    @nn.compact
    def __call__(self, x: Array, h: Array, train: bool = False) -> Array:
        hs = h + self.modification(h).astype(h.dtype)
        gate = GranularityGate(self.level, self.family, self.gate_rank, name="gate")(x, hs)
        self.sow("intermediates", "gate_values", gate)
        return (self.scale * gate * hs.astype(jnp.float32)).astype(h.dtype)


class ValueAdapter(nn.Module):
    """Decoder cross-attention value adapter: V += up(gelu_tanh(down(E))) (SPEC.md §4)."""

    rank: int
    family: str

    @nn.compact
    def __call__(self, enc_hidden: Array, train: bool = False) -> Array:
        del train
        return Bottleneck(self.rank, self.family, zero_init_up=self.family == "t5", name="mod")(
            enc_hidden
        )


@dataclasses.dataclass(frozen=True)
class VLPetHooks(PetHooks):
    """VL-PET at its sites: gated modification on encoder self-attn and FFN, value adapter on
    decoder cross-attention; nothing in decoder self-attention or FFN (SPEC.md §4)."""

    level: str = "large"
    family: str = "bart"
    rank: int = 96
    num_heads: int = 4  # heads of the down projection; one Dense(d→r) computes all of them
    gate_rank: int = 96
    scale: float = 1.0
    value_rank: int = 96

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"unknown VL-PET granularity {self.level!r}; known: {LEVELS}")
        if self.rank % self.num_heads:
            raise ValueError(f"VL-PET rank {self.rank} is not divisible by {self.num_heads} heads")

    def sublayer(self, site: Site) -> nn.Module | None:
        if site.stack != "encoder":
            return None
        return GatedModification(self.level, self.family, self.rank, self.gate_rank, self.scale)

    def projection(self, site: Site, name: str) -> nn.Module | None:
        if site.stack == "decoder" and site.kind == "cross_attn" and name == "v":
            return ValueAdapter(self.value_rank, self.family)
        return None
