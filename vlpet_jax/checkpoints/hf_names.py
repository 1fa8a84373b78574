"""Where each of our backbone parameters lives in a Hugging Face state dict.

`hf_name_map(cfg)` returns `{our '/'-joined path: (hf key, transpose)}` for every backbone
parameter. PyTorch `Linear.weight` is (out, in) and our `Dense` kernel (in, out), hence the flag.
Kept apart from the loader so the official VL-PET importer reuses the same table.
"""

from __future__ import annotations

from vlpet_jax.models.config import BackboneConfig

NameMap = dict[str, tuple[str, bool]]

_ATTN = {"q": "q", "k": "k", "v": "v", "o": "o"}
_BART_ATTN = {"q": "q_proj", "k": "k_proj", "v": "v_proj", "o": "out_proj"}


def hf_name_map(cfg: BackboneConfig) -> NameMap:
    if cfg.family == "t5":
        return _t5_names(cfg)
    if cfg.family == "bart":
        return _bart_names(cfg)
    raise ValueError(f"no Hugging Face name table for backbone family {cfg.family!r}")


def _t5_names(cfg: BackboneConfig) -> NameMap:
    names: NameMap = {"shared/embedding": ("shared.weight", False)}
    ffn = ["wi_0", "wi_1", "wo"] if cfg.ffn_activation == "gated-gelu" else ["wi", "wo"]
    for stack, num_layers in (
        ("encoder", cfg.num_encoder_layers),
        ("decoder", cfg.num_decoder_layers),
    ):
        names[f"{stack}_relative_bias/embedding"] = (
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            False,
        )
        names[f"{stack}_final_norm/scale"] = (f"{stack}.final_layer_norm.weight", False)
        for i in range(num_layers):
            ours, theirs = f"{stack}_layers_{i}", f"{stack}.block.{i}.layer"
            sublayers = [("self_attn", "0", "SelfAttention")]
            if stack == "decoder":
                sublayers.append(("cross_attn", "1", "EncDecAttention"))
            for name, idx, hf_name in sublayers:
                names[f"{ours}/{name}_norm/scale"] = (f"{theirs}.{idx}.layer_norm.weight", False)
                for proj, hf_proj in _ATTN.items():
                    names[f"{ours}/{name}/{proj}/kernel"] = (
                        f"{theirs}.{idx}.{hf_name}.{hf_proj}.weight",
                        True,
                    )
            ff_idx = "2" if stack == "decoder" else "1"
            names[f"{ours}/ff_norm/scale"] = (f"{theirs}.{ff_idx}.layer_norm.weight", False)
            for w in ffn:
                names[f"{ours}/ff/{w}/kernel"] = (
                    f"{theirs}.{ff_idx}.DenseReluDense.{w}.weight",
                    True,
                )
    if not cfg.tie_word_embeddings:
        names["lm_head/kernel"] = ("lm_head.weight", True)
    return names


def _bart_names(cfg: BackboneConfig) -> NameMap:
    names: NameMap = {
        "shared/embedding": ("model.shared.weight", False),
        "final_logits_bias": ("final_logits_bias", False),
    }
    for stack, num_layers in (
        ("encoder", cfg.num_encoder_layers),
        ("decoder", cfg.num_decoder_layers),
    ):
        prefix = f"model.{stack}"
        names[f"{stack}_positions/embedding"] = (f"{prefix}.embed_positions.weight", False)
        for p in ("scale", "bias"):
            hf_p = "weight" if p == "scale" else "bias"
            names[f"{stack}_layernorm_embedding/{p}"] = (
                f"{prefix}.layernorm_embedding.{hf_p}",
                False,
            )
        for i in range(num_layers):
            ours, theirs = f"{stack}_layers_{i}", f"{prefix}.layers.{i}"
            attns = [("self_attn", "self_attn")]
            if stack == "decoder":
                attns.append(("cross_attn", "encoder_attn"))
            norms = [(f"{a}_norm", f"{h}_layer_norm") for a, h in attns]
            norms.append(("ff_norm", "final_layer_norm"))
            for ours_attn, hf_attn in attns:
                for proj, hf_proj in _BART_ATTN.items():
                    base = f"{theirs}.{hf_attn}.{hf_proj}"
                    names[f"{ours}/{ours_attn}/{proj}/kernel"] = (f"{base}.weight", True)
                    names[f"{ours}/{ours_attn}/{proj}/bias"] = (f"{base}.bias", False)
            for ours_norm, hf_norm in norms:
                names[f"{ours}/{ours_norm}/scale"] = (f"{theirs}.{hf_norm}.weight", False)
                names[f"{ours}/{ours_norm}/bias"] = (f"{theirs}.{hf_norm}.bias", False)
            for fc in ("fc1", "fc2"):
                names[f"{ours}/ff/{fc}/kernel"] = (f"{theirs}.{fc}.weight", True)
                names[f"{ours}/ff/{fc}/bias"] = (f"{theirs}.{fc}.bias", False)
    return names


def tied_aliases(cfg: BackboneConfig) -> dict[str, str]:
    """Keys a checkpoint may hold as copies of the token table: {alias: canonical key}."""
    if cfg.family == "t5":
        canonical = "shared.weight"
        aliases = ["encoder.embed_tokens.weight", "decoder.embed_tokens.weight"]
        if cfg.tie_word_embeddings:
            aliases.append("lm_head.weight")
    else:
        canonical = "model.shared.weight"
        aliases = [
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
            "lm_head.weight",
        ]
    return {alias: canonical for alias in aliases}
