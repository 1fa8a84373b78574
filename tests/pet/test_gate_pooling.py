"""Pooled gates do not depend on how far a batch is padded (issue: pad-independent gates).

The small gate averages over the encoder sequence. The released collator pads every batch to its
own longest text, our batcher to length buckets; in "released" pooling the gate averages over
the positions before the batch's longest real text plus the visual tokens, which is the released
value whatever the bucket. In "real_tokens" pooling it averages over each example's own tokens,
so it depends neither on the padding nor on the other examples of the batch.

Tolerance: 1e-6 of the logits' scale. Padding the text further changes the shapes of every
reduction, and fp32 rounding alone moves the logits of a model with no pooled gate by up to ~3e-7
of their scale here; a gate that pooled over the bucket's pads moved them by 0.04-0.24.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from tests.pet.tiny import FEAT_DIM, VIS_LEN, VOCAB, tiny_config
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import get_method
from vlpet_jax.pet.vl_pet import pooled_mean

# Every method with a pooled gate, each on both families for VL-PET and on one for the designs
# built on adapters (the gate is the same module; the test's cost is compiling each model).
POOLED_GATE_CASES = (
    ("vl_pet_small", "bart"),
    ("vl_pet_small", "t5"),
    ("vl_adapter+g_small+lw", "bart"),
    ("compacter+g_small+lw", "t5"),
)
TEXT_LENGTHS = (3, 5, 2, 6)  # real tokens of the four examples
BUCKET = 16  # what our batcher pads these to
SIZES = dict(rank=8, gate_rank=8, value_rank=8, adapter_reduction=4, compacter_reduction=4)


def _examples(family: str) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    pad = 1 if family == "bart" else 0
    return [
        dict(
            ids=rng.integers(3, VOCAB, n).astype(np.int32),
            vis=rng.normal(size=(VIS_LEN, FEAT_DIM)).astype(np.float32),
            dec=rng.integers(3, VOCAB, 5).astype(np.int32),
            pad=pad,
        )
        for n in TEXT_LENGTHS
    ]


def _batch(examples: list[dict], length: int | None) -> dict[str, jnp.ndarray]:
    """Right-padded to `length`, or to the batch's longest text (the released collator)."""
    length = length or max(len(e["ids"]) for e in examples)
    ids = np.full((len(examples), length), examples[0]["pad"], np.int32)
    mask = np.zeros((len(examples), length), np.int32)
    for row, e in enumerate(examples):
        ids[row, : len(e["ids"])] = e["ids"]
        mask[row, : len(e["ids"])] = 1
    return dict(
        input_ids=jnp.asarray(ids),
        attention_mask=jnp.asarray(mask),
        vis_feats=jnp.asarray(np.stack([e["vis"] for e in examples])),
        decoder_input_ids=jnp.asarray(np.stack([e["dec"] for e in examples])),
    )


def _logits_by_layout(method: str, family: str, pooling: str) -> dict[str, np.ndarray]:
    """Logits of the four examples under each (batching, padding) layout, rows in order."""
    cfg = tiny_config(family)
    pet = get_method(method, cfg, {**SIZES, "gate_pooling": pooling})
    model = VLModel(cfg, pet.hooks)
    examples = _examples(family)
    params = nn.unbox(model.init(jax.random.key(0), _batch(examples, None))["params"])
    # Move every parameter off its initial value: T5 starts the gate's output layer at zero,
    # which would make the gate a constant and the test vacuous.
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(jax.random.key(1), len(leaves))
    params = jax.tree.unflatten(
        tree, [x + 0.1 * jax.random.normal(k, x.shape) for x, k in zip(leaves, keys)]
    )
    apply = lambda p, b: model.apply({"params": p}, b, train=False)  # noqa: E731  (eager: cheaper)
    layouts = {}
    for batching, groups in (
        ("one batch", [examples]),
        ("two batches", [examples[:2], examples[2:]]),
    ):
        for padding, length in (("longest", None), ("bucket", BUCKET)):
            rows = [np.asarray(apply(params, _batch(g, length))) for g in groups]
            layouts[f"{batching}, {padding}"] = np.concatenate(rows)
    return layouts


def _tolerance(logits: np.ndarray) -> float:
    return 1e-6 * float(np.abs(logits).max())


@pytest.mark.parametrize(("method", "family"), POOLED_GATE_CASES)
def test_released_pooling_ignores_padding_beyond_the_longest_text(method, family):
    layouts = _logits_by_layout(method, family, "released")
    for batching in ("one batch", "two batches"):
        longest, bucket = layouts[f"{batching}, longest"], layouts[f"{batching}, bucket"]
        np.testing.assert_allclose(bucket, longest, atol=_tolerance(longest), err_msg=batching)
    # The released value does depend on the batch's longest text: the test can see the gate.
    moved = np.abs(layouts["one batch, longest"] - layouts["two batches, longest"]).max()
    assert moved > 1e-4, moved


@pytest.mark.parametrize("family", ["bart", "t5"])
def test_real_token_pooling_depends_on_nothing_but_the_example(family):
    layouts = _logits_by_layout("vl_pet_small", family, "real_tokens")
    reference = layouts["one batch, longest"]
    for name, logits in layouts.items():
        np.testing.assert_allclose(logits, reference, atol=_tolerance(reference), err_msg=name)


def test_pooled_mean_by_hand():
    per_token = jnp.asarray([[1.0, 2.0, 3.0, 4.0, 5.0], [6.0, 7.0, 8.0, 9.0, 10.0]])[..., None]
    # Text of 3 positions (example 0: 2 real, example 1: 1 real), then 2 visual tokens.
    mask = jnp.asarray([[1, 1, 0, 1, 1], [1, 0, 0, 1, 1]], bool)
    released = pooled_mean(per_token, mask, "released")[:, 0, 0]
    real = pooled_mean(per_token, mask, "real_tokens")[:, 0, 0]
    # released: positions 0, 1 (before the longest real text, 2) and the visual tokens 3, 4.
    np.testing.assert_allclose(released, [(1 + 2 + 4 + 5) / 4, (6 + 7 + 9 + 10) / 4])
    np.testing.assert_allclose(real, [(1 + 2 + 4 + 5) / 4, (6 + 9 + 10) / 3])
    everything = pooled_mean(per_token, None, "released")[:, 0, 0]
    np.testing.assert_allclose(everything, [3.0, 8.0])
    with pytest.raises(ValueError, match="unknown gate pooling 'mean'"):
        pooled_mean(per_token, mask, "mean")
