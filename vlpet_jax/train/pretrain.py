"""Denoising pre-training of a tiny backbone on a text corpus (the built-in demo's first stage).

The demo needs a *pretrained* T5 and BART to freeze, and none can be downloaded, so it pretrains
tiny ones on the synthetic benchmark's text, with each family's own objective:
  T5   span corruption: spans replaced by sentinels `<extra_id_k>`, target lists the spans;
  BART text infilling: spans replaced by one mask token, target is the whole original text.
Optionally part of every batch is supervised text-to-text pairs (the tasks' text-only inputs and
answers), as in T5's multi-task pre-training mixture, so the decoder can already produce answers.
Corruption works on words so it can be written as text and batched by the same `TextCollator`
as the downstream tasks (same special-token layout per family).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax

from vlpet_jax.data.batching import TextCollator
from vlpet_jax.models.backbone import build_backbone
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.train.metrics_log import MetricWriter
from vlpet_jax.train.step import sequence_losses

MASK_TOKEN = "<extra_id_0>"  # BART's infilling mask (the tokenizer's first sentinel)


def corrupt(
    words: Sequence[str], family: str, rng: np.random.Generator, noise: float = 0.3
) -> tuple[str, str]:
    """(input text, target text) for one sentence."""
    n = len(words)
    masked = np.zeros(n, bool)
    budget = max(1, round(noise * n))
    while masked.sum() < budget:
        length = int(rng.integers(1, 4))
        start = int(rng.integers(0, max(n - length, 0) + 1))
        masked[start : start + length] = True
    inputs, targets, sentinel, i = [], [], 0, 0
    while i < n:
        if not masked[i]:
            inputs.append(words[i])
            i += 1
            continue
        token = f"<extra_id_{sentinel}>" if family == "t5" else MASK_TOKEN
        inputs.append(token)
        targets.append(token)
        while i < n and masked[i]:
            targets.append(words[i])
            i += 1
        sentinel += 1
    target = " ".join(targets) if family == "t5" else " ".join(words)
    return " ".join(inputs), target


# Peak learning rates that pretrain each tiny family without collapse. Post-LN BART at 3e-3
# learns the corpus as a decoder-only language model: its encoder output becomes the same vector
# at every position for every input (spread over positions 0.016 against a mean magnitude of
# 0.45) and every answer is the prior's, "no"; at 1e-3 the encoder stays informative (0.81
# against 0.83) and answers follow the question. Pre-norm T5 is fine at 3e-3.
PRETRAIN_LR = {"t5": 3e-3, "bart": 1e-3}


@dataclasses.dataclass
class PretrainConfig:
    steps: int = 300
    batch_size: int = 32
    lr: float | None = None  # None: the family's `PRETRAIN_LR`
    warmup_steps: int = 30
    seed: int = 0
    max_input_len: int = 64
    max_target_len: int = 64
    log_every: int = 50
    # Share of each batch drawn from `task_pairs` (when given) instead of denoised corpus text.
    supervised_fraction: float = 0.5


def pretrain(
    cfg: BackboneConfig,
    tokenizer: Any,
    corpus: Sequence[str],
    options: PretrainConfig,
    writer: MetricWriter | None = None,
    task_pairs: Sequence[tuple[str, str]] = (),
) -> tuple[Any, list[float]]:
    """Train every backbone parameter on the denoising objective, mixed with the supervised
    `task_pairs` (input, target) when given; returns (params, losses)."""
    if not corpus:
        raise ValueError("pretrain: the corpus is empty")
    model = build_backbone(cfg)
    # One padded shape for (nearly) every batch: the step compiles once, not once per bucket pair
    # (the demo's batches fall in two: inputs of 16 or 32 tokens, targets of 8 or 16).
    collator = TextCollator(
        tokenizer, cfg.family, input_buckets=(32, 64), target_buckets=(16, 32, 64)
    )
    rng = np.random.default_rng(options.seed)
    ids = jnp.ones((1, 4), jnp.int32)
    params = nn.unbox(model.init(jax.random.key(options.seed), ids, ids, ids)["params"])
    lr = PRETRAIN_LR[cfg.family] if options.lr is None else options.lr
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, lr, options.warmup_steps, options.steps, lr * 0.05
    )
    tx = optax.chain(optax.clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.01))
    opt_state = tx.init(params)

    @jax.jit
    def step(params, opt_state, batch, key):
        def loss_fn(p):
            logits = model.apply(
                {"params": p}, batch["input_ids"], batch["attention_mask"],
                batch["decoder_input_ids"], train=True, rngs={"dropout": key},
            )  # fmt: skip
            return sequence_losses(logits, batch)[0]

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    losses = []
    for i in range(options.steps):
        supervised = round(options.supervised_fraction * options.batch_size) if task_pairs else 0
        picks = rng.integers(0, len(corpus), size=options.batch_size - supervised)
        pairs = [corrupt(corpus[j].split(), cfg.family, rng) for j in picks]
        pairs += [task_pairs[j] for j in rng.integers(0, max(len(task_pairs), 1), size=supervised)]
        arrays = collator.text_arrays(
            [p[0] for p in pairs], [p[1] for p in pairs],
            options.max_input_len, options.max_target_len,
        )  # fmt: skip
        batch = {k: jnp.asarray(v) for k, v in arrays.items()}
        batch["loss_weights"] = jnp.ones((options.batch_size,), jnp.float32)
        batch["example_mask"] = jnp.ones((options.batch_size,), jnp.float32)
        params, opt_state, loss = step(params, opt_state, batch, jax.random.key(i))
        if (i + 1) % options.log_every == 0 or i + 1 == options.steps:
            losses.append(float(loss))
            if writer is not None:
                writer.count_examples(options.batch_size * options.log_every)
                writer.write(i + 1, {"loss": float(loss)}, prefix=f"pretrain_{cfg.family}")
                writer.progress(i + 1, {"loss": float(loss)})
    return params, losses
