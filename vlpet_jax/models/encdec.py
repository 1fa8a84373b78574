"""What T5 and BART share once their embeddings and biases are built: the call signature, the
decoder layer loops, and the incremental-decoding cache.

Both backbones define `shared`, `decoder_layers`, `encode`, `decode` and `_logits`; this mixin
adds the parts that do not depend on the family.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from vlpet_jax.models.layers import mask_to_bias

Array = jax.Array


class EncoderDecoderMixin:
    def __call__(
        self,
        input_ids: Array,
        attention_mask: Array,
        decoder_input_ids: Array,
        decoder_attention_mask: Array | None = None,
        extra_embeds: Array | None = None,
        extra_mask: Array | None = None,
        train: bool = False,
    ) -> Array:
        """Teacher-forced logits (B, T, vocab); `extra_embeds` are appended to the encoder input."""
        enc_hidden, enc_mask = self.encode(
            input_ids, attention_mask, extra_embeds, extra_mask, train=train
        )
        return self.decode(decoder_input_ids, enc_hidden, enc_mask, decoder_attention_mask, train)

    def _run_decoder_layers(
        self,
        x: Array,
        self_bias: Array,
        enc_hidden: Array,
        enc_mask: Array,
        train: bool,
        pet_context=None,
    ) -> Array:
        cross_bias = mask_to_bias(enc_mask)[:, None, None, :]
        for layer in self.decoder_layers:
            enc_kv = layer.cross_attn.project_kv(enc_hidden, train)
            x = layer(x, self_bias, enc_kv, cross_bias, train=train, pet_context=pet_context)
        return x

    def init_cache(self, enc_hidden: Array, enc_mask: Array, max_length: int) -> dict:
        """Decode state: empty self-attention K/V of `max_length`; cross K/V computed once.

        Every leaf has the batch (times beams) as its leading axis. Only `self` changes per step,
        so beam search reorders only `self` (see `reorder_self_cache`).
        """
        cfg = self.cfg
        zeros = jnp.zeros((enc_hidden.shape[0], max_length, cfg.num_heads, cfg.d_kv), self.dtype)
        cross = [
            dict(zip("kv", layer.cross_attn.project_kv(enc_hidden)))
            for layer in self.decoder_layers
        ]
        return {
            "self": [{"k": zeros, "v": zeros} for _ in self.decoder_layers],
            "cross": cross,
            "cross_bias": mask_to_bias(enc_mask)[:, None, None, :],
        }

    def _step_decoder_layers(
        self, x: Array, cache: dict, index: Array, self_bias: Array, pet_context=None
    ) -> tuple[Array, dict]:
        new_self = []
        for layer, self_cache, cross in zip(self.decoder_layers, cache["self"], cache["cross"]):
            enc_kv = (cross["k"], cross["v"])
            x, self_cache = layer.decode_step(
                x, self_cache, index, self_bias, enc_kv, cache["cross_bias"], pet_context
            )
            new_self.append(self_cache)
        return x, {**cache, "self": new_self}


def reorder_self_cache(cache: dict, rows: Array) -> dict:
    """Beam search: make row i of the self-attention cache a copy of row `rows[i]`."""
    self_cache = jax.tree.map(lambda leaf: jnp.take(leaf, rows, axis=0), cache["self"])
    return {**cache, "self": self_cache}
