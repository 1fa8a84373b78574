"""Named backbone architectures, so a config can say `backbone=t5_base` without any files.

The base presets reproduce the backbones of SPEC.md §1 *after* the VL-T5 vocabulary resize
(BART 50265 + 200 = 50465 rows, T5 32100 + 100 = 32200 rows), which is the shape the paper's
parameter counts refer to and the shape `launch.inspect` needs without weights. When a config
points `config.model.checkpoint` at a Hugging Face directory, the architecture is read from its
`config.json` instead and a preset only picks the recipe (SPEC.md §8) for its family.

The tiny presets keep every structural feature of their family (post-LN + `layernorm_embedding`,
relative position bias, tied head) at sizes that run in seconds on a laptop CPU (`runlocal=True`,
the built-in synthetic benchmark). Their vocabulary has room for the 100 `<vis_extra_id>` rows the
visual embedding reads object-order codes from.
"""

from __future__ import annotations

from vlpet_jax.models.config import BackboneConfig

# Everything a BART checkpoint's config.json would say for facebook/bart-base (plus VL-T5's
# dropout 0.1 on attention and activations, which its trainer sets from `--dropout`).
_BART_COMMON = dict(
    family="bart",
    ffn_activation="gelu",
    layer_norm_eps=1e-5,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    activation_dropout_rate=0.1,
    pad_token_id=1,
    eos_token_id=2,
    bos_token_id=0,
    decoder_start_token_id=2,
    max_position_embeddings=1024,
    scale_embedding=False,
    tie_word_embeddings=True,
    scale_decoder_outputs=False,
)

_T5_COMMON = dict(
    family="t5",
    layer_norm_eps=1e-6,
    dropout_rate=0.1,
    attention_dropout_rate=0.1,
    pad_token_id=0,
    eos_token_id=1,
    decoder_start_token_id=0,
    relative_attention_num_buckets=32,
    relative_attention_max_distance=128,
)

# Tiny sizes: d 64, 2 + 2 layers, 4 heads of 16, FFN 128. 600 rows = a small word-level
# vocabulary plus the 200 VL-T5 special tokens.
_TINY = dict(
    vocab_size=600,
    d_model=64,
    num_heads=4,
    d_kv=16,
    d_ff=128,
    num_encoder_layers=2,
    num_decoder_layers=2,
)

PRESETS: dict[str, BackboneConfig] = {
    "bart_base": BackboneConfig(
        vocab_size=50465,
        d_model=768,
        num_heads=12,
        d_kv=64,
        d_ff=3072,
        num_encoder_layers=6,
        num_decoder_layers=6,
        **_BART_COMMON,
    ),
    "t5_base": BackboneConfig(
        vocab_size=32200,
        d_model=768,
        num_heads=12,
        d_kv=64,
        d_ff=3072,
        num_encoder_layers=12,
        num_decoder_layers=12,
        ffn_activation="relu",
        scale_decoder_outputs=True,
        tie_word_embeddings=True,
        **_T5_COMMON,
    ),
    # T5 v1.1 / flan-T5: gated-GELU FFN, separate LM head, no output scaling (SPEC.md §1).
    "flan_t5_base": BackboneConfig(
        vocab_size=32200,
        d_model=768,
        num_heads=12,
        d_kv=64,
        d_ff=2048,
        num_encoder_layers=12,
        num_decoder_layers=12,
        ffn_activation="gated-gelu",
        scale_decoder_outputs=False,
        tie_word_embeddings=False,
        **_T5_COMMON,
    ),
    "t5_small": BackboneConfig(
        vocab_size=32200,
        d_model=512,
        num_heads=8,
        d_kv=64,
        d_ff=2048,
        num_encoder_layers=6,
        num_decoder_layers=6,
        ffn_activation="relu",
        scale_decoder_outputs=True,
        tie_word_embeddings=True,
        **_T5_COMMON,
    ),
    "bart_tiny": BackboneConfig(**_TINY, **_BART_COMMON),
    "t5_tiny": BackboneConfig(
        ffn_activation="relu",
        scale_decoder_outputs=True,
        tie_word_embeddings=True,
        **_TINY,
        **_T5_COMMON,
    ),
}

# The CPU-sized stand-in of each family, used by `runlocal=True`.
TINY_PRESET = {"bart": "bart_tiny", "t5": "t5_tiny"}


def known_presets() -> list[str]:
    return sorted(PRESETS)


def get_preset(name: str) -> BackboneConfig:
    """The architecture called `name`; an unknown name lists the known ones."""
    try:
        return PRESETS[name]
    except KeyError:
        raise KeyError(
            f"unknown backbone preset {name!r}; known presets: {', '.join(known_presets())} "
            "(or set config.model.checkpoint to a Hugging Face directory)"
        ) from None


def is_tiny(name: str) -> bool:
    """Whether `name` is a CPU-sized preset (its PET modules take the tiny sizes too)."""
    return name in TINY_PRESET.values()
