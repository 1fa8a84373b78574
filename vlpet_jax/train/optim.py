"""The optimiser of SPEC.md §8, over the trainable tree only, as the released trainer runs it.

AdamW (β 0.9/0.999, eps 1e-6) in `transformers.AdamW`'s form (4.2.1, `correct_bias=True`): eps is
added to sqrt(v) *before* the bias correction and the decoupled weight decay shrinks the *updated*
parameters, so per step t

    m = b1·m + (1-b1)·g,   v = b2·v + (1-b2)·g²
    p ← p - lr_t · sqrt(1-b2^t)/(1-b1^t) · m / (sqrt(v) + eps)
    p ← p - lr_t · wd · p                                   (decayed leaves only)

In bias-corrected terms the step is m̂ / (sqrt(v̂) + eps/sqrt(1-b2^t)): the effective eps is ~22x
optax's at step 2 and 3x at step 100, which moves small-gradient parameters (zero-initialised
up-projections, gates) very differently over the first hundreds of steps. `adam_eps_style:
"optax"` selects `optax.adamw` instead (eps after the bias correction, decay on the pre-update
parameters). Gradients are clipped first, over all trainable leaves together, as
`torch.nn.utils.clip_grad_norm_` does: g · min(1, max_norm / (‖g‖ + 1e-6)).

Weight decay is decided by ordered `(regex, decay)` rules over '/'-joined parameter paths, the form
of the trainability rules; each method supplies the released set for its backbone family
(`vlpet_jax.pet.rules.released_decay_rules`) and `config.optim.decay_rules` may replace it.
The learning rate warms up linearly over `warmup_ratio` of the steps, then decays linearly to 0.

The optimiser is built for the *trainable* tree (see `vlpet_jax.pet.trainability.split_params`),
so frozen leaves have no optimiser state at all and no gradient is ever computed for them.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import optax
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax.pet.trainability import Rules, rule_decisions

ADAM_EPS_STYLES = ("released", "optax")
SCHEDULES = ("linear",)
TORCH_CLIP_EPS = 1e-6  # torch.nn.utils.clip_grad_norm_ divides by (total_norm + 1e-6)


def linear_warmup_decay(peak_lr: float, total_steps: int, warmup_ratio: float) -> optax.Schedule:
    """0 → peak over `warmup_ratio` of the steps, then linearly to 0 at `total_steps`.

    The curve of `transformers.get_linear_schedule_with_warmup` with `int(total · ratio)` warm-up
    steps, as the released trainer builds it; `schedule(k)` is the rate of the (k+1)-th update.
    """
    if total_steps <= 0:
        raise ValueError(f"total_steps must be positive, found {total_steps}")
    if not 0.0 <= warmup_ratio <= 1.0:
        raise ValueError(f"optim.warmup_ratio must be in [0, 1], found {warmup_ratio}")
    warmup = int(total_steps * warmup_ratio)

    def schedule(step):
        step = jnp.asarray(step, jnp.float32)
        up = step / max(warmup, 1)
        down = jnp.maximum(0.0, (total_steps - step) / max(total_steps - warmup, 1))
        return peak_lr * jnp.where(step < warmup, up, down)

    return schedule


def decay_mask(trainable_params: Any, decay_rules: Rules, all_paths: Sequence[str]) -> Any:
    """A tree of booleans over `trainable_params`: True where weight decay applies.

    Rules are checked for coverage on the trainable leaves and for dead rules on `all_paths`
    (every parameter of the model, frozen ones included): a family's default set names leaves
    that only some methods train, but a rule that matches no parameter at all is a typo.
    """
    flat = flatten_dict(trainable_params)
    paths = ["/".join(map(str, k)) for k in flat]
    decisions = rule_decisions(paths, decay_rules, what="weight-decay", dead_check_paths=all_paths)
    return unflatten_dict({k: decisions[p] for k, p in zip(flat, paths)})


class ReleasedAdamWState(NamedTuple):
    count: jax.Array  # updates applied so far
    mu: Any
    nu: Any


def released_adamw(
    learning_rate: optax.Schedule,
    b1: float,
    b2: float,
    eps: float,
    weight_decay: float,
    mask: Any,
) -> optax.GradientTransformation:
    """`transformers.AdamW` (4.2.1, correct_bias=True) as an optax transform; see the module
    docstring. `mask` is a tree of booleans: True where weight decay applies."""

    def init(params):
        zeros = lambda p: jnp.zeros_like(p, dtype=jnp.float32)  # noqa: E731
        return ReleasedAdamWState(
            jnp.zeros((), jnp.int32), jax.tree.map(zeros, params), jax.tree.map(zeros, params)
        )

    def update(grads, state, params=None):
        if params is None:
            raise ValueError("released_adamw needs the parameters (decoupled weight decay)")
        count = state.count + 1
        lr = learning_rate(state.count)
        t = count.astype(jnp.float32)
        step_size = lr * jnp.sqrt(1.0 - b2**t) / (1.0 - b1**t)
        mu = jax.tree.map(lambda m, g: b1 * m + (1.0 - b1) * g, state.mu, grads)
        nu = jax.tree.map(lambda v, g: b2 * v + (1.0 - b2) * jnp.square(g), state.nu, grads)

        def one(m, v, p, decays):
            adam = -step_size * m / (jnp.sqrt(v) + eps)
            if not decays:
                return adam.astype(p.dtype)
            return (adam - lr * weight_decay * (p + adam)).astype(p.dtype)

        updates = jax.tree.map(one, mu, nu, params, mask)
        return updates, ReleasedAdamWState(count, mu, nu)

    return optax.GradientTransformation(init, update)


def clip_by_global_norm_torch(max_norm: float) -> optax.GradientTransformation:
    """`torch.nn.utils.clip_grad_norm_`: scale by min(1, max_norm / (‖g‖ + 1e-6))."""

    def update(grads, state, params=None):
        del params
        norm = optax.tree.norm(grads)
        scale = jnp.minimum(1.0, max_norm / (norm + TORCH_CLIP_EPS))
        return jax.tree.map(lambda g: (g * scale).astype(g.dtype), grads), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(
    optim: Mapping[str, Any],
    total_steps: int,
    trainable_params: Any,
    decay_rules: Rules,
    all_paths: Sequence[str],
) -> tuple[optax.GradientTransformation, optax.Schedule]:
    """(transform, learning-rate schedule) from a config's `optim` section.

    Reads: lr, b1, b2, eps, weight_decay, warmup_ratio, schedule, grad_clip_norm, adam_eps_style.
    `decay_rules`: `vlpet_jax.api.decay_rules(config)` (the method's released set unless
    `optim.decay_rules` replaces it); `all_paths`: every parameter path, for the dead-rule check.
    """
    if optim["schedule"] not in SCHEDULES:
        raise ValueError(f"optim.schedule is {optim['schedule']!r}; supported: {SCHEDULES}")
    style = optim["adam_eps_style"]
    if style not in ADAM_EPS_STYLES:
        raise ValueError(f"optim.adam_eps_style is {style!r}; expected one of {ADAM_EPS_STYLES}")
    schedule = linear_warmup_decay(float(optim["lr"]), total_steps, float(optim["warmup_ratio"]))
    mask = decay_mask(trainable_params, decay_rules, all_paths)
    hyper = dict(
        b1=float(optim["b1"]),
        b2=float(optim["b2"]),
        eps=float(optim["eps"]),
        weight_decay=float(optim["weight_decay"]),
        mask=mask,
    )
    if style == "released":
        adam = released_adamw(schedule, **hyper)
    else:
        adam = optax.adamw(learning_rate=schedule, **hyper)
    tx = optax.chain(clip_by_global_norm_torch(float(optim["grad_clip_norm"])), adam)
    return tx, schedule


def optimizer_state_bytes(opt_state: Any) -> int:
    return sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(opt_state) if hasattr(x, "dtype"))
