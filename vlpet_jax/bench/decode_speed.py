"""Decoding tokens/s: our jitted greedy / beam search vs Hugging Face `generate`, same weights.

Both sides decode exactly `max_length - 1` tokens per sequence (`min_length = max_length`, so
neither stops early), from the same random T5/BART saved with `save_pretrained` and loaded by our
normal loader, in fp32. Timing excludes our compilation (one untimed call, whose tokens are
compared with HF's) and interleaves our calls with HF's, so that load from other processes on a
shared machine falls on both; `speedup_median_of_pairs` is the median of the per-pair ratios.
"""

from __future__ import annotations

import statistics
import tempfile
from typing import Any

import numpy as np

from vlpet_jax.bench.timing import time_call

TINY_SIZES = {
    "t5": dict(vocab_size=512, d_model=64, d_kv=16, d_ff=128, num_layers=2, num_heads=4),
    "bart": dict(
        vocab_size=512,
        d_model=64,
        encoder_layers=2,
        decoder_layers=2,
        encoder_attention_heads=4,
        decoder_attention_heads=4,
        encoder_ffn_dim=128,
        decoder_ffn_dim=128,
        max_position_embeddings=128,
    ),
}
BASE_SIZES = {
    "t5": dict(vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12),
    "bart": dict(
        vocab_size=50265,
        d_model=768,
        encoder_layers=6,
        decoder_layers=6,
        encoder_attention_heads=12,
        decoder_attention_heads=12,
        encoder_ffn_dim=3072,
        decoder_ffn_dim=3072,
        max_position_embeddings=1024,
    ),
}


def make_hf_model(family: str, sizes: dict[str, Any], path: str, seed: int = 0):
    import torch
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        T5Config,
        T5ForConditionalGeneration,
    )

    torch.manual_seed(seed)
    if family == "t5":
        model = T5ForConditionalGeneration(T5Config(**sizes, dropout_rate=0.0))
    else:
        model = BartForConditionalGeneration(BartConfig(**sizes, forced_eos_token_id=None))
    model.eval().save_pretrained(path)
    return model


def run(
    family: str,
    size: str,
    batch_size: int = 16,
    input_length: int = 56,
    max_length: int = 21,
    repeats: int = 5,
) -> list[dict[str, Any]]:
    import torch
    from transformers import GenerationConfig as HFGenerationConfig

    from vlpet_jax.checkpoints.hf import load_backbone
    from vlpet_jax.models.backbone import build_backbone
    from vlpet_jax.train.generate import GenerationConfig, make_generate_fn

    sizes = (TINY_SIZES if size == "tiny" else BASE_SIZES)[family]
    records = []
    with tempfile.TemporaryDirectory() as path:
        reference = make_hf_model(family, sizes, path)
        cfg, params = load_backbone(path)
    model = build_backbone(cfg)
    rng = np.random.default_rng(0)
    ids = rng.integers(4, cfg.vocab_size, size=(batch_size, input_length))
    mask = np.ones_like(ids)
    batch = {"input_ids": ids.astype(np.int32), "attention_mask": mask.astype(np.int32)}
    new_tokens = batch_size * (max_length - 1)
    for num_beams in (1, 5):
        gen = GenerationConfig(max_length=max_length, num_beams=num_beams, min_length=max_length)
        generate = make_generate_fn(model, gen)
        hf_gen = HFGenerationConfig(
            max_length=max_length, min_length=max_length, num_beams=num_beams, do_sample=False,
            decoder_start_token_id=cfg.decoder_start_token_id, eos_token_id=cfg.eos_token_id,
            pad_token_id=cfg.pad_token_id,
        )  # fmt: skip
        inputs = dict(input_ids=torch.tensor(ids), attention_mask=torch.tensor(mask))

        def ours_call(generate=generate):
            return generate(params, batch)

        def hf_call(hf_gen=hf_gen, inputs=inputs):
            with torch.no_grad():
                return reference.generate(**inputs, generation_config=hf_gen)

        # Same work on both sides: the untimed first calls (our compilation) must pick the same
        # tokens (a fraction below 1 would mean a near-tie broken differently, not less work).
        ours_ids = np.asarray(ours_call())
        hf_ids = hf_call().numpy()
        agreement = float(np.mean(ours_ids[:, : hf_ids.shape[1]] == hf_ids))
        # Interleaved, so that load from other processes hits both sides alike.
        ours_s, hf_s = [], []
        for _ in range(repeats):
            ours_s.append(time_call(ours_call, repeats=1, warmup=0)["median_s"])
            hf_s.append(time_call(hf_call, repeats=1, warmup=0)["median_s"])
        ours_tps = new_tokens / statistics.median(ours_s)
        hf_tps = new_tokens / statistics.median(hf_s)
        records.append(
            {
                "benchmark": "decode",
                "family": family,
                "size": size,
                "search": "greedy" if num_beams == 1 else f"beam{num_beams}",
                "batch_size": batch_size,
                "input_length": input_length,
                "new_tokens_per_sequence": max_length - 1,
                "ours_tokens_per_s": round(ours_tps, 1),
                "hf_generate_tokens_per_s": round(hf_tps, 1),
                "speedup": round(ours_tps / hf_tps, 2),
                "speedup_median_of_pairs": round(
                    statistics.median(h / o for o, h in zip(ours_s, hf_s)), 2
                ),
                "token_agreement": round(agreement, 4),
            }
        )
    return records
