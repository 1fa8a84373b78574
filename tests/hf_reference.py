"""Tiny Hugging Face PyTorch models, saved with `save_pretrained`: the reference in parity tests."""

from __future__ import annotations

import numpy as np
import torch
from transformers import (
    BartConfig,
    BartForConditionalGeneration,
    T5Config,
    T5ForConditionalGeneration,
)

TINY_T5 = dict(
    vocab_size=120, d_model=32, d_kv=8, d_ff=64, num_layers=2, num_decoder_layers=2, num_heads=4,
    relative_attention_num_buckets=16, relative_attention_max_distance=32, dropout_rate=0.0,
)  # fmt: skip
TINY_BART = dict(
    vocab_size=120, d_model=32, encoder_layers=2, decoder_layers=2, encoder_attention_heads=4,
    decoder_attention_heads=4, encoder_ffn_dim=64, decoder_ffn_dim=64, max_position_embeddings=64,
    dropout=0.0, attention_dropout=0.0, activation_dropout=0.0, forced_eos_token_id=None,
)  # fmt: skip
# The real sizes of t5-base and bart-base (SPEC.md §1), written here: no hub access.
T5_BASE = dict(
    vocab_size=32128, d_model=768, d_kv=64, d_ff=3072, num_layers=12, num_heads=12,
    relative_attention_num_buckets=32, relative_attention_max_distance=128, dropout_rate=0.0,
    feed_forward_proj="relu",
)  # fmt: skip
BART_BASE = dict(
    vocab_size=50265, d_model=768, encoder_layers=6, decoder_layers=6, encoder_attention_heads=12,
    decoder_attention_heads=12, encoder_ffn_dim=3072, decoder_ffn_dim=3072,
    max_position_embeddings=1024, dropout=0.0, attention_dropout=0.0, activation_dropout=0.0,
    forced_eos_token_id=None,
)  # fmt: skip


def make_t5(path, seed: int = 0, untied_head: bool = False, **overrides):
    """A random T5 saved at `path`; `untied_head` writes a v1.1/flan-style separate lm_head."""
    torch.manual_seed(seed)
    kwargs = {**TINY_T5, **overrides}
    model = T5ForConditionalGeneration(T5Config(**kwargs)).eval()
    _perturb_norms(model, seed)
    model.save_pretrained(path)
    if untied_head:
        _add_untied_head(path, model, seed)
        model = T5ForConditionalGeneration.from_pretrained(path).eval()
    return model


def make_bart(path, seed: int = 0, **overrides):
    torch.manual_seed(seed)
    model = BartForConditionalGeneration(BartConfig(**{**TINY_BART, **overrides})).eval()
    _perturb_norms(model, seed)
    with torch.no_grad():  # a non-zero buffer, so the test sees it is applied
        model.final_logits_bias.normal_(0, 0.5)
    model.save_pretrained(path)
    return model


def _perturb_norms(model, seed: int) -> None:
    """Norms start at exactly 1/0; move them so a wrong norm placement shows in the logits."""
    gen = torch.Generator().manual_seed(seed + 1)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "norm" in name:
                param.add_(0.1 * torch.randn(param.shape, generator=gen))


def _add_untied_head(path, model, seed: int) -> None:
    """Rewrite the checkpoint the way pre-v5 transformers saved flan-T5: a separate lm_head."""
    import json

    from safetensors.numpy import load_file, save_file

    rng = np.random.default_rng(seed)
    weights = load_file(f"{path}/model.safetensors")
    weights["lm_head.weight"] = rng.normal(size=weights["shared.weight"].shape).astype(np.float32)
    save_file(weights, f"{path}/model.safetensors", metadata={"format": "pt"})
    with open(f"{path}/config.json") as f:
        config = json.load(f)
    config.pop("scale_decoder_outputs", None)
    config["tie_word_embeddings"] = False
    with open(f"{path}/config.json", "w") as f:
        json.dump(config, f)


def padded_batch(rng: np.random.Generator, vocab: int, pad_id: int, batch=3, length=9, low=3):
    """Token ids with ragged right padding (each row a different length) and its mask."""
    ids = rng.integers(low, vocab, size=(batch, length))
    lengths = np.linspace(length, max(2, length // 3), batch).astype(int)
    mask = np.arange(length)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, pad_id)
    return ids.astype(np.int64), mask.astype(np.int64)


def torch_logits(model, ids, mask, dec_ids) -> np.ndarray:
    with torch.no_grad():
        out = model(
            input_ids=torch.tensor(ids),
            attention_mask=torch.tensor(mask),
            decoder_input_ids=torch.tensor(dec_ids),
        )
    return out.logits.numpy()
