"""VL-PET's designs applied to existing methods: `<method>+g_<level>+lw` (paper §4.5, SPEC.md §5).

For Adapter (`vl_adapter`) and Compacter, at granularity level large / middle_x / middle_y / small:
- encoder ("+g"): every self-attention and FFN sub-layer keeps the method's sequential module and
  gains VL-PET's granularity gate (SPEC.md §3), H' = s · G ⊙ (H + ΔH) with ΔH the method's
  adapter body and G computed from the residual input X and H + ΔH, as the released encoder
  layers do (`attn_adapter`, then `encoder_attn_adapter_gating_*`, then the scaling factor);
- lightweight decoder ("+lw"): only cross-attention keeps the method's module (sequential, on the
  sub-layer output); decoder self-attention and FFN modules are removed;
- encoder norms trainable, decoder norms frozen (SPEC.md §4).

The adapter bodies keep their own initialisation (adapters.py, compacter.py); the gate follows
VL-PET's (on T5 the gate's output layer and z start at zero). Scale s: BART 1.0, T5 0.3.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping
from typing import Any

import flax.linen as nn
import jax

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks, Site
from vlpet_jax.pet import rules
from vlpet_jax.pet.adapters import SequentialAdapter, adapter_sizes
from vlpet_jax.pet.common import Bottleneck, pet_option
from vlpet_jax.pet.compacter import (
    PHM_DIM,
    PHM_INIT_RANGE,
    CompacterAdapter,
    PHMBottleneck,
    compacter_sizes,
)
from vlpet_jax.pet.registry import PetMethod, register
from vlpet_jax.pet.vl_pet import (
    DEFAULT_GATE_POOLING,
    GATE_POOLINGS,
    LEVELS,
    GatedModification,
)

Array = jax.Array
GATE_DEFAULTS = {
    "bart": dict(gate_rank=96, scale=1.0, gate_pooling=DEFAULT_GATE_POOLING),
    "t5": dict(gate_rank=192, scale=0.3, gate_pooling=DEFAULT_GATE_POOLING),
}


class GatedAdapter(GatedModification):
    """The gate of SPEC.md §3 around a VL-Adapter body: ΔH = up(gelu_tanh(down(H)))."""

    def modification(self, h: Array) -> Array:
        return Bottleneck(self.rank, self.family, dtype=self.dtype, name="mod")(h)


class GatedCompacter(GatedModification):
    """The gate of SPEC.md §3 around a Compacter body: ΔH = PHM_up(gelu_tanh(PHM_down(H)))."""

    phm_dim: int = PHM_DIM
    init_range: float = PHM_INIT_RANGE

    def modification(self, h: Array) -> Array:
        return PHMBottleneck(
            self.rank, self.phm_dim, self.init_range, dtype=self.dtype, name="mod"
        )(h)


@dataclasses.dataclass(frozen=True)
class GatedDesignHooks(PetHooks):
    """Gated method modules on the encoder sub-layers, the plain module on decoder cross-attn."""

    base: str = "vl_adapter"  # a key of BASES
    level: str = "large"
    family: str = "bart"
    rank: int = 96
    gate_rank: int = 96
    scale: float = 1.0
    gate_pooling: str = DEFAULT_GATE_POOLING
    phm_dim: int = PHM_DIM  # Compacter only
    init_range: float = PHM_INIT_RANGE  # Compacter only

    def __post_init__(self):
        if self.level not in LEVELS:
            raise ValueError(f"unknown VL-PET granularity {self.level!r}; known: {LEVELS}")
        if self.gate_pooling not in GATE_POOLINGS:
            raise ValueError(
                f"pet.gate_pooling is {self.gate_pooling!r}; expected one of {GATE_POOLINGS}"
            )
        if self.base not in BASES:
            raise ValueError(f"no gated design for {self.base!r}; known: {sorted(BASES)}")

    def sublayer(self, site: Site) -> nn.Module | None:
        if site.stack == "encoder":
            return BASES[self.base].gated(self)
        if site.kind == "cross_attn":
            return BASES[self.base].plain(self)
        return None


@dataclasses.dataclass(frozen=True)
class _Base:
    """How an existing method enters the design: its sizes and its two kinds of module."""

    sizes: Callable[[BackboneConfig, Mapping[str, Any]], dict[str, Any]]
    gated: Callable[[GatedDesignHooks], nn.Module]  # encoder self-attention and FFN
    plain: Callable[[GatedDesignHooks], nn.Module]  # decoder cross-attention


BASES = {
    "vl_adapter": _Base(
        sizes=adapter_sizes,
        gated=lambda h: GatedAdapter(
            h.level, h.family, h.rank, h.gate_rank, h.scale, h.gate_pooling
        ),
        plain=lambda h: SequentialAdapter(h.rank, h.family),
    ),
    "compacter": _Base(
        sizes=compacter_sizes,
        gated=lambda h: GatedCompacter(
            h.level,
            h.family,
            h.rank,
            h.gate_rank,
            h.scale,
            h.gate_pooling,
            phm_dim=h.phm_dim,
            init_range=h.init_range,
        ),
        plain=lambda h: CompacterAdapter(h.rank, h.phm_dim, h.init_range),
    ),
}


def _gated_design(base: str, level: str) -> Callable[..., PetMethod]:
    def factory(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
        gate = {k: pet_option(pet, k, v) for k, v in GATE_DEFAULTS[backbone.family].items()}
        sizes = BASES[base].sizes(backbone, pet)
        hooks = GatedDesignHooks(base, level, backbone.family, **sizes, **gate)
        trainable = [rules.VISUAL, rules.PET, *rules.encoder_norm_rules(backbone)]
        return PetMethod(
            name=f"{base}+g_{level}+lw",
            hooks=hooks,
            rules=[*trainable, rules.FREEZE_REST],
            description=f"{base} with VL-PET's {level} gate and lightweight decoder",
            decay_exceptions=[rules.PHM_BIAS_DECAYED] if base == "compacter" else [],
        )

    return factory


for _base in BASES:
    for _level in LEVELS:
        register(f"{_base}+g_{_level}+lw")(_gated_design(_base, _level))
