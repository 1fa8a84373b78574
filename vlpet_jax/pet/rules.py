"""Trainability rule fragments shared by the PET methods (paths of `vlpet_jax.models.vl`).

The VL model's tree is `{"backbone": ..., "visual_embedding": ...}`; PET modules live under
`pet_*` names anywhere in the backbone (STYLE.md: one regex each).
"""

from __future__ import annotations

from collections.abc import Sequence

from vlpet_jax.models.config import BackboneConfig

PET = (r"(.*/)?pet_[^/]+(/.*)?", True)
VISUAL = (r"visual_embedding/.*", True)
FREEZE_REST = (r".*", False)
TRAIN_ALL = (r".*", True)
# BART's `final_logits_bias` is a registered buffer in PyTorch: the released code never trains it,
# not even in full fine-tuning (it stays zero).
BUFFERS_FROZEN = (r"backbone/final_logits_bias", False)
# Weight-decay exceptions (see `released_decay_rules`): Compacter's PHM layers name their bias
# `b`, which the released "bias" substring rule does not exempt.
PHM_BIAS_DECAYED = (r"(.*/)?pet_[^/]+/mod/(down|up)/bias", True)
# HyperFormer's `bias_generator` weights and its `LayerNorm` weight match the released rule.
HYPER_NETWORK_NO_DECAY = (r"pet_shared/[^/]+/([^/]+_bias_gen|task_norm)/(kernel|scale)", False)


def encoder_norm_rules(backbone: BackboneConfig) -> list[tuple[str, bool]]:
    """Every encoder norm: VL-PET's lightweight encoder design (SPEC.md §4)."""
    if backbone.is_t5:
        return [
            (r"backbone/encoder_layers_\d+/(self_attn|ff)_norm/scale", True),
            (r"backbone/encoder_final_norm/scale", True),
        ]
    return [
        (r"backbone/encoder_layers_\d+/(self_attn|ff)_norm/(scale|bias)", True),
        (r"backbone/encoder_layernorm_embedding/(scale|bias)", True),
    ]


def all_norm_rules(backbone: BackboneConfig) -> list[tuple[str, bool]]:
    """Every norm of encoder and decoder: adapters, Compacter, HyperFormer (SPEC.md §5)."""
    if backbone.is_t5:
        return [
            (
                r"backbone/(en|de)coder_(layers_\d+/(self_attn|cross_attn|ff)_norm|final_norm)/scale",
                True,
            )
        ]
    return [
        (r"backbone/(en|de)coder_layers_\d+/(self_attn|cross_attn|ff)_norm/(scale|bias)", True),
        (r"backbone/(en|de)coder_layernorm_embedding/(scale|bias)", True),
    ]


def bias_rules(backbone: BackboneConfig) -> list[tuple[str, bool]]:
    """Every backbone bias, linear and norm (BitFit; LoRA also trains them). T5 has none."""
    if backbone.is_t5:
        return []
    return [(r"backbone/.*/bias", True)]


def relative_attention_bias_rules(backbone: BackboneConfig) -> list[tuple[str, bool]]:
    """T5's relative-position tables (`relative_attention_bias` in Hugging Face names).

    The released code selects BitFit's and LoRA's extra parameters with `"bias" in name`, which
    also matches these two tables on T5 (SPEC.md §5: where paper and code differ, the code wins).
    BART has no such table.
    """
    if backbone.is_t5:
        return [(r"backbone/(en|de)coder_relative_bias/embedding", True)]
    return []


def released_decay_rules(
    backbone: BackboneConfig, exceptions: Sequence[tuple[str, bool]] = ()
) -> list[tuple[str, bool]]:
    """Weight decay as the released trainer assigns it (SPEC.md §8), as `(regex, decay)` rules.

    The released code exempts every parameter whose *name* contains "bias" or "LayerNorm.weight".
    On our paths that is every `bias` leaf, BART's `final_logits_bias` and T5's relative-position
    tables (`relative_attention_bias`); the norms of BART and T5 are named `*layer_norm*`, so their
    scales are decayed. `exceptions` go first: a method whose released names decide otherwise
    (Compacter's PHM bias is named `b`; HyperFormer's `bias_generator` and `LayerNorm`) lists them.
    """
    family = (
        [(r"backbone/(en|de)coder_relative_bias/embedding", False)]
        if backbone.is_t5
        else [(r"backbone/final_logits_bias", False)]
    )
    return [*exceptions, (r"(.*/)?bias", False), *family, (r".*", True)]
