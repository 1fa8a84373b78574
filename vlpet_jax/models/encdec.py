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

    def init_cache(
        self, enc_hidden: Array, enc_mask: Array, max_length: int, num_beams: int = 1
    ) -> dict:
        """Decode state for B items with `num_beams` rows each (row b*num_beams + g is beam g
        of item b, HF's order); `enc_hidden` has one row per item, not per beam.

        - `cross`: each layer's cross-attention K/V (B, H, K, d_kv), computed once; the
          `num_beams` rows of an item attend to them together.
        - `self`: each layer's self-attention K/V (B, H, num_beams*max_length, d_kv). A row writes
          its K/V into its own slot and never moves them.
        - `slots` (B*num_beams, max_length) int32: for each row and position, the slot whose K/V
          at that position belong to the row's ancestry. Beam search reorders this small table
          instead of copying every layer's K/V (`reorder_self_cache`); `decode_self` reads each
          row's own history through it.
        """
        cfg = self.cfg
        batch = enc_hidden.shape[0]
        zeros = jnp.zeros((batch, cfg.num_heads, num_beams * max_length, cfg.d_kv), self.dtype)
        cross = [
            dict(zip("kv", layer.cross_attn.project_kv(enc_hidden)))
            for layer in self.decoder_layers
        ]
        return {
            "self": [{"k": zeros, "v": zeros} for _ in self.decoder_layers],
            "slots": jnp.zeros((batch * num_beams, max_length), jnp.int32),
            "cross": cross,
            "cross_bias": mask_to_bias(enc_mask)[:, None, None, :],
        }

    def _mark_own_slots(self, cache: dict, index: Array) -> dict:
        """Step `index` writes each row's K/V into its own slot: record that in `slots`."""
        slots = cache["slots"]
        num_slots = slots.shape[0] // cache["cross_bias"].shape[0]
        own = (jnp.arange(slots.shape[0], dtype=jnp.int32) % num_slots)[:, None]
        return {**cache, "slots": jax.lax.dynamic_update_slice_in_dim(slots, own, index, 1)}

    def _step_decoder_layers(
        self, x: Array, cache: dict, index: Array, self_bias: Array, pet_context=None
    ) -> tuple[Array, dict]:
        new_self = []
        cache = self._mark_own_slots(cache, index)
        for layer, self_cache, cross in zip(self.decoder_layers, cache["self"], cache["cross"]):
            enc_kv = (cross["k"], cross["v"])
            self_cache = {**self_cache, "slots": cache["slots"]}
            x, self_cache = layer.decode_step(
                x, self_cache, index, self_bias, enc_kv, cache["cross_bias"], pet_context
            )
            new_self.append(self_cache)
        return x, {**cache, "self": new_self}


def reorder_self_cache(cache: dict, rows: Array) -> dict:
    """Beam search: make row i continue the history of row `rows[i]` (a row of the same item).

    Only the slot table moves; the self-attention K/V stay in the slots that wrote them.
    """
    return {**cache, "slots": jnp.take(cache["slots"], rows, axis=0)}
