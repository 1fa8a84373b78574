"""Tiny backbones and batches shared by the PET tests (random init, no checkpoint)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from vlpet_jax.models.config import BackboneConfig

# One width (d_model = d_ff = vocab = features = 32) and few lengths (text = visual = 4, encoder
# 4 + 4 = decoder 8) wherever the architecture allows: the tests run eagerly, and every new shape
# of an op costs a compilation, which dominates their run time.
BATCH, TEXT_LEN, VIS_LEN, DEC_LEN = 2, 4, 4, 8
D_MODEL = FEAT_DIM = VOCAB = 32


def tiny_config(family: str, layers: int = 1) -> BackboneConfig:
    """d_model 32, `layers` encoder and decoder layers, no backbone dropout: the tests run eagerly
    (compiling a program per method costs more than running it), so every op counts."""
    common = dict(
        vocab_size=VOCAB, d_model=D_MODEL, num_heads=2, d_kv=16, d_ff=D_MODEL,
        num_encoder_layers=layers, num_decoder_layers=layers, dropout_rate=0.0,
    )  # fmt: skip
    if family == "t5":
        return BackboneConfig(
            family="t5", ffn_activation="relu", layer_norm_eps=1e-6,
            relative_attention_num_buckets=8, relative_attention_max_distance=16, **common,
        )  # fmt: skip
    return BackboneConfig(
        family="bart", ffn_activation="gelu", layer_norm_eps=1e-5, pad_token_id=1,
        eos_token_id=2, bos_token_id=0, decoder_start_token_id=2, max_position_embeddings=32,
        scale_decoder_outputs=False, **common,
    )  # fmt: skip


def tiny_batch(seed: int = 0, task_id: int = 2) -> dict:
    """Random text (the second row padded), features, boxes and decoder ids of one task."""
    rng = np.random.default_rng(seed)
    mask = np.ones((BATCH, TEXT_LEN), np.int32)
    mask[1, -2:] = 0
    boxes = np.sort(rng.uniform(size=(BATCH, VIS_LEN, 4)), axis=-1)
    return dict(
        input_ids=jnp.asarray(rng.integers(3, VOCAB, (BATCH, TEXT_LEN)), jnp.int32),
        attention_mask=jnp.asarray(mask),
        vis_feats=jnp.asarray(rng.normal(size=(BATCH, VIS_LEN, FEAT_DIM)), jnp.float32),
        vis_pos=jnp.asarray(boxes[..., [0, 2, 1, 3]], jnp.float32),
        decoder_input_ids=jnp.asarray(rng.integers(3, VOCAB, (BATCH, DEC_LEN)), jnp.int32),
        task_ids=jnp.full((BATCH,), task_id, jnp.int32),
    )
