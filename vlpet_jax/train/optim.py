"""The optimiser of SPEC.md §8, over the trainable tree only.

AdamW (β 0.9/0.999, eps 1e-6), weight decay 0.01 on every trainable leaf except biases (norm
scales are decayed, as the released code does), linear warm-up over the first 10% of steps then
linear decay to 0, global gradient-norm clipping at 5.

The optimiser is built for the *trainable* tree (see `vlpet_jax.pet.trainability.split_params`),
so frozen leaves have no optimiser state at all and no gradient is ever computed for them.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax.traverse_util import flatten_dict, unflatten_dict


def linear_warmup_decay(
    peak_lr: float, total_steps: int, warmup_fraction: float = 0.1
) -> optax.Schedule:
    """0 → peak over `warmup_fraction` of the steps, then linearly to 0 at `total_steps`.

    The same curve as `transformers.get_linear_schedule_with_warmup`, which the released code uses.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, found {total_steps}")
    warmup = int(total_steps * warmup_fraction)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        up = step / max(warmup, 1)
        down = jnp.maximum(0.0, (total_steps - step) / max(total_steps - warmup, 1))
        return peak_lr * jnp.where(step < warmup, up, down)

    return schedule


def decay_mask(trainable_params: Any) -> Any:
    """True for leaves that get weight decay: everything but biases (SPEC.md §8)."""
    flat = flatten_dict(trainable_params)
    return unflatten_dict({path: path[-1] != "bias" for path in flat})


def make_optimizer(
    optim: Mapping[str, Any], total_steps: int, trainable_params: Any
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(transform, learning-rate schedule) from a config's `optim` section.

    Fields: lr, b1, b2, eps, weight_decay, warmup_fraction, grad_clip_norm.
    """
    schedule = linear_warmup_decay(optim["lr"], total_steps, optim.get("warmup_fraction", 0.1))
    tx = optax.chain(
        optax.clip_by_global_norm(optim.get("grad_clip_norm", 5.0)),
        optax.adamw(
            learning_rate=schedule,
            b1=optim.get("b1", 0.9),
            b2=optim.get("b2", 0.999),
            eps=optim.get("eps", 1e-6),
            weight_decay=optim.get("weight_decay", 0.01),
            mask=decay_mask(trainable_params),
        ),
    )
    return tx, schedule


def optimizer_state_bytes(opt_state: Any) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(opt_state) if hasattr(x, "dtype"))
