"""Our backbone parameters -> a Hugging Face checkpoint directory (config.json + safetensors).

The built-in demo pretrains tiny T5/BART models and must then load them "through exactly the same
code path as t5-base" (DESIGN.md), so it writes them in Hugging Face's own format; PyTorch's
`from_pretrained` reads the result too (checked in tests). No torch needed.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from typing import Any

import numpy as np
from flax.traverse_util import flatten_dict

from vlpet_jax.checkpoints.hf_names import hf_name_map
from vlpet_jax.models.config import BackboneConfig


def hf_config_dict(cfg: BackboneConfig) -> dict[str, Any]:
    """The `config.json` fields Hugging Face needs to rebuild this architecture."""
    if cfg.family == "t5":
        return {
            "architectures": ["T5ForConditionalGeneration"],
            "model_type": "t5",
            "vocab_size": cfg.vocab_size,
            "d_model": cfg.d_model,
            "d_kv": cfg.d_kv,
            "d_ff": cfg.d_ff,
            "num_layers": cfg.num_encoder_layers,
            "num_decoder_layers": cfg.num_decoder_layers,
            "num_heads": cfg.num_heads,
            "relative_attention_num_buckets": cfg.relative_attention_num_buckets,
            "relative_attention_max_distance": cfg.relative_attention_max_distance,
            "dropout_rate": cfg.dropout_rate,
            "layer_norm_epsilon": cfg.layer_norm_eps,
            "feed_forward_proj": cfg.ffn_activation,
            "is_encoder_decoder": True,
            "pad_token_id": cfg.pad_token_id,
            "eos_token_id": cfg.eos_token_id,
            "decoder_start_token_id": cfg.decoder_start_token_id,
            # Pre-v5 encoding, understood by every transformers version: False = untied and
            # unscaled (v1.1); v1 is tied and scaled.
            "tie_word_embeddings": cfg.tie_word_embeddings,
            "scale_decoder_outputs": cfg.scale_decoder_outputs,
        }
    return {
        "architectures": ["BartForConditionalGeneration"],
        "model_type": "bart",
        "vocab_size": cfg.vocab_size,
        "d_model": cfg.d_model,
        "encoder_layers": cfg.num_encoder_layers,
        "decoder_layers": cfg.num_decoder_layers,
        "encoder_attention_heads": cfg.num_heads,
        "decoder_attention_heads": cfg.num_heads,
        "encoder_ffn_dim": cfg.d_ff,
        "decoder_ffn_dim": cfg.d_ff,
        "activation_function": "gelu",
        "max_position_embeddings": cfg.max_position_embeddings,
        "dropout": cfg.dropout_rate,
        "attention_dropout": cfg.attention_dropout_rate,
        "activation_dropout": cfg.activation_dropout_rate,
        "scale_embedding": cfg.scale_embedding,
        "is_encoder_decoder": True,
        "pad_token_id": cfg.pad_token_id,
        "bos_token_id": cfg.bos_token_id,
        "eos_token_id": cfg.eos_token_id,
        "decoder_start_token_id": cfg.decoder_start_token_id,
        "forced_eos_token_id": cfg.eos_token_id,
        "tie_word_embeddings": True,
    }


def save_backbone(cfg: BackboneConfig, params: Any, out_dir: str | os.PathLike) -> None:
    """Write `params` (the backbone subtree) as `out_dir/{config.json, model.safetensors}`.

    Written into a temporary sibling directory and renamed into place, so an interrupted save
    never leaves a half-written checkpoint at `out_dir`.
    """
    from safetensors.numpy import save_file

    out_dir = os.path.abspath(os.fspath(out_dir))
    flat = flatten_dict(params, sep="/")
    names = hf_name_map(cfg)
    missing = sorted(set(names) - set(flat))
    if missing:
        raise KeyError(f"save_backbone: the parameter tree lacks {missing[:10]}")
    tensors = {}
    for path, (hf_key, transpose) in names.items():
        array = np.asarray(flat[path], dtype=np.float32)
        if path == "final_logits_bias":
            array = array.reshape(1, -1)
        tensors[hf_key] = np.ascontiguousarray(array.T if transpose else array)
    parent = os.path.dirname(out_dir)
    os.makedirs(parent, exist_ok=True)
    staging = tempfile.mkdtemp(dir=parent, prefix=".tmp-" + os.path.basename(out_dir))
    try:
        save_file(tensors, os.path.join(staging, "model.safetensors"), metadata={"format": "pt"})
        with open(os.path.join(staging, "config.json"), "w") as f:
            json.dump(hf_config_dict(cfg), f, indent=2)
        if os.path.isdir(out_dir):
            # Keep files we do not write (a tokenizer saved alongside).
            for name in os.listdir(out_dir):
                if not os.path.exists(os.path.join(staging, name)):
                    src = os.path.join(out_dir, name)
                    (shutil.copytree if os.path.isdir(src) else shutil.copy2)(
                        src, os.path.join(staging, name)
                    )
            shutil.rmtree(out_dir)
        os.replace(staging, out_dir)
    finally:
        if os.path.isdir(staging):
            shutil.rmtree(staging)
