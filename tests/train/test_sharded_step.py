"""The jitted train step: same numbers on one device and on a 2×2×2 mesh of fake CPU devices;
only trainable leaves have optimiser state and change."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from configs.common import optim_config
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import get_method
from vlpet_jax.pet.rules import released_decay_rules
from vlpet_jax.pet.trainability import param_paths, split_params
from vlpet_jax.train import partition, sharding
from vlpet_jax.train.optim import make_optimizer
from vlpet_jax.train.step import make_train_step

CFG = BackboneConfig(
    family="bart", vocab_size=64, d_model=32, num_heads=4, d_kv=8, d_ff=64,
    num_encoder_layers=2, num_decoder_layers=2, ffn_activation="gelu", layer_norm_eps=1e-5,
    pad_token_id=1, eos_token_id=2, bos_token_id=0, decoder_start_token_id=2,
    max_position_embeddings=32, dropout_rate=0.1, scale_decoder_outputs=False,
)  # fmt: skip


def _batch(rng: np.random.Generator, rows: int = 8) -> dict[str, np.ndarray]:
    labels = rng.integers(3, CFG.vocab_size, size=(rows, 5)).astype(np.int32)
    labels[:, -1] = -100
    return {
        "input_ids": rng.integers(3, CFG.vocab_size, size=(rows, 6)).astype(np.int32),
        "attention_mask": np.ones((rows, 6), np.int32),
        "vis_feats": rng.normal(size=(rows, 4, 16)).astype(np.float32),
        "decoder_input_ids": rng.integers(3, CFG.vocab_size, size=(rows, 5)).astype(np.int32),
        "labels": labels,
        "loss_weights": rng.uniform(0.3, 1.0, size=(rows,)).astype(np.float32),
        "example_mask": np.array([1] * (rows - 1) + [0], np.float32),
    }


def _train(devices, mesh_shape, steps=2):
    method = get_method("vl_pet_large", CFG, {"rank": 8, "gate_rank": 8, "value_rank": 8})
    model = VLModel(CFG, method.hooks)
    batch = _batch(np.random.default_rng(0))
    init_batch = {k: jnp.asarray(v) for k, v in batch.items()}
    abstract = jax.eval_shape(model.init, jax.random.key(0), init_batch)["params"]
    params = nn.unbox(model.init(jax.random.key(0), init_batch)["params"])
    trainable, _ = split_params(params, method.rules)
    tx, schedule = make_optimizer(
        optim_config(1e-2),
        10,
        trainable,
        released_decay_rules(CFG, method.decay_exceptions),
        param_paths(params),
    )
    mesh = sharding.make_mesh(mesh_shape, devices)
    placement = partition.plan_placement(abstract, method.rules, tx, mesh)
    state, frozen = partition.init_train_state(params, method.rules, tx, placement)
    step = partition.jit_train_step(make_train_step(model, tx, schedule), placement, batch)
    losses = []
    for i in range(steps):
        state, metrics = step(state, frozen, batch, jax.random.key(i))
        losses.append(float(metrics["loss"]))
    return losses, jax.device_get(state), frozen, params, method


def test_mesh_2x2x2_matches_one_device():
    devices = jax.devices()
    assert len(devices) == 8, "tests/conftest.py must set 8 fake CPU devices"
    losses_1, state_1, *_ = _train(devices[:1], {"data": 1})
    losses_8, state_8, frozen_8, *_ = _train(devices, {"data": 2, "fsdp": 2, "tensor": 2})
    np.testing.assert_allclose(losses_8, losses_1, rtol=2e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        state_8.trainable,
        state_1.trainable,
    )
    # The big frozen table really is split over the mesh (vocab over `tensor`, embed over `fsdp`).
    table = frozen_8["backbone"]["shared"]["embedding"]
    assert table.sharding.shard_shape(table.shape) == (32, 16)


def test_only_trainable_leaves_have_state_and_change():
    losses, state, frozen, params, method = _train(jax.devices()[:1], {"data": 1}, steps=3)
    assert losses[0] > 0 and all(np.isfinite(losses))
    trainable_before, frozen_before = split_params(params, method.rules)
    jax.tree.map(np.testing.assert_array_equal, jax.device_get(frozen), frozen_before)
    changed = jax.tree.map(lambda a, b: bool(np.any(a != b)), state.trainable, trainable_before)
    assert all(jax.tree.leaves(changed))
    # Adam keeps two moments per trainable leaf and nothing for frozen ones.
    n_trainable = sum(x.size for x in jax.tree.leaves(trainable_before))
    n_state = sum(x.size for x in jax.tree.leaves(state.opt_state) if x.ndim > 0)
    assert n_state == 2 * n_trainable
