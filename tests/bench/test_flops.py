"""The train-step FLOP counter: a hand count on a toy config, and the analytic count against the
matmuls JAX's autodiff actually emits for our train step (read from its jaxpr)."""

import pytest

from vlpet_jax import api
from vlpet_jax.bench import train_step
from vlpet_jax.bench.flops import Shapes, train_step_flops
from vlpet_jax.models.config import BackboneConfig

# d 8, 2 heads of 4, FFN 16, vocab 10, one encoder and one decoder layer.
TOY = BackboneConfig(
    family="bart", vocab_size=10, d_model=8, num_heads=2, d_kv=4, d_ff=16,
    num_encoder_layers=1, num_decoder_layers=1, ffn_activation="gelu", layer_norm_eps=1e-5,
)  # fmt: skip
# One example: 2 text + 1 visual token (3-d features) in, 1 token out; PET widths 2.
TOY_SHAPES = Shapes(batch_size=1, text_len=2, vis_len=1, target_len=1, feat_dim=3)
TOY_PET = dict(rank=2, gate_rank=2, value_rank=2)


def test_hand_count_vl_pet_large():
    # Forward, 2·M·K·N per matmul (encoder rows N = 3, decoder rows 1):
    visual = 2 * 1 * 3 * 8 + 2 * 1 * 5 * 8  # feat_proj 48 + box_proj 80
    enc_qkvo = 4 * (2 * 3 * 8 * 8)  # 1536
    enc_attn = 2 * (2 * (2 * 3 * 4 * 3))  # scores + values, 2 heads: 288
    enc_ffn = 2 * (2 * 3 * 8 * 16)  # 1536
    enc_pet = 2 * 4 * (2 * 3 * 8 * 2)  # 2 sub-layers x (mod down/up, gate down/up): 768
    value_adapter = 2 * (2 * 3 * 8 * 2)  # 192
    dec_self = 4 * (2 * 1 * 8 * 8) + 2 * (2 * (2 * 1 * 4 * 1))  # qkvo 512 + scores/values 32
    dec_cross = (
        2 * (2 * 1 * 8 * 8)  # q, o: 256
        + 2 * (2 * 3 * 8 * 8)  # k, v over the encoder output: 768
        + 2 * (2 * (2 * 1 * 4 * 3))  # scores + values: 96
    )
    dec_ffn = 2 * (2 * 1 * 8 * 16)  # 512
    lm_head = 2 * 1 * 8 * 10  # 160
    forward = (
        visual + enc_qkvo + enc_attn + enc_ffn + enc_pet + value_adapter + dec_self + dec_cross
        + dec_ffn + lm_head
    )  # fmt: skip
    assert forward == 6784
    # Backward with a frozen backbone: weight gradients of the visual projections only (their
    # inputs are data); every encoder input gradient (both operands of the attention products);
    # both gradients of every PET matmul; decoder layer 0's self-attention and cross query see
    # only frozen embeddings (nothing), its cross k/v, o and FFN need input gradients, its
    # scores only the key side; the LM head its input gradient.
    backward = (
        visual
        + (enc_qkvo + enc_ffn) + 2 * enc_attn
        + 2 * (enc_pet + value_adapter)
        + (2 * 3 * 8 * 8) * 2  # cross k, v: dx
        + 2 * (2 * 1 * 4 * 3)  # cross scores: key side only
        + 2 * (2 * (2 * 1 * 3 * 4))  # cross values: probabilities and values
        + 2 * 1 * 8 * 8  # cross o: dx
        + dec_ffn
        + lm_head
    )  # fmt: skip
    assert backward == 7408
    got = train_step_flops(TOY, "vl_pet_large", TOY_SHAPES, TOY_PET)
    assert got == {"forward": forward, "backward": backward, "total": forward + backward}


def test_hand_count_full_ft():
    forward = 6784 - 768 - 192  # no PET modules
    # Every gradient of every matmul, except the input gradients of the visual projections.
    backward = 2 * (forward - 128) + 128
    got = train_step_flops(TOY, "full_ft", TOY_SHAPES)
    assert got == {"forward": forward, "backward": backward, "total": forward + backward}


@pytest.mark.parametrize("family", ["bart", "t5"])
@pytest.mark.parametrize("method", ["vl_pet_large", "full_ft"])
def test_analytic_count_equals_the_differentiated_program(family, method):
    config = train_step.load_config(family, "tiny", method)
    shapes = Shapes(batch_size=2, text_len=5, vis_len=3, target_len=4)
    analytic = train_step_flops(
        api.backbone_config(config), method, shapes, train_step.pet_sizes(config)
    )
    assert train_step.step_jaxpr_flops(config, shapes) == analytic["total"]


def test_unknown_method_is_an_error():
    with pytest.raises(ValueError, match="not counted"):
        train_step_flops(TOY, "lora", TOY_SHAPES)
