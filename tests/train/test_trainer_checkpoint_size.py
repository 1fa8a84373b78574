"""Bytes on disk of a base-size training checkpoint: the trainable state, never the backbone.

BART-base with VL-PET-large (SPEC.md sizes): the checkpoint the trainer writes (TrainState:
trainable params, Adam's two moments, the step) must take under 3.5x the trainable params' bytes
and a small fraction of the frozen backbone's. Values are random, so compression cannot hide a
stray copy of anything. (On a tiny model the fixed overhead of OCDBT's b-tree nodes, rewritten
at every commit of a save, varies from run to run and is comparable to the data, so the ratio is
checked here, at a size where it means something.) (Which paths a checkpoint holds: test_trainer_runs.py.)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

import vlpet_jax
from vlpet_jax.checkpoints.orbax_io import TrainCheckpointer
from vlpet_jax.pet.trainability import param_paths, split_params
from vlpet_jax.train.optim import make_optimizer
from vlpet_jax.train.step import TrainState


def _bytes(tree) -> int:
    return sum(int(np.prod(x.shape)) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def test_base_size_checkpoint_is_the_trainable_state_only(tmp_path):
    config = vlpet_jax.load_config("configs/image_text.py:backbone=bart_base,method=vl_pet_large")
    abstract = vlpet_jax.abstract_params(config)  # shapes only: nothing allocated
    trainable, frozen = split_params(abstract, vlpet_jax.api.trainability_rules(config))
    rules = vlpet_jax.api.decay_rules(config)
    tx, _ = make_optimizer(config.optim, 1000, trainable, rules, param_paths(abstract))
    shapes = jax.eval_shape(
        lambda tree: TrainState(jnp.zeros((), jnp.int32), tree, tx.init(tree)), trainable
    )
    rng = np.random.default_rng(0)
    state = jax.tree.map(
        lambda s: rng.standard_normal(s.shape, np.float32) if s.ndim else np.zeros((), s.dtype),
        shapes,
    )
    checkpointer = TrainCheckpointer(tmp_path)
    checkpointer.save(1, state, {"epoch": 0, "step": 1}, {"note": "size test"}, force=True)
    checkpointer.wait()
    checkpointer.close()

    on_disk = sum(
        p.stat().st_size for p in (tmp_path / "checkpoints" / "1").rglob("*") if p.is_file()
    )
    trainable_bytes, frozen_bytes = _bytes(trainable), _bytes(frozen)
    assert trainable_bytes > 20e6 and frozen_bytes > 500e6  # 24.2 MB and 558.4 MB
    # Params and two moments (zstd takes ~7% off random floats), and little else: 2.79x.
    assert 2.5 * trainable_bytes < on_disk < 3.5 * trainable_bytes
    assert on_disk < 0.15 * frozen_bytes  # 12% of the backbone
