"""Training steps equal the released trainer's: transformers-4.2.1 AdamW, its schedule, clipping
and weight-decay set (SPEC.md §8).

The reference is written here in NumPy (float64) from the formulas of SPEC.md §8, with the decay
set taken from the *released parameter names* by the released substring rule ("bias" or
"LayerNorm.weight" in the name), not from our path rules. Its gradients come from JAX at the
reference's own parameters (the model and loss are checked elsewhere against Hugging Face); what
is compared is everything the optimiser does with them, through the production step the trainer
jits.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax import api
from vlpet_jax.checkpoints.released_names import released_names
from vlpet_jax.pet.registry import known_methods
from vlpet_jax.pet.trainability import param_paths, split_params
from vlpet_jax.train import device_data, partition, sharding
from vlpet_jax.train.optim import (
    decay_mask,
    linear_warmup_decay,
    make_optimizer,
    released_adamw,
)
from vlpet_jax.train.step import make_train_step, merge_trees, model_inputs, sequence_losses

STEPS, WARMUP_RATIO, PEAK_LR, WEIGHT_DECAY = 8, 0.25, 1e-2, 0.1  # warm-up: int(8 · 0.25) = 2
B1, B2, EPS = 0.9, 0.999, 1e-6


def released_no_decay(name: str) -> bool:
    """The released trainer's rule: `any(nd in n for nd in ["bias", "LayerNorm.weight"])`."""
    return "bias" in name or "LayerNorm.weight" in name


def _config(backbone: str, method: str, clip: float):
    config = api.load_config(f"configs/image_text.py:backbone={backbone},method={method}")
    config.model.dropout = 0.0
    config.pet.lora_dropout = 0.0
    config.optim.lr = PEAK_LR
    config.optim.weight_decay = WEIGHT_DECAY
    config.optim.warmup_ratio = WARMUP_RATIO
    config.optim.grad_clip_norm = clip
    return config


def _batch(config, rows: int = 6) -> dict[str, np.ndarray]:
    backbone = api.backbone_config(config)
    rng = np.random.default_rng(0)
    mask = np.ones((rows, 7), np.int32)
    mask[1, 4:] = 0
    labels = rng.integers(3, backbone.vocab_size, (rows, 5)).astype(np.int32)
    labels[2, 3:] = -100
    return {
        "input_ids": rng.integers(3, backbone.vocab_size, (rows, 7)).astype(np.int32) * mask,
        "attention_mask": mask,
        "vis_feats": rng.normal(size=(rows, 36, config.model.feat_dim)).astype(np.float32),
        "decoder_input_ids": rng.integers(3, backbone.vocab_size, (rows, 5)).astype(np.int32),
        "labels": labels,
        "loss_weights": rng.uniform(0.3, 1.0, rows).astype(np.float32),
        "example_mask": np.array([1.0] * (rows - 1) + [0.0], np.float32),
        "token_level": np.float32(0.0),
    }


def _ours(config, params, batch):
    """Losses, learning rates and final trainable leaves of the trainer's jitted step."""
    method = api.pet_method(config)
    rules = api.trainability_rules(config, method)
    trainable, _ = split_params(params, rules)
    tx, schedule = make_optimizer(
        config.optim, STEPS, trainable, api.decay_rules(config, method), param_paths(params)
    )
    mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
    placement = partition.plan_placement(api.abstract_variables(config)["params"], rules, tx, mesh)
    state, frozen = partition.init_train_state(params, rules, tx, placement)
    step = partition.jit_train_step(
        make_train_step(api.build_model(config), tx, schedule), placement, batch
    )
    device_batch = device_data.from_host_shards(batch, mesh)
    losses, rates = [], []
    for _ in range(STEPS):
        state, metrics = step(state, frozen, device_batch, jax.random.key(0))
        losses.append(float(metrics["loss"]))
        rates.append(float(metrics["lr"]))
    final = {
        "/".join(k): np.asarray(v) for k, v in flatten_dict(jax.device_get(state.trainable)).items()
    }
    return losses, rates, final


def _reference(config, params, batch):
    """transformers.AdamW (4.2.1, correct_bias=True) + get_linear_schedule_with_warmup +
    torch.nn.utils.clip_grad_norm_, in float64 NumPy."""
    method = api.pet_method(config)
    trainable, frozen = split_params(params, api.trainability_rules(config, method))
    flat = {"/".join(k): np.asarray(v, np.float64) for k, v in flatten_dict(trainable).items()}
    names = released_names(config.pet.method, api.backbone_config(config), method.hooks, list(flat))
    decays = {path: not released_no_decay(name) for path, name in names.items()}
    model = api.build_model(config)

    def loss_of(tree):
        logits = model.apply({"params": merge_trees(tree, frozen)}, model_inputs(batch))
        return sequence_losses(logits, batch)[0]

    loss_and_grad = jax.jit(jax.value_and_grad(loss_of))
    warmup = int(STEPS * WARMUP_RATIO)
    m = {k: np.zeros_like(v) for k, v in flat.items()}
    v = {k: np.zeros_like(x) for k, x in flat.items()}
    losses, rates, clipped = [], [], []
    for t in range(1, STEPS + 1):
        as_tree = unflatten_dict({tuple(k.split("/")): np.float32(x) for k, x in flat.items()})
        loss, grads = loss_and_grad(as_tree)
        grads = {"/".join(k): np.asarray(g, np.float64) for k, g in flatten_dict(grads).items()}
        total_norm = np.sqrt(sum(float(np.sum(g * g)) for g in grads.values()))
        coef = config.optim.grad_clip_norm / (total_norm + 1e-6)
        clipped.append(coef < 1)
        if coef < 1:
            grads = {k: g * coef for k, g in grads.items()}
        k = t - 1  # LambdaLR: the (k+1)-th update runs at lr · lambda(k)
        lam = k / max(1, warmup) if k < warmup else max(0.0, (STEPS - k) / max(1, STEPS - warmup))
        lr = PEAK_LR * lam
        for key, g in grads.items():
            m[key] = B1 * m[key] + (1 - B1) * g
            v[key] = B2 * v[key] + (1 - B2) * g * g
            step_size = lr * np.sqrt(1 - B2**t) / (1 - B1**t)
            flat[key] = flat[key] - step_size * m[key] / (np.sqrt(v[key]) + EPS)
            if decays[key]:
                flat[key] = flat[key] - lr * WEIGHT_DECAY * flat[key]
        losses.append(float(loss))
        rates.append(lr)
    initial = {"/".join(k): np.asarray(x, np.float64) for k, x in flatten_dict(trainable).items()}
    return losses, rates, flat, initial, clipped


CASES = [
    ("t5_tiny", "vl_pet_large", 0.05),  # clipping active
    ("t5_tiny", "lora", 1e3),  # trains T5's relative-position tables (exempt from decay)
    ("bart_tiny", "vl_adapter", 1e3),
]


@pytest.mark.parametrize(("backbone", "method", "clip"), CASES)
def test_eight_steps_equal_transformers_adamw(backbone, method, clip):
    config = _config(backbone, method, clip)
    params = api.init_params(config, jax.random.key(0))
    batch = _batch(config)
    our_losses, our_rates, ours = _ours(config, params, batch)
    ref_losses, ref_rates, ref, initial, clipped = _reference(config, params, batch)

    assert any(clipped) == (clip < 1), clipped
    np.testing.assert_allclose(our_losses, ref_losses, rtol=1e-5)
    np.testing.assert_allclose(our_rates, ref_rates, rtol=1e-6, atol=1e-12)
    assert our_rates[0] == 0.0 and our_rates[2] == pytest.approx(PEAK_LR)
    moved = 0
    for path, expected in ref.items():
        movement = np.abs(expected - initial[path]).max()
        error = np.abs(ours[path] - expected).max()
        assert error <= 1e-3 * movement + 1e-9, (path, error, movement)
        moved += movement > 0
    assert moved >= len(ref) // 2, f"only {moved} of {len(ref)} leaves moved"
    if method == "lora" and backbone == "t5_tiny":
        bias = "backbone/encoder_relative_bias/embedding"
        assert bias in ref and np.abs(ref[bias] - initial[bias]).max() > 0


def test_released_eps_is_not_optax_eps():
    """Three steps on gradients near eps, against the formulas by hand: "released" adds eps to
    sqrt(v) before the bias correction, optax after it."""
    grads = {"w": jnp.full((3,), 1e-6), "b": jnp.full((2,), 1e-6)}
    params = {"w": jnp.ones((3,)), "b": jnp.ones((2,))}
    mask = {"w": True, "b": False}
    lr = lambda step: 0.1  # noqa: E731
    released = released_adamw(lr, B1, B2, EPS, WEIGHT_DECAY, mask)
    reference = optax.adamw(0.1, B1, B2, EPS, weight_decay=WEIGHT_DECAY, mask=mask)
    p_released, p_optax = dict(params), dict(params)
    s_released, s_optax = released.init(params), reference.init(params)
    for _ in range(3):
        u, s_released = released.update(grads, s_released, p_released)
        p_released = optax.apply_updates(p_released, u)
        u, s_optax = reference.update(grads, s_optax, p_optax)
        p_optax = optax.apply_updates(p_optax, u)
    expected = 1.0  # the undecayed leaf, by hand
    for t in (1, 2, 3):  # constant g: m = g(1 - b1^t), v = g²(1 - b2^t)
        m, v = 1e-6 * (1 - B1**t), 1e-12 * (1 - B2**t)
        expected -= 0.1 * np.sqrt(1 - B2**t) / (1 - B1**t) * m / (np.sqrt(v) + EPS)
    np.testing.assert_allclose(float(p_released["b"][0]), expected, rtol=1e-6)
    # The effective eps of "released" is larger: smaller steps than optax's at the start.
    assert abs(1.0 - float(p_released["b"][0])) < 0.5 * abs(1.0 - float(p_optax["b"][0]))
    # Decoupled decay shrinks the updated weight: w = (p - adam step) · (1 - lr · wd).
    assert float(p_released["w"][0]) < float(p_released["b"][0])


@pytest.mark.parametrize("backbone", ["bart_tiny", "t5_tiny"])
def test_decay_set_of_every_method_is_the_released_name_rule(backbone):
    """For every registered method, the leaves our rules decay are exactly those whose released
    names the released rule decays; the table is printed (pytest -s) for review."""
    lines = []
    for name in known_methods():
        config = api.load_config(f"configs/image_text.py:backbone={backbone},method={name}")
        method = api.pet_method(config)
        abstract = api.abstract_params(config)
        trainable, _ = split_params(abstract, api.trainability_rules(config, method))
        mask = flatten_dict(
            decay_mask(trainable, api.decay_rules(config, method), param_paths(abstract)),
            sep="/",
        )
        names = released_names(name, api.backbone_config(config), method.hooks, list(mask))
        wrong = {p: names[p] for p in mask if mask[p] == released_no_decay(names[p])}
        assert not wrong, f"{name}: decay differs from the released rule for {wrong}"
        exempt = sorted(names[p] for p in mask if not mask[p])
        lines.append(f"{name}: {len(mask) - len(exempt)} decayed, {len(exempt)} exempt")
    print("\n".join(lines))


def test_optim_fields_change_the_run():
    config = _config("bart_tiny", "vl_pet_large", 5.0)
    abstract = api.abstract_params(config)
    trainable, _ = split_params(abstract, api.trainability_rules(config))
    paths = param_paths(abstract)

    config.optim.warmup_ratio = 0.3
    _, schedule = make_optimizer(config.optim, 100, trainable, api.decay_rules(config), paths)
    assert float(schedule(29)) < PEAK_LR and float(schedule(30)) == pytest.approx(PEAK_LR)
    assert float(linear_warmup_decay(PEAK_LR, 100, 0.1)(10)) == pytest.approx(PEAK_LR)

    config.optim.decay_rules = ((r"visual_embedding/.*", False), (r".*", True))
    mask = flatten_dict(decay_mask(trainable, api.decay_rules(config), paths), sep="/")
    assert mask["backbone/encoder_layers_0/pet_ff/mod/down/bias"] is True
    assert mask["visual_embedding/feat_proj/kernel"] is False

    config.optim.decay_rules = ((r"visual_embeding/.*", False), (r".*", True))
    with pytest.raises(ValueError, match="weight-decay rules that match no parameter"):
        decay_mask(trainable, api.decay_rules(config), paths)
    config.optim.decay_rules = None
    config.optim.adam_eps_style = "adam"
    with pytest.raises(ValueError, match="adam_eps_style is 'adam'"):
        make_optimizer(config.optim, 100, trainable, api.decay_rules(config), paths)
