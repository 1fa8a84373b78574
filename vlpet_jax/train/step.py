"""The loss of SPEC.md §6 and the jitted train step over the trainable tree only.

Losses (the batch carries `labels` with -100 on padding, `loss_weights`, `example_mask`):
  per-example  mean token CE of each example × its weight (VQA: the drawn answer's soft score,
               others 1), averaged over the real examples of the batch;
  token-level  (COCO captions) mean CE over every real target token of the batch.
`token_level` (a scalar in the device batch) picks one; both are cheap, so one program serves
every task of the same shapes.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import optax

Array = jax.Array
MODEL_KEYS = (
    "input_ids",
    "attention_mask",
    "vis_feats",
    "vis_pos",
    "img_order_ids",
    "obj_order_ids",
    "decoder_input_ids",
    "decoder_attention_mask",
    "task_ids",
)


@flax.struct.dataclass
class TrainState:
    step: Array
    trainable: Any
    opt_state: Any


def merge_trees(trainable: Any, frozen: Any) -> Any:
    """Nested-dict union of two disjoint param trees (jit-friendly, no flattening of paths)."""
    if not isinstance(trainable, dict) or not isinstance(frozen, dict):
        raise TypeError("merge_trees: both trees must be nested dicts")
    out = dict(frozen)
    for key, value in trainable.items():
        out[key] = merge_trees(value, frozen[key]) if key in frozen else value
    return out


def sequence_losses(logits: Array, batch: dict[str, Array]) -> tuple[Array, dict[str, Array]]:
    """(loss, metrics) for one batch; see the module docstring for the two reductions."""
    labels = batch["labels"]
    token_mask = (labels != -100).astype(jnp.float32) * batch["example_mask"][:, None]
    token_ce = optax.softmax_cross_entropy_with_integer_labels(
        logits.astype(jnp.float32), jnp.maximum(labels, 0)
    )
    token_ce = token_ce * token_mask
    tokens_per_example = jnp.sum(token_mask, axis=1)
    per_example = jnp.sum(token_ce, axis=1) / jnp.maximum(tokens_per_example, 1.0)
    num_examples = jnp.maximum(jnp.sum(batch["example_mask"]), 1.0)
    example_loss = jnp.sum(per_example * batch["loss_weights"] * batch["example_mask"])
    example_loss = example_loss / num_examples
    token_loss = jnp.sum(token_ce) / jnp.maximum(jnp.sum(token_mask), 1.0)
    loss = jnp.where(batch.get("token_level", 0.0) > 0, token_loss, example_loss)
    metrics = {
        "loss": loss,
        "token_ce": token_loss,
        "examples": jnp.sum(batch["example_mask"]),
        "tokens": jnp.sum(token_mask),
    }
    return loss, metrics


def model_inputs(batch: dict[str, Array]) -> dict[str, Array]:
    return {k: batch[k] for k in MODEL_KEYS if k in batch}


def make_train_step(
    model: Any, tx: optax.GradientTransformation, schedule: Callable | None = None
) -> Callable:
    """`step(state, frozen, batch, rng) -> (state, metrics)`; gradients w.r.t. `state.trainable`.

    Pure and unjitted: the trainer wraps it in one `jax.jit` with explicit shardings.
    """

    def loss_fn(trainable, frozen, batch, rng):
        params = merge_trees(trainable, frozen)
        logits = model.apply(
            {"params": params}, model_inputs(batch), train=True, rngs={"dropout": rng}
        )
        return sequence_losses(logits, batch)

    def step(state: TrainState, frozen: Any, batch: dict[str, Array], rng: Array):
        rng = jax.random.fold_in(rng, state.step)
        grads, metrics = jax.grad(loss_fn, has_aux=True)(state.trainable, frozen, batch, rng)
        updates, opt_state = tx.update(grads, state.opt_state, state.trainable)
        trainable = optax.apply_updates(state.trainable, updates)
        grad_norm = optax.tree.norm(grads)
        # A non-finite loss or gradient is never applied: the previous state is kept, so the
        # trainer can stop with everything it had (it reads every step's `finite`).
        finite = jnp.isfinite(metrics["loss"]) & jnp.isfinite(grad_norm)
        keep = lambda new, old: jax.tree.map(lambda a, b: jnp.where(finite, a, b), new, old)  # noqa: E731
        new_state = TrainState(
            state.step + 1,
            keep(trainable, state.trainable),
            keep(opt_state, state.opt_state),
        )
        metrics = {**metrics, "grad_norm": grad_norm, "finite": finite}
        if schedule is not None:
            metrics["lr"] = schedule(state.step)
        return new_state, metrics

    return step


def make_eval_loss(model: Any) -> Callable:
    """`eval_loss(trainable, frozen, batch) -> metrics` with dropout off."""

    def eval_loss(trainable, frozen, batch):
        params = merge_trees(trainable, frozen)
        logits = model.apply({"params": params}, model_inputs(batch), train=False)
        return sequence_losses(logits, batch)[1]

    return eval_loss
