"""Placing the train state on a mesh and jitting the step with explicit shardings.

Everything is derived from abstract shapes: the model's boxed abstract params give every
parameter its logical axes, `sharding.param_shardings` turns those into `NamedSharding`s, the
trainability rules split them like the params, and `optax.tree_map_params` maps them onto the
optimiser state (which exists for trainable leaves only).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from jax.sharding import Mesh

from vlpet_jax.pet.trainability import Rules, split_params
from vlpet_jax.train import sharding
from vlpet_jax.train.step import TrainState


@dataclasses.dataclass
class Placement:
    """Shardings of every piece the train step touches."""

    mesh: Mesh
    trainable: Any
    frozen: Any
    state: TrainState

    def batch(self, batch: dict[str, Any]) -> dict[str, Any]:
        return {k: sharding.batch_sharding(self.mesh, v.ndim) if v.ndim else
                sharding.replicated(self.mesh) for k, v in batch.items()}  # fmt: skip


def plan_placement(
    abstract_boxed_params: Any, rules: Rules, tx: optax.GradientTransformation, mesh: Mesh
) -> Placement:
    param_shardings = sharding.param_shardings(abstract_boxed_params, mesh)
    trainable_sh, frozen_sh = split_params(param_shardings, rules)
    abstract_trainable = jax.tree.map(
        lambda s: jax.ShapeDtypeStruct(s.shape, s.dtype),
        split_params(_unbox(abstract_boxed_params), rules)[0],
    )
    abstract_opt = jax.eval_shape(tx.init, abstract_trainable)
    replicated = sharding.replicated(mesh)
    opt_sh = optax.tree_map_params(
        tx,
        lambda _, s: s,
        abstract_opt,
        trainable_sh,
        transform_non_params=lambda _: replicated,
    )
    state_sh = TrainState(step=replicated, trainable=trainable_sh, opt_state=opt_sh)
    return Placement(mesh, trainable_sh, frozen_sh, state_sh)


def _unbox(tree: Any) -> Any:
    import flax.linen as nn

    return nn.unbox(tree)


def init_train_state(
    params: Any, rules: Rules, tx: optax.GradientTransformation, placement: Placement
) -> tuple[TrainState, Any]:
    """(state, frozen) on devices: trainable params + optimiser state, and the frozen rest."""
    trainable, frozen = split_params(params, rules)
    # A fresh copy: the step donates the state, which must not delete the caller's arrays.
    trainable = jax.jit(
        lambda tree: jax.tree.map(jnp.copy, tree), out_shardings=placement.trainable
    )(trainable)
    frozen = jax.device_put(frozen, placement.frozen)
    opt_state = jax.jit(tx.init, out_shardings=placement.state.opt_state)(trainable)
    step = jax.device_put(jnp.zeros((), jnp.int32), placement.state.step)
    return TrainState(step, trainable, opt_state), frozen


def abstract_state(
    trainable: Any, tx: optax.GradientTransformation, placement: Placement
) -> TrainState:
    """Shapes, dtypes and shardings of the train state, allocating nothing (a restore target)."""
    shapes = jax.eval_shape(
        lambda tree: TrainState(jnp.zeros((), jnp.int32), tree, tx.init(tree)), trainable
    )
    return jax.tree.map(
        lambda shape, sharding: jax.ShapeDtypeStruct(shape.shape, shape.dtype, sharding=sharding),
        shapes,
        placement.state,
    )


def jit_train_step(step_fn: Callable, placement: Placement, example_batch: dict) -> Callable:
    """One `jax.jit` with explicit in/out shardings; the state is donated."""
    replicated = sharding.replicated(placement.mesh)
    return jax.jit(
        step_fn,
        in_shardings=(
            placement.state,
            placement.frozen,
            placement.batch(example_batch),
            replicated,
        ),
        out_shardings=(placement.state, replicated),
        donate_argnums=(0,),
    )
