"""From-scratch initialisers against Hugging Face's `_init_weights` on the same config.

For every backbone family (T5 v1, T5 v1.1 / flan with gated-GELU and an untied head, BART) a tiny
config is built once in PyTorch (`T5ForConditionalGeneration(config)`, i.e. HF's own random init)
and once here (`build_backbone(...).init`), and each parameter *role* is compared: the same
projection pooled over the layers of one stack (`encoder_layers_*/self_attn/q/kernel`, ...).

Tolerance: for n i.i.d. draws of N(0, s), the sample std has a relative standard error of
1/sqrt(2n) and the sample mean a standard error of s/sqrt(n). Two independent samples of sizes
n1, n2 therefore agree within 5 sigma with probability > 1 - 1e-6 per role; the roles' sizes
(the smallest is a relative-bias table of 512 draws: 22% on the std) keep every known mistake
far outside (T5's q drawn at d_model^-0.5 instead of (d_model·d_kv)^-0.5 is off by sqrt(d_kv) =
2.8x here, o at d_model^-0.5 instead of (heads·d_kv)^-0.5 by 1.15x over 6,144 draws: 6.4% allowed).
Deterministic parameters (norm scales 1, biases 0, BART's padding row 0) must match exactly.
The config has heads·d_kv != d_model and d_ff != d_model so each scale is told apart.
"""

from __future__ import annotations

import functools
import re
from collections import defaultdict

import jax
import numpy as np
import pytest
import torch
from flax import linen as nn
from flax.traverse_util import flatten_dict
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    T5Config,
    T5ForConditionalGeneration,
)

from vlpet_jax.checkpoints.hf_names import hf_name_map
from vlpet_jax.models.backbone import build_backbone
from vlpet_jax.models.config import BackboneConfig

_T5 = dict(
    vocab_size=300, d_model=48, d_kv=8, d_ff=96, num_layers=2, num_decoder_layers=2, num_heads=8,
    relative_attention_num_buckets=64, relative_attention_max_distance=128, dropout_rate=0.0,
)  # fmt: skip
_BART = dict(
    vocab_size=300, d_model=48, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=96, decoder_ffn_dim=96, max_position_embeddings=64,
    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
)  # fmt: skip
FAMILIES = {
    "t5_v1": lambda: T5ForConditionalGeneration(T5Config(**_T5, feed_forward_proj="relu")),
    "t5_v1_1": lambda: T5ForConditionalGeneration(
        T5Config(**_T5, feed_forward_proj="gated-gelu", tie_word_embeddings=False)
    ),
    "bart": lambda: BartForConditionalGeneration(BartConfig(**_BART)),
}


def _role(path: str) -> str:
    return re.sub(r"_layers_\d+", "_layers_*", path)


def _pooled(arrays: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    groups = defaultdict(list)
    for path, value in arrays.items():
        groups[_role(path)].append(np.asarray(value, np.float64).ravel())
    return {role: np.concatenate(parts) for role, parts in groups.items()}


@functools.cache
def _both_inits(family: str):
    """({role: ours}, {role: Hugging Face's}, backbone config), built once per family."""
    torch.manual_seed(0)
    hf_model = FAMILIES[family]()
    cfg = BackboneConfig.from_hf_dict(hf_model.config.to_dict())
    state = {k: v.detach().numpy() for k, v in hf_model.state_dict().items()}
    ids = jax.numpy.ones((1, 2), jax.numpy.int32)
    params = build_backbone(cfg).init(jax.random.key(0), ids, ids, ids)["params"]
    ours = flatten_dict(nn.unbox(params), sep="/")
    names = hf_name_map(cfg)
    assert set(names) == set(ours), "every parameter of ours has a Hugging Face counterpart"
    theirs = {path: state[names[path][0]] for path in ours}
    return _pooled(ours), _pooled(theirs), cfg


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_role_has_hugging_faces_distribution(family):
    ours, theirs, _ = _both_inits(family)
    failures = []
    for role in sorted(ours):
        a, b = ours[role], theirs[role]
        assert a.shape == b.shape, role
        if b.std() == 0:  # a constant in Hugging Face: norm scales, biases, final_logits_bias
            if not np.array_equal(a, b):
                failures.append(f"{role}: constant {b[0]} in HF, ours {a[:3]}...")
            continue
        n = a.size
        rel_tol = 5 * np.sqrt(1 / (2 * n) + 1 / (2 * n))
        if abs(a.std() / b.std() - 1) > rel_tol:
            failures.append(
                f"{role}: std {a.std():.4g} vs HF {b.std():.4g} (n={n}, tol {rel_tol:.2%})"
            )
        if abs(a.mean() - b.mean()) > 5 * b.std() * np.sqrt(2 / n):
            failures.append(f"{role}: mean {a.mean():.3g} vs HF {b.mean():.3g}")
    assert not failures, f"{family}:\n" + "\n".join(failures)


@pytest.mark.parametrize("family", ["t5_v1", "t5_v1_1"])
def test_t5_attention_logits_start_order_one(family):
    """The point of T5's q scale: unscaled q·k logits of unit-RMS inputs have std ~1 at init."""
    ours, _, cfg = _both_inits(family)
    # Per logit: sum over d_kv of q_j k_j, q_j ~ N(0, d·std_q²), k_j ~ N(0, d·std_k²) for x of RMS 1.
    std_q = ours["encoder_layers_*/self_attn/q/kernel"].std()
    std_k = ours["encoder_layers_*/self_attn/k/kernel"].std()
    logit_std = np.sqrt(cfg.d_kv) * cfg.d_model * std_q * std_k
    assert 0.8 < logit_std < 1.25


def test_bart_padding_row_is_zero():
    ours, theirs, cfg = _both_inits("bart")
    table = ours["shared/embedding"].reshape(cfg.vocab_size, cfg.d_model)
    assert not table[cfg.pad_token_id].any()
    assert not theirs["shared/embedding"].reshape(table.shape)[cfg.pad_token_id].any()
    assert np.all(np.abs(table).sum(axis=1)[np.arange(cfg.vocab_size) != cfg.pad_token_id] > 0)
