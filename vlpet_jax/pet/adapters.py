"""VL-Adapter's sequential adapter on every sub-layer (SPEC.md §5, "Adapter / VL-Adapter").

    h' = h + W_up · gelu_tanh(W_down · h + b_down) + b_up        r = d // adapter_reduction

applied to the output of every attention and FFN sub-layer of both stacks (encoder self-attention
and FFN; decoder self-attention, cross-attention and FFN), before dropout and the residual add, as
the released `AdapterController` does. "Single" adapter: one module set shared by all tasks.

Initialisation follows the released code path: on BART every `nn.Linear` is re-initialised by
`BartPretrainedModel._init_weights` (N(0, 0.02), zero bias); on T5 the adapters keep PyTorch's
`nn.Linear` default, U(±1/sqrt(fan_in)) for kernel and bias. No layer starts at zero.
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
from vlpet_jax.pet import rules
from vlpet_jax.pet.common import Bottleneck, pet_option, reduced_rank
from vlpet_jax.pet.registry import PetMethod, register

Array = jax.Array
ADAPTER_REDUCTION = 8  # r = 768 / 8 = 96 for the base backbones


class SequentialAdapter(nn.Module):
    """`h + up(gelu_tanh(down(h)))` on one sub-layer output H (the residual input X is unused)."""

    rank: int
    family: str
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, h: Array, train: bool = False) -> Array:
        del x, train
        delta = Bottleneck(self.rank, self.family, dtype=self.dtype, name="mod")(h)
        return h + delta.astype(h.dtype)


@dataclasses.dataclass(frozen=True)
class AdapterHooks(PetHooks):
    """A sequential adapter on every sub-layer of both stacks."""

    rank: int = 96
    family: str = "bart"

    def sublayer(self, site: Site) -> nn.Module | None:
        del site
        return SequentialAdapter(self.rank, self.family)


def adapter_sizes(backbone: BackboneConfig, pet: Mapping[str, Any]) -> dict[str, Any]:
    """The bottleneck width from the `pet` mapping (key `adapter_reduction`)."""
    reduction = pet_option(pet, "adapter_reduction", ADAPTER_REDUCTION)
    return dict(rank=reduced_rank(backbone.d_model, reduction, "adapter_reduction"))


@register("vl_adapter", "adapter")
def _vl_adapter(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
    hooks = AdapterHooks(family=backbone.family, **adapter_sizes(backbone, pet))
    trainable = [rules.VISUAL, rules.PET, *rules.all_norm_rules(backbone)]
    return PetMethod(
        name="vl_adapter",
        hooks=hooks,
        rules=[*trainable, rules.FREEZE_REST],
        description=f"VL-Adapter (single): sequential adapters r={hooks.rank}, all norms",
    )
