"""The registered PET methods: VL-PET at each granularity and full fine-tuning here; the baselines
of SPEC.md §5 register themselves from their own modules, imported at the end of this file:

    bitfit, prompt, vl_adapter (alias adapter), compacter, hyperformer, lora,
    vl_adapter+g_<level>+lw, compacter+g_<level>+lw      (level: large, middle_x, middle_y, small)

Sizes come from the `pet` mapping (config field `config.pet`); missing entries take the paper's
defaults for the backbone (SPEC.md §5, §8).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.pet import rules
from vlpet_jax.pet.registry import PetMethod, register
from vlpet_jax.pet.vl_pet import DEFAULT_GATE_POOLING, LEVELS, VLPetHooks

_POOLING = dict(gate_pooling=DEFAULT_GATE_POOLING)
VL_PET_DEFAULTS = {
    "bart": dict(rank=96, num_heads=4, gate_rank=96, scale=1.0, value_rank=96, **_POOLING),
    "t5": dict(rank=192, num_heads=4, gate_rank=192, scale=0.3, value_rank=96, **_POOLING),
}


def _sizes(defaults: Mapping[str, Any], pet: Mapping[str, Any]) -> dict[str, Any]:
    return {key: pet.get(key, value) for key, value in defaults.items()}


def _vl_pet(level: str):
    def factory(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
        sizes = _sizes(VL_PET_DEFAULTS[backbone.family], pet)
        hooks = VLPetHooks(level=level, family=backbone.family, **sizes)
        trainable = [rules.VISUAL, rules.PET, *rules.encoder_norm_rules(backbone)]
        return PetMethod(
            name=f"vl_pet_{level}",
            hooks=hooks,
            rules=[*trainable, rules.FREEZE_REST],
            description=f"VL-PET, granularity {level}",
        )

    return factory


for _level in LEVELS:
    register(f"vl_pet_{_level}")(_vl_pet(_level))


@register("full_ft")
def _full_ft(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
    del pet
    buffers = [] if backbone.is_t5 else [rules.BUFFERS_FROZEN]
    return PetMethod("full_ft", PetHooks(), [*buffers, rules.TRAIN_ALL], "full fine-tuning")


# The baselines register themselves on import (after the registry and VL-PET above exist).
from vlpet_jax.pet import (  # noqa: E402, F401
    adapters,
    bitfit,
    compacter,
    gated_designs,
    hyperformer,
    lora,
    prompt,
)
