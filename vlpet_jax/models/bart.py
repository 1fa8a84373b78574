"""BART encoder-decoder in Flax linen, numerically equal to Hugging Face's.

Post-LN blocks with LayerNorm, learned positions with offset 2 on text only, `layernorm_embedding`,
exact-GELU FFN, scaled attention with biases, tied LM head plus `final_logits_bias` (SPEC.md §1).
On BART a sub-layer hook sees the sub-layer input X (already normed by the previous block) and the
sub-layer output H before dropout and the residual add.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.encdec import EncoderDecoderMixin
from vlpet_jax.models.hooks import PetHooks, Site, apply_sublayer_hook
from vlpet_jax.models.layers import (
    ABSPOS,
    EMBED,
    MLP,
    VOCAB,
    Attention,
    Dense,
    Embed,
    LayerNorm,
    causal_mask,
    gelu_exact,
    logical_param,
    mask_to_bias,
    normal_init,
    normal_init_zero_row,
)

Array = jax.Array
POSITION_OFFSET = 2  # BART's learned positions start at row 2 (a fairseq legacy).


class BartFeedForward(nn.Module):
    cfg: BackboneConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        dense = dict(kernel_init=normal_init(0.02), dtype=self.dtype, param_dtype=self.param_dtype)
        self.fc1 = Dense(self.cfg.d_ff, (EMBED, MLP), **dense)
        self.fc2 = Dense(self.cfg.d_model, (MLP, EMBED), **dense)
        self.activation_dropout = nn.Dropout(self.cfg.activation_dropout_rate)

    def __call__(self, x: Array, train: bool) -> Array:
        h = gelu_exact(self.fc1(x))
        return self.fc2(self.activation_dropout(h, deterministic=not train))


class BartBlock(nn.Module):
    """One post-LN encoder layer (self-attn, FFN) or decoder layer (+ cross-attn)."""

    cfg: BackboneConfig
    stack: str
    layer: int
    hooks: PetHooks
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def is_decoder(self) -> bool:
        return self.stack == "decoder"

    def _attention(self, kind: str) -> Attention:
        cfg = self.cfg
        return Attention(
            num_heads=cfg.num_heads,
            d_kv=cfg.d_kv,
            d_model=cfg.d_model,
            site=Site(self.stack, self.layer, kind),
            hooks=self.hooks,
            use_bias=True,
            scale_logits=True,
            kernel_init=normal_init(0.02),
            dropout_rate=cfg.attention_dropout_rate,
            dtype=self.dtype,
            param_dtype=self.param_dtype,
        )

    def setup(self) -> None:
        cfg, hooks = self.cfg, self.hooks
        norm = dict(eps=cfg.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
        self.self_attn = self._attention("self_attn")
        self.self_attn_norm = LayerNorm(**norm)
        self.pet_self_attn = hooks.sublayer(Site(self.stack, self.layer, "self_attn"))
        if self.is_decoder:
            self.cross_attn = self._attention("cross_attn")
            self.cross_attn_norm = LayerNorm(**norm)
            self.pet_cross_attn = hooks.sublayer(Site(self.stack, self.layer, "cross_attn"))
        self.ff = BartFeedForward(cfg, dtype=self.dtype, param_dtype=self.param_dtype)
        self.ff_norm = LayerNorm(**norm)
        self.pet_ff = hooks.sublayer(Site(self.stack, self.layer, "ff"))
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def _residual(self, x, h, pet, norm, train: bool, pet_context=None, token_mask=None) -> Array:
        if pet is not None:
            h = apply_sublayer_hook(pet, x, h, train, pet_context, token_mask)
        return norm(x + self.dropout(h, deterministic=not train))

    def _feed_forward(self, x: Array, train: bool, pet_context=None, token_mask=None) -> Array:
        h = self.ff(x, train)
        return self._residual(x, h, self.pet_ff, self.ff_norm, train, pet_context, token_mask)

    def __call__(
        self,
        x: Array,
        self_bias: Array,
        enc_kv: tuple[Array, Array] | None = None,
        cross_bias: Array | None = None,
        train: bool = False,
        pet_context=None,
        token_mask: Array | None = None,
    ) -> Array:
        """`token_mask` (B, N): the encoder's keep-mask, for hooks that pool over tokens."""
        ctx = pet_context
        h = self.self_attn(x, x, self_bias, train)
        x = self._residual(x, h, self.pet_self_attn, self.self_attn_norm, train, ctx, token_mask)
        if self.is_decoder:
            h = self.cross_attn.attend(x, *enc_kv, cross_bias, train)
            x = self._residual(x, h, self.pet_cross_attn, self.cross_attn_norm, train, ctx)
        return self._feed_forward(x, train, ctx, token_mask)

    def decode_step(
        self,
        x: Array,
        self_cache: dict,
        index: Array,
        self_bias: Array,
        enc_kv,
        cross_bias,
        pet_context=None,
    ) -> tuple[Array, dict]:
        ctx = pet_context
        h, self_cache = self.self_attn.decode_self(x, self_cache, index, self_bias)
        x = self._residual(x, h, self.pet_self_attn, self.self_attn_norm, False, ctx)
        h = self.cross_attn.attend(x, *enc_kv, cross_bias)
        x = self._residual(x, h, self.pet_cross_attn, self.cross_attn_norm, False, ctx)
        return self._feed_forward(x, False, ctx), self_cache


class BartModel(EncoderDecoderMixin, nn.Module):
    """The whole encoder-decoder; same entry points as `T5Model`."""

    cfg: BackboneConfig
    hooks: PetHooks = PetHooks()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg, hooks = self.cfg, self.hooks
        dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        # Hugging Face's BART `_init_weights`: every Linear and Embedding N(0, init_std = 0.02),
        # biases 0, the token table's padding row 0, norms 1/0, `final_logits_bias` 0.
        self.shared = Embed(
            cfg.vocab_size,
            cfg.d_model,
            embedding_init=normal_init_zero_row(0.02, cfg.pad_token_id),
            **dt,
        )
        positions = cfg.max_position_embeddings + POSITION_OFFSET
        self.encoder_positions = Embed(
            positions, cfg.d_model, axes=(ABSPOS, EMBED), embedding_init=normal_init(0.02), **dt
        )
        self.decoder_positions = Embed(
            positions, cfg.d_model, axes=(ABSPOS, EMBED), embedding_init=normal_init(0.02), **dt
        )
        norm = dict(eps=cfg.layer_norm_eps, **dt)
        self.encoder_layernorm_embedding = LayerNorm(**norm)
        self.decoder_layernorm_embedding = LayerNorm(**norm)
        self.encoder_layers = [
            BartBlock(cfg, "encoder", i, hooks, **dt) for i in range(cfg.num_encoder_layers)
        ]
        self.decoder_layers = [
            BartBlock(cfg, "decoder", i, hooks, **dt) for i in range(cfg.num_decoder_layers)
        ]
        self.pet_encoder_prefix = hooks.encoder_prefix()
        self.dropout = nn.Dropout(cfg.dropout_rate)
        self.embed_scale = cfg.d_model**0.5 if cfg.scale_embedding else 1.0
        # A zero buffer in Hugging Face; a (frozen) parameter here so it travels with the tree.
        self.final_logits_bias = logical_param(
            self, "final_logits_bias", nn.initializers.zeros_init(), (cfg.vocab_size,),
            (VOCAB,), self.param_dtype,
        )  # fmt: skip

    # ---------------------------------------------------------------- encoder

    def encode(
        self,
        input_ids: Array,
        attention_mask: Array,
        extra_embeds: Array | None = None,
        extra_mask: Array | None = None,
        train: bool = False,
        pet_context=None,
    ) -> tuple[Array, Array]:
        """Encoder states (B, N, d) and keep-mask (B, N); positions and `layernorm_embedding`
        cover the text only, `extra_embeds` (visual tokens) are appended after it (SPEC.md §2).
        `pet_context` is the output of the hooks' shared module, if any (see `hooks.py`)."""
        length = input_ids.shape[1]
        positions = jnp.arange(length) + POSITION_OFFSET
        x = self.shared(input_ids) * self.embed_scale + self.encoder_positions(positions)[None]
        mask = attention_mask.astype(bool)
        if self.pet_encoder_prefix is not None:
            # Prompt tuning: after positions, before layernorm_embedding (SPEC.md §5).
            x, mask = self.pet_encoder_prefix(x, mask, train=train)
        x = self.encoder_layernorm_embedding(x)
        if extra_embeds is not None:
            x = jnp.concatenate([x, extra_embeds.astype(x.dtype)], axis=1)
            if extra_mask is None:
                extra_mask = jnp.ones(extra_embeds.shape[:2], bool)
            mask = jnp.concatenate([mask, extra_mask.astype(bool)], axis=1)
        x = self.dropout(x, deterministic=not train)
        x = nn.with_logical_constraint(x, ("batch", "length", EMBED))
        bias = mask_to_bias(mask)[:, None, None, :]
        for layer in self.encoder_layers:
            x = layer(x, bias, train=train, pet_context=pet_context, token_mask=mask)
        return x, mask

    # ---------------------------------------------------------------- decoder

    def _logits(self, x: Array) -> Array:
        logits = self.shared.attend(x).astype(jnp.float32)
        return logits + self.final_logits_bias.astype(jnp.float32)

    def _embed_decoder(self, ids: Array, positions: Array, train: bool) -> Array:
        x = self.shared(ids) * self.embed_scale + self.decoder_positions(
            positions + POSITION_OFFSET
        )
        x = self.decoder_layernorm_embedding(x)
        return self.dropout(x, deterministic=not train)

    def decode(
        self,
        decoder_input_ids: Array,
        enc_hidden: Array,
        enc_mask: Array,
        decoder_attention_mask: Array | None = None,
        train: bool = False,
        pet_context=None,
    ) -> Array:
        """Teacher-forced logits (B, T, vocab) for every decoder position."""
        length = decoder_input_ids.shape[1]
        positions = jnp.arange(length)
        x = self._embed_decoder(decoder_input_ids, positions[None], train)
        keep = causal_mask(positions, length)[None, None]
        if decoder_attention_mask is not None:
            keep = keep & decoder_attention_mask.astype(bool)[:, None, None, :]
        self_bias = mask_to_bias(keep)
        x = self._run_decoder_layers(x, self_bias, enc_hidden, enc_mask, train, pet_context)
        return self._logits(x)

    # ---------------------------------------------------------------- incremental decoding

    def decode_step(
        self, tokens: Array, cache: dict, index: Array, pet_context=None
    ) -> tuple[Array, dict]:
        """Logits (N, vocab) for the token after `tokens` (N,) at position `index`."""
        x = self._embed_decoder(tokens[:, None], jnp.reshape(index, (1, 1)), False)
        self_bias = mask_to_bias(jnp.arange(cache["slots"].shape[1]) <= index)
        x, cache = self._step_decoder_layers(x, cache, index, self_bias, pet_context)
        return self._logits(x)[:, 0], cache
