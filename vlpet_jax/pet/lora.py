"""LoRA on the query and value projections of every attention (SPEC.md §5).

    q = x W_q (+ b_q) + (alpha / r) · dropout(x) A^T B^T        (the same for v)

on encoder self-attention, decoder self-attention and decoder cross-attention (for cross-attention
v reads the encoder output), r = 128, alpha = 32, dropout 0.1 on the LoRA input in training only,
one module set shared by all tasks (the released `--use_single_lora`).

Initialisation as the released `LoRALinearController.reset_parameters`: A (r, d_in) with
`kaiming_uniform_(a=sqrt(5))`, i.e. U(±1/sqrt(d_in)), and B = 0, on both backbones (A and B are
extra parameters of the layer, so BART's `nn.Linear` re-initialisation does not reach them). Our
`down` kernel is A^T and our `up` kernel is B^T, so the update starts at exactly zero.

Trainable: LoRA, the visual embedding, and every parameter the released code selects with
`"bias" in name`: all BART biases (linear and norm); on T5 only the two relative-position tables,
whose Hugging Face name is `relative_attention_bias` (pet field `train_relative_attention_bias`).
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
from vlpet_jax.models.layers import EMBED, JOINED_KV, Dense
from vlpet_jax.pet import rules
from vlpet_jax.pet.common import PET_RANK, pet_option, torch_linear_init
from vlpet_jax.pet.registry import PetMethod, register

Array = jax.Array
LORA_RANK, LORA_ALPHA, LORA_DROPOUT = 128, 32.0, 0.1
LORA_TARGETS = ("q", "v")


class LoRA(nn.Module):
    """The low-rank update `(alpha / r) · dropout(x) A^T B^T` added to one projection."""

    rank: int
    alpha: float
    features: int  # output width of the adapted projection
    dropout_rate: float = LORA_DROPOUT
    dtype: Any = jnp.float32

    @nn.compact
    def __call__(self, x: Array, train: bool = False) -> Array:
        d_in = x.shape[-1]
        x = nn.Dropout(self.dropout_rate)(x, deterministic=not train)
        down = Dense(
            self.rank, (EMBED, PET_RANK), use_bias=False, kernel_init=torch_linear_init(d_in),
            dtype=self.dtype, name="down",
        )  # fmt: skip
        up = Dense(
            self.features, (PET_RANK, JOINED_KV), use_bias=False,
            kernel_init=nn.initializers.zeros_init(), dtype=self.dtype, name="up",
        )  # fmt: skip
        return up(down(x)) * (self.alpha / self.rank)


@dataclasses.dataclass(frozen=True)
class LoRAHooks(PetHooks):
    """LoRA on q and v of every attention of both stacks."""

    rank: int = LORA_RANK
    alpha: float = LORA_ALPHA
    dropout_rate: float = LORA_DROPOUT
    features: int = 768

    def projection(self, site: Site, name: str) -> nn.Module | None:
        del site
        if name not in LORA_TARGETS:
            return None
        return LoRA(self.rank, self.alpha, self.features, self.dropout_rate)


def released_bias_rules(backbone: BackboneConfig, pet: Mapping[str, Any]) -> list:
    """Parameters the released code trains with `"bias" in name` (BitFit, LoRA)."""
    found = rules.bias_rules(backbone)
    if pet_option(pet, "train_relative_attention_bias", True):
        found += rules.relative_attention_bias_rules(backbone)
    return found


@register("lora")
def _lora(backbone: BackboneConfig, pet: Mapping[str, Any]) -> PetMethod:
    hooks = LoRAHooks(
        rank=pet_option(pet, "lora_rank", LORA_RANK),
        alpha=float(pet_option(pet, "lora_alpha", LORA_ALPHA)),
        dropout_rate=float(pet_option(pet, "lora_dropout", LORA_DROPOUT)),
        features=backbone.inner_dim,
    )
    trainable = [rules.VISUAL, rules.PET, *released_bias_rules(backbone, pet)]
    return PetMethod(
        name="lora",
        hooks=hooks,
        rules=[*trainable, rules.FREEZE_REST],
        description=f"LoRA on q, v: r={hooks.rank}, alpha={hooks.alpha:g}, plus biases",
    )
