"""Prompt tuning: 40 trainable vectors prepended to the encoder input (SPEC.md §5).

    P = Dense(800→d)(tanh(Dense(d→800)(Emb(40, d)[0..39])))        (40, d), the same for every row

The backbone calls the prefix hook where the released encoders concatenate the prompts: on BART
after the positional embeddings and before `layernorm_embedding` (prompts, then text, then visual
tokens); on T5 before the text, the prompts sharing the text's relative-position block. The
encoder mask gets 40 leading ones. One prompt set for all tasks (the released `--use_single_prompt`).

Initialisation: on BART the released encoder re-initialises the prompt's `nn.Embedding` and
`nn.Linear` layers with N(0, 0.02) and zero biases; on T5 they keep PyTorch's defaults (N(0, 1)
embedding, U(±1/sqrt(fan_in)) linear kernel and bias).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.models.layers import EMBED, logical_param
from vlpet_jax.pet import rules
from vlpet_jax.pet.common import PET_RANK, pet_dense, pet_option
from vlpet_jax.pet.registry import PetMethod, register

Array = jax.Array
PROMPT_LENGTH, PROMPT_HIDDEN = 40, 800


class PromptPrefix(nn.Module):
    """Prepends the prompt vectors to the encoder embeddings and ones to their mask."""

    length: int
    hidden: int
    family: str
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, embeds: Array, mask: Array, train: bool = False) -> tuple[Array, Array]:
        del train
        batch, d = embeds.shape[0], embeds.shape[-1]
        std = 1.0 if self.family == "t5" else 0.02
        table = logical_param(
            self, "embedding", nn.initializers.normal(std), (self.length, d), (None, EMBED),
            jnp.float32,
        )  # fmt: skip
        hidden = pet_dense(self.hidden, d, self.family, (EMBED, PET_RANK), name="hidden")
        out = pet_dense(d, self.hidden, self.family, (PET_RANK, EMBED), name="out")
        prompts = out(jnp.tanh(hidden(table))).astype(embeds.dtype)
        prompts = jnp.broadcast_to(prompts[None], (batch, self.length, d))
        ones = jnp.ones((batch, self.length), mask.dtype)
        return jnp.concatenate([prompts, embeds], 1), jnp.concatenate([ones, mask], 1)


@dataclasses.dataclass(frozen=True)
class PromptHooks(PetHooks):
    length: int = PROMPT_LENGTH
    hidden: int = PROMPT_HIDDEN
    family: str = "bart"

    def encoder_prefix(self) -> nn.Module | None:
        return PromptPrefix(self.length, self.hidden, self.family)


@register("prompt")
def _prompt(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
    hooks = PromptHooks(
        length=pet_option(pet, "prompt_length", PROMPT_LENGTH),
        hidden=pet_option(pet, "prompt_hidden", PROMPT_HIDDEN),
        family=backbone.family,
    )
    return PetMethod(
        name="prompt",
        hooks=hooks,
        rules=[rules.VISUAL, rules.PET, rules.FREEZE_REST],
        description=f"prompt tuning: {hooks.length} encoder prompts (MLP {hooks.hidden})",
    )
