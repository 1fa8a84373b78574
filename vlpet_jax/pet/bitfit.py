"""BitFit: train the biases and the visual embedding, nothing is added (SPEC.md §5).

The released run (`bitfit.sh`, `--unfreeze_bias`) unfreezes every parameter whose name contains
"bias". On BART that is every linear and LayerNorm bias. T5 has no bias in any linear layer or
norm, but the substring also matches T5's two relative-position tables (`relative_attention_bias`),
so BitFit on T5 trains the visual embedding and those two tables (pet field
`train_relative_attention_bias`, default True; False leaves the visual embedding alone).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.pet import rules
from vlpet_jax.pet.lora import released_bias_rules
from vlpet_jax.pet.registry import PetMethod, register


@register("bitfit")
def _bitfit(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
    trainable = [rules.VISUAL, *released_bias_rules(backbone, pet)]
    return PetMethod(
        name="bitfit",
        hooks=PetHooks(),
        rules=[*trainable, rules.FREEZE_REST],
        description="BitFit: biases and the visual embedding",
    )
