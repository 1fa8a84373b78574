"""T5 (v1, v1.1, flan-T5) encoder-decoder in Flax linen, numerically equal to Hugging Face's.

Pre-norm blocks with RMSNorm, relative position bias computed once per stack and shared by all
layers, no attention scaling, no biases (SPEC.md §1). PET modules attach at `PetHooks` sites: on
T5 a sub-layer hook sees the raw residual stream X and the sub-layer output H = F(RMSNorm(X)).
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
    EMBED,
    MLP,
    Attention,
    Dense,
    Embed,
    RelativePositionBias,
    RMSNorm,
    causal_mask,
    gelu_tanh,
    mask_to_bias,
    normal_init,
)

Array = jax.Array


class T5FeedForward(nn.Module):
    """ReLU (v1) or gated-GELU (v1.1 / flan) feed-forward, no biases."""

    cfg: BackboneConfig
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg = self.cfg
        common = dict(use_bias=False, dtype=self.dtype, param_dtype=self.param_dtype)
        wi_init = normal_init(cfg.d_model**-0.5)
        if cfg.ffn_activation == "gated-gelu":
            self.wi_0 = Dense(cfg.d_ff, (EMBED, MLP), kernel_init=wi_init, **common)
            self.wi_1 = Dense(cfg.d_ff, (EMBED, MLP), kernel_init=wi_init, **common)
        else:
            self.wi = Dense(cfg.d_ff, (EMBED, MLP), kernel_init=wi_init, **common)
        self.wo = Dense(
            cfg.d_model, (MLP, EMBED), kernel_init=normal_init(cfg.d_ff**-0.5), **common
        )
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def __call__(self, x: Array, train: bool) -> Array:
        if self.cfg.ffn_activation == "gated-gelu":
            h = gelu_tanh(self.wi_0(x)) * self.wi_1(x)
        else:
            h = jax.nn.relu(self.wi(x))
        return self.wo(self.dropout(h, deterministic=not train))


def _attention(cfg: BackboneConfig, site: Site, hooks: PetHooks, dtype, param_dtype) -> Attention:
    # Hugging Face's T5 `_init_weights`: k and v N(0, d_model^-0.5), q N(0, (d_model·d_kv)^-0.5)
    # (T5 does not scale its logits by d_kv^-0.5, so the init does: the logits start O(1)),
    # o N(0, (heads·d_kv)^-0.5).
    return Attention(
        num_heads=cfg.num_heads,
        d_kv=cfg.d_kv,
        d_model=cfg.d_model,
        site=site,
        hooks=hooks,
        use_bias=False,
        scale_logits=False,
        kernel_init=normal_init(cfg.d_model**-0.5),
        q_kernel_init=normal_init((cfg.d_model * cfg.d_kv) ** -0.5),
        o_kernel_init=normal_init(cfg.inner_dim**-0.5),
        dropout_rate=cfg.attention_dropout_rate,
        dtype=dtype,
        param_dtype=param_dtype,
    )


class T5Block(nn.Module):
    """One encoder block (self-attn, FFN) or decoder block (self-attn, cross-attn, FFN)."""

    cfg: BackboneConfig
    stack: str
    layer: int
    hooks: PetHooks
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    @property
    def is_decoder(self) -> bool:
        return self.stack == "decoder"

    def setup(self) -> None:
        cfg, hooks = self.cfg, self.hooks
        norm = dict(eps=cfg.layer_norm_eps, dtype=self.dtype, param_dtype=self.param_dtype)
        self_site = Site(self.stack, self.layer, "self_attn")
        self.self_attn_norm = RMSNorm(**norm)
        self.self_attn = _attention(cfg, self_site, hooks, self.dtype, self.param_dtype)
        self.pet_self_attn = hooks.sublayer(self_site)
        if self.is_decoder:
            cross_site = Site(self.stack, self.layer, "cross_attn")
            self.cross_attn_norm = RMSNorm(**norm)
            self.cross_attn = _attention(cfg, cross_site, hooks, self.dtype, self.param_dtype)
            self.pet_cross_attn = hooks.sublayer(cross_site)
        ff_site = Site(self.stack, self.layer, "ff")
        self.ff_norm = RMSNorm(**norm)
        self.ff = T5FeedForward(cfg, dtype=self.dtype, param_dtype=self.param_dtype)
        self.pet_ff = hooks.sublayer(ff_site)
        self.dropout = nn.Dropout(cfg.dropout_rate)

    def _residual(
        self,
        x: Array,
        h: Array,
        pet: nn.Module | None,
        train: bool,
        pet_context=None,
        token_mask: Array | None = None,
    ) -> Array:
        if pet is not None:
            h = apply_sublayer_hook(pet, x, h, train, pet_context, token_mask)
        return x + self.dropout(h, deterministic=not train)

    def _feed_forward(
        self, x: Array, train: bool, pet_context=None, token_mask: Array | None = None
    ) -> Array:
        h = self.ff(self.ff_norm(x), train)
        return self._residual(x, h, self.pet_ff, train, pet_context, token_mask)

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
        normed = self.self_attn_norm(x)
        h = self.self_attn(normed, normed, self_bias, train)
        x = self._residual(x, h, self.pet_self_attn, train, pet_context, token_mask)
        if self.is_decoder:
            h = self.cross_attn.attend(self.cross_attn_norm(x), *enc_kv, cross_bias, train)
            x = self._residual(x, h, self.pet_cross_attn, train, pet_context)
        return self._feed_forward(x, train, pet_context, token_mask)

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
        h, self_cache = self.self_attn.decode_self(
            self.self_attn_norm(x), self_cache, index, self_bias
        )
        x = self._residual(x, h, self.pet_self_attn, False, pet_context)
        h = self.cross_attn.attend(self.cross_attn_norm(x), *enc_kv, cross_bias)
        x = self._residual(x, h, self.pet_cross_attn, False, pet_context)
        return self._feed_forward(x, False, pet_context), self_cache


class T5Model(EncoderDecoderMixin, nn.Module):
    """The whole encoder-decoder. Entry points: `__call__`, `encode`, `decode`, `init_cache`,
    `decode_step` (use `model.apply(..., method=...)`)."""

    cfg: BackboneConfig
    hooks: PetHooks = PetHooks()
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def setup(self) -> None:
        cfg, hooks = self.cfg, self.hooks
        dt = dict(dtype=self.dtype, param_dtype=self.param_dtype)
        self.shared = Embed(cfg.vocab_size, cfg.d_model, embedding_init=normal_init(1.0), **dt)
        rel = dict(
            num_buckets=cfg.relative_attention_num_buckets,
            max_distance=cfg.relative_attention_max_distance,
            num_heads=cfg.num_heads,
            embedding_init=normal_init(cfg.d_model**-0.5),
            param_dtype=self.param_dtype,
        )
        self.encoder_relative_bias = RelativePositionBias(bidirectional=True, **rel)
        self.decoder_relative_bias = RelativePositionBias(bidirectional=False, **rel)
        self.encoder_layers = [
            T5Block(cfg, "encoder", i, hooks, **dt) for i in range(cfg.num_encoder_layers)
        ]
        self.decoder_layers = [
            T5Block(cfg, "decoder", i, hooks, **dt) for i in range(cfg.num_decoder_layers)
        ]
        norm = dict(eps=cfg.layer_norm_eps, **dt)
        self.encoder_final_norm = RMSNorm(**norm)
        self.decoder_final_norm = RMSNorm(**norm)
        if not cfg.tie_word_embeddings:
            self.lm_head = Dense(
                cfg.vocab_size, (EMBED, "vocab"), use_bias=False, kernel_init=normal_init(1.0), **dt
            )
        self.pet_encoder_prefix = hooks.encoder_prefix()
        self.dropout = nn.Dropout(cfg.dropout_rate)

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
        """Encoder states (B, N, d) and the keep-mask (B, N) the decoder attends with.

        `extra_embeds` (visual tokens) are appended after the text; relative position bias covers
        the text×text block only and is 0 for every entry involving an extra token (SPEC.md §2).
        `pet_context` is the output of the hooks' shared module, if any (see `hooks.py`).
        """
        x = self.shared(input_ids)
        mask = attention_mask.astype(bool)
        num_text = x.shape[1]
        if extra_embeds is not None:
            x = jnp.concatenate([x, extra_embeds.astype(x.dtype)], axis=1)
            if extra_mask is None:
                extra_mask = jnp.ones(extra_embeds.shape[:2], bool)
            mask = jnp.concatenate([mask, extra_mask.astype(bool)], axis=1)
        if self.pet_encoder_prefix is not None:
            # Prompt vectors go before the text and share its relative-position block.
            before = x.shape[1]
            x, mask = self.pet_encoder_prefix(x, mask, train=train)
            num_text += x.shape[1] - before
        x = self.dropout(x, deterministic=not train)
        x = nn.with_logical_constraint(x, ("batch", "length", EMBED))
        positions = jnp.arange(num_text)
        text_bias = self.encoder_relative_bias(positions, positions)
        extra = x.shape[1] - num_text
        position_bias = jnp.pad(text_bias, ((0, 0), (0, 0), (0, extra), (0, extra)))
        bias = position_bias + mask_to_bias(mask)[:, None, None, :]
        for layer in self.encoder_layers:
            x = layer(x, bias, train=train, pet_context=pet_context, token_mask=mask)
        x = self.dropout(self.encoder_final_norm(x), deterministic=not train)
        return x, mask

    # ---------------------------------------------------------------- decoder

    def _logits(self, x: Array) -> Array:
        if self.cfg.scale_decoder_outputs:
            x = x * (self.cfg.d_model**-0.5)
        if self.cfg.tie_word_embeddings:
            logits = self.shared.attend(x)
        else:
            logits = self.lm_head(x)
        return logits.astype(jnp.float32)

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
        x = self.dropout(self.shared(decoder_input_ids), deterministic=not train)
        length = x.shape[1]
        positions = jnp.arange(length)
        keep = causal_mask(positions, length)[None, None]
        if decoder_attention_mask is not None:
            keep = keep & decoder_attention_mask.astype(bool)[:, None, None, :]
        self_bias = self.decoder_relative_bias(positions, positions) + mask_to_bias(keep)
        x = self._run_decoder_layers(x, self_bias, enc_hidden, enc_mask, train, pet_context)
        x = self.dropout(self.decoder_final_norm(x), deterministic=not train)
        return self._logits(x)

    # ---------------------------------------------------------------- incremental decoding

    def decode_step(
        self, tokens: Array, cache: dict, index: Array, pet_context=None
    ) -> tuple[Array, dict]:
        """Logits (N, vocab) for the token after `tokens` (N,) at position `index`."""
        x = self.shared(tokens[:, None])
        keys = jnp.arange(cache["slots"].shape[1])
        query = jnp.reshape(index, (1,))
        self_bias = self.decoder_relative_bias(query, keys) + mask_to_bias(keys <= index)
        x, cache = self._step_decoder_layers(x, cache, index, self_bias, pet_context)
        logits = self._logits(self.decoder_final_norm(x))[:, 0]
        return logits, cache
