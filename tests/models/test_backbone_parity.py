"""Our Flax T5/BART equal Hugging Face's PyTorch models built from the same random weights."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.hf_reference import (
    BART_BASE,
    T5_BASE,
    make_bart,
    make_t5,
    padded_batch,
    torch_logits,
)
from vlpet_jax.checkpoints.hf import load_backbone
from vlpet_jax.models.backbone import build_backbone

TINY = {
    "t5_v1": lambda path: make_t5(path),
    "t5_v1_1": lambda path: make_t5(path, untied_head=True, feed_forward_proj="gated-gelu"),
    "bart": lambda path: make_bart(path),
}


def _max_rel_error(got, want) -> float:
    return float(np.max(np.abs(np.asarray(got) - want)) / max(1.0, np.max(np.abs(want))))


@pytest.fixture(scope="module", params=sorted(TINY))
def tiny(request, tmp_path_factory):
    path = tmp_path_factory.mktemp(request.param)
    reference = TINY[request.param](path)
    cfg, params = load_backbone(path)
    return request.param, reference, cfg, params


def test_tiny_logits_match_hugging_face_with_padding(tiny):
    name, reference, cfg, params = tiny
    rng = np.random.default_rng(1)
    ids, mask = padded_batch(rng, cfg.vocab_size, cfg.pad_token_id, batch=3, length=11)
    dec = rng.integers(3, cfg.vocab_size, size=(3, 6))
    want = torch_logits(reference, ids, mask, dec)
    got = build_backbone(cfg).apply({"params": params}, jnp.asarray(ids), jnp.asarray(mask), dec)
    assert got.shape == want.shape
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-4 * max(1, np.abs(want).max()))
    if name == "t5_v1_1":  # the separate head is used and not scaled
        assert not cfg.tie_word_embeddings and not cfg.scale_decoder_outputs
        assert "lm_head" in params
    if name == "t5_v1":
        assert cfg.tie_word_embeddings and cfg.scale_decoder_outputs


def test_incremental_decoding_equals_full_forward(tiny):
    _, _, cfg, params = tiny
    model = build_backbone(cfg)
    rng = np.random.default_rng(2)
    ids, mask = padded_batch(rng, cfg.vocab_size, cfg.pad_token_id, batch=2, length=8)
    dec = jnp.asarray(rng.integers(3, cfg.vocab_size, size=(2, 7)))
    variables = {"params": params}
    full = model.apply(variables, ids, mask, dec)
    enc, enc_mask = model.apply(variables, ids, mask, method=model.encode)
    cache = model.apply(variables, enc, enc_mask, 12, method=model.init_cache)
    step = jax.jit(lambda t, c, i: model.apply(variables, t, c, i, method=model.decode_step))
    stepped = []
    for i in range(dec.shape[1]):
        logits, cache = step(dec[:, i], cache, jnp.int32(i))
        stepped.append(logits)
    np.testing.assert_allclose(np.stack(stepped, 1), np.asarray(full), atol=1e-5)


@pytest.mark.parametrize(
    "family,length", [("t5", 512), ("bart", 160)], ids=["t5_base_512", "bart_base_160"]
)
def test_base_size_logits_match_hugging_face(family, length, tmp_path):
    """Real t5-base / bart-base sizes; T5 at 512 tokens reaches every relative-position bucket."""
    if family == "t5":
        reference = make_t5(tmp_path, seed=3, **T5_BASE)
    else:
        reference = make_bart(tmp_path, seed=3, **BART_BASE)
    cfg, params = load_backbone(tmp_path)
    rng = np.random.default_rng(3)
    ids, mask = padded_batch(rng, cfg.vocab_size, cfg.pad_token_id, batch=2, length=length)
    dec = rng.integers(3, cfg.vocab_size, size=(2, 5))
    want = torch_logits(reference, ids, mask, dec)
    del reference
    got = jax.jit(build_backbone(cfg).apply)({"params": params}, ids, mask, dec)
    assert _max_rel_error(got, want) < 1e-4
