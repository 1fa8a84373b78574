"""The PET modules alone against independent NumPy implementations of SPEC.md §3 and §5, on the
same (random, non-zero) weights."""

from __future__ import annotations

import math

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax.pet.adapters import SequentialAdapter
from vlpet_jax.pet.compacter import CompacterAdapter, PHMDense
from vlpet_jax.pet.gated_designs import GatedAdapter, GatedCompacter
from vlpet_jax.pet.hyperformer import HyperAdapter, HyperFormerShared
from vlpet_jax.pet.lora import LoRA
from vlpet_jax.pet.prompt import PromptPrefix
from vlpet_jax.pet.vl_pet import GatedModification

# The widths and lengths of tiny.py (test_methods.py), so the eager ops compiled there are reused.
B, N, D, R, RG = 2, 8, 32, 8, 8
LEVELS = ("large", "middle_x", "middle_y", "small")


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


def dense(p, x):
    return x @ p["kernel"] + p["bias"]


def phm_dense(p, x):
    """y = x · Σ_i A_i ⊗ B_i + b, with NumPy's own Kronecker product."""
    weight = sum(np.kron(a, b) for a, b in zip(p["phm_rule"], p["phm_kernel"]))
    return x @ weight + p["bias"]


def random_params(module, *args, seed=0, scale=0.5, **kwargs):
    """The module's parameter tree with every leaf replaced by N(0, scale) (no zero inits)."""
    params = nn.meta.unbox(module.init(jax.random.key(seed), *args, **kwargs)["params"])
    rng = np.random.default_rng(seed)
    flat = {
        k: rng.normal(0, scale, np.shape(v)).astype(np.float32)
        for k, v in flatten_dict(params).items()
    }
    return unflatten_dict(flat)


def numpy_delta(p, h, body):
    """ΔH of SPEC.md §3 / §5: up(gelu_tanh(down(H)))."""
    layer = phm_dense if body == "phm" else dense
    return layer(p["up"], gelu_tanh(layer(p["down"], h)))


def numpy_gate(p, level, x, hs):
    """G of SPEC.md §3's table."""
    if level == "large":
        return sigmoid(dense(p["up"], gelu_tanh(dense(p["down"], x))))
    if level == "middle_x":
        return sigmoid(dense(p["proj"], x + hs))
    if level == "middle_y":
        return (1.0 + p["z"])[None, None, :]
    per_token = sigmoid(dense(p["proj"], np.concatenate([x, hs], axis=-1)))
    return per_token.mean(axis=1, keepdims=True)  # over every token, pads included


GATED_MODULES = {
    "vl_pet": (lambda level, family: GatedModification(level, family, R, RG, 0.3), "dense"),
    "vl_adapter": (lambda level, family: GatedAdapter(level, family, R, RG, 0.3), "dense"),
    "compacter": (
        lambda level, family: GatedCompacter(level, family, R, RG, 0.3, phm_dim=2),
        "phm",
    ),
}


@pytest.mark.parametrize("body", sorted(GATED_MODULES))
@pytest.mark.parametrize("level", LEVELS)
def test_granularity_modules_match_numpy(level, body):
    """H' = s · G ⊙ (H + ΔH) on one encoder sub-layer (SPEC.md §3, §5 "VL-PET designs"); the
    family changes only the initialisation, which the random weights replace."""
    make, kind = GATED_MODULES[body]
    module = make(level, "t5")
    rng = np.random.default_rng(1)
    x = rng.normal(size=(B, N, D)).astype(np.float32)
    h = rng.normal(size=(B, N, D)).astype(np.float32)
    params = random_params(module, x, h, seed=2)
    got = module.apply({"params": params}, x, h)
    hs = h + numpy_delta(params["mod"], h, kind)
    want = 0.3 * numpy_gate(params["gate"], level, x, hs) * hs
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)


@pytest.mark.parametrize("module,kind", [
    (SequentialAdapter(R, "bart"), "dense"),
    (CompacterAdapter(R, phm_dim=2), "phm"),
])  # fmt: skip
def test_sequential_adapters_match_numpy(module, kind):
    """h' = h + up(gelu_tanh(down(h))) (SPEC.md §5: Adapter, Compacter); X is not used."""
    rng = np.random.default_rng(3)
    x, h = rng.normal(size=(2, B, N, D)).astype(np.float32)
    params = random_params(module, x, h, seed=4)
    got = module.apply({"params": params}, x + 100.0, h)
    want = h + numpy_delta(params["mod"], h, kind)
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)


def test_phm_layer_shapes_and_init():
    """n = 2: A (2, 2, 2) with std 0.01, B (2, d_in/2, d_out/2) Glorot-uniform at gain sqrt(2)."""
    layer = PHMDense(96, phm_dim=2)
    params = nn.meta.unbox(layer.init(jax.random.key(0), jnp.zeros((1, 768)))["params"])
    rule, kernel, bias = (np.asarray(params[k]) for k in ("phm_rule", "phm_kernel", "bias"))
    assert rule.shape == (2, 2, 2) and kernel.shape == (2, 384, 48) and bias.shape == (96,)
    bound = math.sqrt(2.0) * math.sqrt(6.0 / (384 + 48))
    assert np.abs(kernel).max() <= bound and np.abs(kernel).max() > 0.95 * bound
    assert 0.003 < rule.std() < 0.03 and not bias.any()


def test_lora_matches_numpy_and_starts_at_zero():
    """delta = (alpha / r) · x A^T B^T; B = 0 at init, A ~ U(±1/sqrt(d_in)); dropout in training."""
    module = LoRA(rank=R, alpha=16.0, features=D, dropout_rate=0.5)
    x = np.random.default_rng(5).normal(size=(B, N, D)).astype(np.float32)
    init = nn.meta.unbox(module.init(jax.random.key(0), x)["params"])
    assert not np.asarray(init["up"]["kernel"]).any()
    a = np.asarray(init["down"]["kernel"])
    assert a.shape == (D, R) and np.abs(a).max() <= 1 / math.sqrt(D)
    params = random_params(module, x, seed=6)
    got = module.apply({"params": params}, x)
    want = (16.0 / R) * x @ params["down"]["kernel"] @ params["up"]["kernel"]
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)
    dropped = module.apply({"params": params}, x, train=True, rngs={"dropout": jax.random.key(1)})
    assert not np.allclose(np.asarray(dropped), want)


@pytest.mark.parametrize("family,table_std", [("bart", 0.02), ("t5", 1.0)])
def test_prompt_prefix_matches_numpy(family, table_std):
    """P = Dense(800→d)(tanh(Dense(d→800)(Emb))) before the embeddings, ones before the mask."""
    module = PromptPrefix(length=3, hidden=8, family=family)
    rng = np.random.default_rng(7)
    embeds = rng.normal(size=(B, N, D)).astype(np.float32)
    mask = np.ones((B, N), bool)
    mask[0, -2:] = False
    init = nn.meta.unbox(module.init(jax.random.key(0), embeds, mask)["params"])
    assert 0.5 * table_std < np.asarray(init["embedding"]).std() < 2 * table_std
    params = random_params(module, embeds, mask, seed=8)
    got_embeds, got_mask = module.apply({"params": params}, embeds, mask)
    prompts = dense(params["out"], np.tanh(dense(params["hidden"], params["embedding"])))
    np.testing.assert_allclose(np.asarray(got_embeds[:, :3]), np.stack([prompts] * B), rtol=2e-5,
                               atol=2e-5)  # fmt: skip
    np.testing.assert_array_equal(np.asarray(got_embeds[:, 3:]), embeds)
    np.testing.assert_array_equal(
        np.asarray(got_mask), np.concatenate([np.ones((B, 3), bool), mask], 1)
    )


def test_hyperformer_matches_numpy():
    """e_l = LN(W2 relu(W1 [t; z_l] + b1) + b2); each generator maps e_l to an adapter's weights,
    laid out as PyTorch `F.linear` weights (out, in); h' = h + W_up gelu_tanh(W_down h + b) + b."""
    shared = HyperFormerShared(
        "bart", d_model=D, num_encoder_layers=1, num_decoder_layers=1, rank=R, task_dim=16,
        hidden_dim=8, projected_dim=8, num_tasks=4,
    )  # fmt: skip
    task_ids = jnp.full((B,), 2, jnp.int32)
    params = random_params(shared, task_ids, seed=9)
    context = shared.apply({"params": params}, task_ids)
    h = np.random.default_rng(10).normal(size=(B, N, D)).astype(np.float32)
    for stack, kind in [("encoder", "self_attn"), ("encoder", "ff"), ("decoder", "cross_attn")]:
        p = params[stack]
        joint = np.concatenate([params["task_embeddings"][2], p["layer_embeddings"][0]])
        e = dense(p["task_proj_out"], np.maximum(dense(p["task_proj_hidden"], joint), 0.0))
        norm = p["task_norm"]
        e = (e - e.mean()) / np.sqrt(e.var() + 1e-6) * norm["scale"] + norm["bias"]
        w_down = dense(p[f"{kind}_down_weight_gen"], e).reshape(R, D)  # (out, in)
        w_up = dense(p[f"{kind}_up_weight_gen"], e).reshape(D, R)
        b_down, b_up = dense(p[f"{kind}_down_bias_gen"], e), dense(p[f"{kind}_up_bias_gen"], e)
        want = h + gelu_tanh(h @ w_down.T + b_down) @ w_up.T + b_up
        got = HyperAdapter(stack, 0, kind).apply({}, h, h, context=context)
        np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)


def test_hyperformer_site_reads_its_own_layer():
    """A site uses row `layer` of its stack's and kind's generated weights, nothing else."""
    rng = np.random.default_rng(11)
    weights = {
        "down_kernel": rng.normal(size=(3, D, R)), "down_bias": rng.normal(size=(3, R)),
        "up_kernel": rng.normal(size=(3, R, D)), "up_bias": rng.normal(size=(3, D)),
    }  # fmt: skip
    weights = {k: v.astype(np.float32) for k, v in weights.items()}
    decoy = {k: np.full_like(v, np.nan) for k, v in weights.items()}
    context = {"encoder": {"ff": decoy}, "decoder": {"ff": decoy, "self_attn": weights}}
    h = rng.normal(size=(B, N, D)).astype(np.float32)
    got = HyperAdapter("decoder", 2, "self_attn").apply({}, h, h, context=context)
    w = {k: v[2] for k, v in weights.items()}
    want = h + gelu_tanh(h @ w["down_kernel"] + w["down_bias"]) @ w["up_kernel"] + w["up_bias"]
    np.testing.assert_allclose(np.asarray(got), want, rtol=2e-5, atol=2e-5)


def test_hyperformer_unknown_task_gives_nan_not_a_wrong_row():
    shared = HyperFormerShared(
        "t5", D, 1, 1, R, task_dim=16, hidden_dim=8, projected_dim=8, num_tasks=3
    )
    params = shared.init(jax.random.key(0), jnp.zeros((1,), jnp.int32))["params"]
    context = shared.apply({"params": params}, jnp.full((2,), 3, jnp.int32))
    assert np.isnan(np.asarray(context["encoder"]["ff"]["up_kernel"])).all()
