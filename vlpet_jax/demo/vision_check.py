"""Does a model read the image? Caption loss with each example's own image vs another's.

The demo's vision-and-language pretraining is only worth its time if the backbone it freezes
uses the visual tokens: its caption loss with the right image must be clearly lower than with the
images of the batch rolled by one (every caption paired with another example's image, the text
and everything else unchanged). `caption_losses` measures both on a run's caption batches; the
demo prints them after pretraining, and the tests hold a short pretraining to a measured margin.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from vlpet_jax.train import device_data
from vlpet_jax.train.step import model_inputs, sequence_losses


def caption_losses(model: Any, params: Any, batches: Any, num_batches: int) -> tuple[float, float]:
    """(mean token cross-entropy with the right images, with the batch's images rolled by one)
    over the first `num_batches` of `batches` (a run's iterator over caption batches)."""

    @jax.jit
    def token_ce(params, arrays):
        logits = model.apply({"params": params}, model_inputs(arrays))
        return sequence_losses(logits, arrays)[1]["token_ce"]

    right, shuffled = [], []
    for _, batch in zip(range(num_batches), batches):
        arrays = {k: v for k, v in batch.arrays.items() if k not in device_data.HOST_ONLY}
        rolled = dict(arrays, vis_feats=np.roll(arrays["vis_feats"], 1, axis=0))
        right.append(float(token_ce(params, arrays)))
        shuffled.append(float(token_ce(params, rolled)))
    if not right:
        raise ValueError("caption_losses: no batch to measure")
    return float(np.mean(right)), float(np.mean(shuffled))
