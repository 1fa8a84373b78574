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
from typing import Any, ClassVar

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.hooks import PetHooks, Site
from vlpet_jax.models.layers import EMBED, gelu_tanh, logical_param
from vlpet_jax.pet.common import PET_RANK, Bottleneck, pet_dense

Array = jax.Array
LEVELS = ("large", "middle_x", "middle_y", "small")
# What the small gate averages over (SPEC.md §3), config field `pet.gate_pooling`:
#   "released"     every position before the batch's longest real text, then every visual token:
#                  the released code's value (its collator pads each batch to its longest text,
#                  so those pads are in its mean) however far our batcher pads beyond that;
#   "real_tokens"  each example's own real tokens only: independent of the rest of the batch.
GATE_POOLINGS = ("released", "real_tokens")
DEFAULT_GATE_POOLING = "released"


def pooled_mean(per_token: Array, token_mask: Array | None, pooling: str) -> Array:
    """Mean of `per_token` (B, N, 1) over the sequence, as `pooling` says; (B, 1, 1).

    `token_mask` (B, N) is the encoder's keep-mask (text mask, visual tokens all kept). Without
    one, every position counts (a caller that has no padding)."""
    if pooling not in GATE_POOLINGS:
        raise ValueError(f"unknown gate pooling {pooling!r}; known: {GATE_POOLINGS}")
    if token_mask is None:
        return jnp.mean(per_token, axis=1, keepdims=True)
    if pooling == "released":
        # Right-padded text: a position is before the batch's longest real input exactly when
        # some example has a real token there. Fully padded rows (batch filler) change nothing.
        weights = jnp.any(token_mask, axis=0, keepdims=True)
    else:
        weights = token_mask
    weights = weights.astype(per_token.dtype)[..., None]
    total = jnp.sum(per_token * weights, axis=1, keepdims=True)
    return total / jnp.maximum(jnp.sum(weights, axis=1, keepdims=True), 1.0)


class GranularityGate(nn.Module):
    """The matrix G of SPEC.md §3, broadcastable to (B, N, d).

    large: sigmoid(up(gelu_tanh(down(X))))        (B, N, d)
    middle_x: sigmoid(w · (X + Hs) + b)          (B, N, 1)
    middle_y: 1 + z  (no sigmoid)                 (1, 1, d)
    small: mean_N sigmoid(w · [X; Hs] + b)        (B, 1, 1)   mean as `pooling` says
    """

    level: str
    family: str
    gate_rank: int
    pooling: str = DEFAULT_GATE_POOLING
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, hs: Array, token_mask: Array | None = None) -> Array:
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
            return pooled_mean(per_token, token_mask, self.pooling)
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
    pooling: str = DEFAULT_GATE_POOLING
    dtype: Any = jnp.float32

    # Called with the encoder's `token_mask` (models/hooks.py): the small gate pools over tokens.
    pools_tokens: ClassVar[bool] = True

    def modification(self, h: Array) -> Array:
        return Bottleneck(self.rank, self.family, zero_init_up=self.family == "t5", name="mod")(h)

    @nn.compact
    def __call__(
        self, x: Array, h: Array, train: bool = False, token_mask: Array | None = None
    ) -> Array:
        hs = h + self.modification(h).astype(h.dtype)
        gate = GranularityGate(self.level, self.family, self.gate_rank, self.pooling, name="gate")(
            x, hs, token_mask
        )
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
    gate_pooling: str = DEFAULT_GATE_POOLING

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"unknown VL-PET granularity {self.level!r}; known: {LEVELS}")
        if self.gate_pooling not in GATE_POOLINGS:
            raise ValueError(
                f"pet.gate_pooling is {self.gate_pooling!r}; expected one of {GATE_POOLINGS}"
            )
        if self.rank % self.num_heads:
            raise ValueError(f"VL-PET rank {self.rank} is not divisible by {self.num_heads} heads")

    def sublayer(self, site: Site) -> nn.Module | None:
        if site.stack != "encoder":
            return None
        return GatedModification(
            self.level, self.family, self.rank, self.gate_rank, self.scale, self.gate_pooling
        )

    def projection(self, site: Site, name: str) -> nn.Module | None:
        if site.stack == "decoder" and site.kind == "cross_attn" and name == "v":
            return ValueAdapter(self.value_rank, self.family)
        return None
