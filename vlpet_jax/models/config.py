"""Backbone hyper-parameters, read from a Hugging Face `config.json`.

One frozen dataclass describes both families (T5 and BART) so that the model code, the checkpoint
loader, the inspection tools and the configs all agree on one set of names. It is hashable, so it
can sit on a Flax module and inside jit-static arguments.
"""

from __future__ import annotations

import dataclasses
import json
import os
from typing import Any, Literal

Family = Literal["t5", "bart"]


@dataclasses.dataclass(frozen=True)
class BackboneConfig:
    """Architecture of a T5 (v1, v1.1, flan) or BART encoder-decoder (SPEC.md §1)."""

    family: Family
    vocab_size: int
    d_model: int
    num_heads: int
    d_kv: int
    d_ff: int
    num_encoder_layers: int
    num_decoder_layers: int
    # "relu" (T5 v1), "gated-gelu" (T5 v1.1 / flan: gelu_new on wi_0 times wi_1), "gelu" (BART).
    ffn_activation: str
    layer_norm_eps: float
    dropout_rate: float = 0.1
    attention_dropout_rate: float = 0.0
    activation_dropout_rate: float = 0.0
    pad_token_id: int = 0
    eos_token_id: int = 1
    bos_token_id: int | None = None
    decoder_start_token_id: int = 0
    # T5 only.
    relative_attention_num_buckets: int = 32
    relative_attention_max_distance: int = 128
    # T5 v1 multiplies the decoder output by d_model**-0.5 before the (tied) LM head.
    scale_decoder_outputs: bool = True
    # False: a separate `lm_head` matrix (flan-T5 / T5 v1.1 checkpoints saved with one).
    tie_word_embeddings: bool = True
    # BART only.
    max_position_embeddings: int = 1024
    scale_embedding: bool = False

    @property
    def inner_dim(self) -> int:
        return self.num_heads * self.d_kv

    @property
    def is_t5(self) -> bool:
        return self.family == "t5"

    def replace(self, **changes: Any) -> BackboneConfig:
        return dataclasses.replace(self, **changes)

    @classmethod
    def from_hf_dict(cls, hf: dict[str, Any], source: str = "config.json") -> BackboneConfig:
        """Translate a Hugging Face config dict; unknown architectures are an error."""
        model_type = hf.get("model_type")
        if model_type in ("t5", "mt5"):
            return _t5_from_hf(hf, source)
        if model_type == "bart":
            return _bart_from_hf(hf, source)
        raise ValueError(
            f"{source}: field 'model_type' is {model_type!r}; vlpet_jax supports 't5' "
            "(T5 v1, v1.1, flan-T5) and 'bart'"
        )

    @classmethod
    def from_pretrained(cls, checkpoint_dir: str | os.PathLike) -> BackboneConfig:
        path = os.path.join(os.fspath(checkpoint_dir), "config.json")
        if not os.path.isfile(path):
            raise FileNotFoundError(
                f"{path}: not found; a Hugging Face checkpoint directory needs config.json"
            )
        with open(path) as f:
            try:
                hf = json.load(f)
            except json.JSONDecodeError as err:
                raise ValueError(f"{path}: not valid JSON ({err})") from err
        return cls.from_hf_dict(hf, source=path)


def _require(hf: dict[str, Any], key: str, source: str) -> Any:
    if key not in hf:
        raise KeyError(f"{source}: required field {key!r} is missing")
    return hf[key]


def _t5_from_hf(hf: dict[str, Any], source: str) -> BackboneConfig:
    ffn = hf.get("feed_forward_proj", "relu")
    if ffn not in ("relu", "gated-gelu", "gated-gelu_new"):
        raise ValueError(
            f"{source}: field 'feed_forward_proj' is {ffn!r}; expected 'relu' or 'gated-gelu'"
        )
    # transformers 5 always ties T5's head and records the v1.1 "no scaling" choice separately;
    # older checkpoints encode both in `tie_word_embeddings`.
    tie_flag = hf.get("tie_word_embeddings", True)
    scale = hf.get("scale_decoder_outputs", tie_flag is not False)
    num_layers = _require(hf, "num_layers", source)
    return BackboneConfig(
        family="t5",
        vocab_size=_require(hf, "vocab_size", source),
        d_model=_require(hf, "d_model", source),
        num_heads=_require(hf, "num_heads", source),
        d_kv=_require(hf, "d_kv", source),
        d_ff=_require(hf, "d_ff", source),
        num_encoder_layers=num_layers,
        num_decoder_layers=hf.get("num_decoder_layers") or num_layers,
        ffn_activation="relu" if ffn == "relu" else "gated-gelu",
        layer_norm_eps=hf.get("layer_norm_epsilon", 1e-6),
        dropout_rate=hf.get("dropout_rate", 0.1),
        attention_dropout_rate=hf.get("dropout_rate", 0.1),
        pad_token_id=hf.get("pad_token_id", 0) or 0,
        eos_token_id=_first(hf.get("eos_token_id", 1)),
        decoder_start_token_id=hf.get("decoder_start_token_id", hf.get("pad_token_id", 0)) or 0,
        relative_attention_num_buckets=hf.get("relative_attention_num_buckets", 32),
        relative_attention_max_distance=hf.get("relative_attention_max_distance", 128),
        scale_decoder_outputs=bool(scale),
        tie_word_embeddings=tie_flag is not False,
    )


def _bart_from_hf(hf: dict[str, Any], source: str) -> BackboneConfig:
    enc_heads = _require(hf, "encoder_attention_heads", source)
    dec_heads = hf.get("decoder_attention_heads", enc_heads)
    enc_ffn = _require(hf, "encoder_ffn_dim", source)
    dec_ffn = hf.get("decoder_ffn_dim", enc_ffn)
    if enc_heads != dec_heads or enc_ffn != dec_ffn:
        raise ValueError(
            f"{source}: encoder and decoder differ (heads {enc_heads} vs {dec_heads}, ffn "
            f"{enc_ffn} vs {dec_ffn}); vlpet_jax supports symmetric BART only"
        )
    act = hf.get("activation_function", "gelu")
    if act != "gelu":
        raise ValueError(f"{source}: field 'activation_function' is {act!r}; expected 'gelu'")
    d_model = _require(hf, "d_model", source)
    return BackboneConfig(
        family="bart",
        vocab_size=_require(hf, "vocab_size", source),
        d_model=d_model,
        num_heads=enc_heads,
        d_kv=d_model // enc_heads,
        d_ff=enc_ffn,
        num_encoder_layers=_require(hf, "encoder_layers", source),
        num_decoder_layers=_require(hf, "decoder_layers", source),
        ffn_activation="gelu",
        layer_norm_eps=1e-5,
        dropout_rate=hf.get("dropout", 0.1),
        attention_dropout_rate=hf.get("attention_dropout", 0.0),
        activation_dropout_rate=hf.get("activation_dropout", 0.0),
        pad_token_id=hf.get("pad_token_id", 1),
        eos_token_id=_first(hf.get("eos_token_id", 2)),
        bos_token_id=hf.get("bos_token_id", 0),
        decoder_start_token_id=hf.get("decoder_start_token_id", 2),
        max_position_embeddings=hf.get("max_position_embeddings", 1024),
        scale_embedding=bool(hf.get("scale_embedding", False)),
        tie_word_embeddings=True,
        scale_decoder_outputs=False,
    )


def _first(token_id: int | list[int]) -> int:
    return token_id[0] if isinstance(token_id, list) else token_id
