"""The demo's pre-training: denoising mixed with supervised text-to-text pairs."""

from __future__ import annotations

import numpy as np

from vlpet_jax.data.batching import TextCollator
from vlpet_jax.data.synthetic import train_tokenizer
from vlpet_jax.models import presets
from vlpet_jax.train.pretrain import PretrainConfig, corrupt, pretrain

CORPUS = ["the red cube is left of the blue sphere", "a small green cone", "two large cylinders"]
PAIRS = [("vqa: what color is the cube?", "red"), ("nlvr: a cube is red", "true")]


def _setup(tmp_path, family):
    tokenizer = train_tokenizer(CORPUS + [p for pair in PAIRS for p in pair], tmp_path, family)
    cfg = presets.get_preset(f"{family}_tiny").replace(vocab_size=len(tokenizer))
    return cfg, tokenizer


def test_each_batch_mixes_supervised_pairs_with_denoised_text(tmp_path, monkeypatch):
    cfg, tokenizer = _setup(tmp_path, "bart")
    seen = []
    original = TextCollator.text_arrays

    def record(self, inputs, targets, *args, **kwargs):
        seen.append(list(zip(inputs, targets)))
        return original(self, inputs, targets, *args, **kwargs)

    monkeypatch.setattr(TextCollator, "text_arrays", record)
    options = PretrainConfig(steps=3, batch_size=8, warmup_steps=1, log_every=1)
    _, losses = pretrain(cfg, tokenizer, CORPUS, options, task_pairs=PAIRS)
    assert len(seen) == 3 and len(losses) == 3 and all(np.isfinite(losses))
    for rows in seen:
        supervised = [row for row in rows if row in PAIRS]
        denoised = [row for row in rows if row not in PAIRS]
        assert len(supervised) == 4 and len(denoised) == 4  # supervised_fraction 0.5 of 8
        # BART infilling: the target is the whole original sentence, the input has a mask.
        assert all(target in CORPUS and "<extra_id_0>" in source for source, target in denoised)


def test_corruption_masks_a_share_of_words_and_keeps_the_rest():
    words = ["what", "color", "is", "the", "object", "left", "of", "the", "red", "cube", "?"]
    rng = np.random.default_rng(0)
    t5_in, t5_out = corrupt(words, "t5", rng)
    assert "<extra_id_0>" in t5_in and t5_out.startswith("<extra_id_0>")
    kept = [w for w in t5_in.split() if not w.startswith("<extra_id_")]
    spans = [w for w in t5_out.split() if not w.startswith("<extra_id_")]
    assert sorted(kept + spans) == sorted(words)
    bart_in, bart_out = corrupt(words, "bart", rng)
    assert bart_out == " ".join(words) and "<extra_id_0>" in bart_in
