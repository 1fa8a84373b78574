"""The released code's name for each of our trainable parameters, for rules over names.

The released trainer decides some things by *substring of the parameter name* (weight decay:
`"bias"` or `"LayerNorm.weight"` anywhere in the name, SPEC.md §8), so checking that our
path-based rules reproduce it needs the released names. Methods with an importable layout take
them from the importer's table (`official_names`); for the others the names are built from the
released modules' attribute names at the sites of SPEC.md §9: adapter `down_sampler`/`up_sampler`,
Compacter's PHM layers `phm_rule`/`W`/`b`, HyperFormer's `task_hypernet`, `LayerNorm` and
`weight_generator`/`bias_generator`, prompt tuning's `prefix_embedding` (Embedding, Linear, Tanh,
Linear), LoRA's `lora_As`/`lora_Bs`. Those names decide name-based rules exactly; they are not an
import layout (the module prefixes of methods the importer does not support are not checked).
"""

from __future__ import annotations

import contextlib
import re

from vlpet_jax.checkpoints.official_names import (
    TASK,
    _backbone,
    _gate,
    _visual,
    cross_attention_prefix,
    encoder_sublayer_prefix,
    importable_methods,
    official_names,
)
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks

TASK_ALIAS = "vqa"  # any task alias: single modules are saved under every one (SPEC.md §9)

# Our sub-layer hook site -> the released adapter attribute at that site, per stack.
_ADAPTER_ATTRS = {
    ("encoder", "self_attn"): "attn_adapter",
    ("encoder", "ff"): "ff_adapter",
    ("decoder", "self_attn"): "self_attn_adapter",
    ("decoder", "cross_attn"): "enc_attn_adapter",
    ("decoder", "ff"): "ff_adapter",
}
_PHM_LEAVES = {"phm_rule": "phm_rule", "phm_kernel": "W", "bias": "b"}
_LINEAR_LEAVES = {"kernel": "weight", "bias": "bias", "scale": "weight", "embedding": "weight"}
_HYPER_KINDS = {
    "self_attn": "self_attention",
    "cross_attn": "cross_attention",
    "ff": "feed_forward",
}


def _layer_prefix(cfg: BackboneConfig, stack: str, layer: int, site: str) -> str:
    if stack == "encoder":
        return encoder_sublayer_prefix(cfg, layer, "attn" if site == "self_attn" else "ff")
    if site == "cross_attn":
        return cross_attention_prefix(cfg, layer)
    if cfg.family == "bart":
        return f"model.decoder.layers.{layer}."
    return f"decoder.block.{layer}.layer.{2 if site == 'ff' else 0}."


def _site_module(
    cfg: BackboneConfig, stack: str, layer: int, site: str, rest: str, phm: bool
) -> str | None:
    """A sub-layer hook module's leaf (`pet_<site>/<rest>`); `phm`: Compacter's PHM layers."""
    prefix = _layer_prefix(cfg, stack, layer, site)
    attr = _ADAPTER_ATTRS[(stack, site)]
    if phm and (m := re.fullmatch(r"mod/(down|up)/(phm_rule|phm_kernel|bias)", rest)):
        return f"{prefix}{attr}.adapters.{TASK_ALIAS}.{m[1]}_sampler.{_PHM_LEAVES[m[2]]}"
    if m := re.fullmatch(r"mod/(down|up)/(kernel|bias)", rest):
        return f"{prefix}{attr}.adapters.{TASK_ALIAS}.{m[1]}_sampler.{_LINEAR_LEAVES[m[2]]}"
    if m := re.fullmatch(r"gate/(.+)", rest):
        for level in ("large", "middle_x", "middle_y", "small"):
            sub = "attn" if site == "self_attn" else "ff"
            table = _gate(level, "gate", prefix, sub)
            if f"gate/{m[1]}" in table:
                return table[f"gate/{m[1]}"].first_key
    return None


def _hyper_leaf(path: str) -> str | None:
    """HyperFormer's shared hyper-networks (`pet_shared/...`)."""
    if path == "pet_shared/task_embeddings":
        return f"task_embedding_controller.task_to_embeddings.{TASK_ALIAS}"
    m = re.fullmatch(r"pet_shared/(encoder|decoder)/(.+)", path)
    if not m:
        return None
    net, rest = f"{m[1]}_adapter_layers_hyper_net_controller", m[2]
    if rest == "layer_embeddings":
        return f"{net}.layer_id_embeddings.weight"
    if n := re.fullmatch(r"task_proj_(hidden|out)/(kernel|bias)", rest):
        index = 0 if n[1] == "hidden" else 2
        return f"{net}.task_hypernet.task_embeding_generator.{index}.{_LINEAR_LEAVES[n[2]]}"
    if n := re.fullmatch(r"task_norm/(scale|bias)", rest):
        return f"{net}.LayerNorm.{_LINEAR_LEAVES[n[1]]}"
    if n := re.fullmatch(
        r"(self_attn|cross_attn|ff)_(down|up)_(weight|bias)_gen/(kernel|bias)", rest
    ):
        sampler = f"{_HYPER_KINDS[n[1]]}_{n[2]}_sampler_hyper_net"
        return f"{net}.{sampler}.{n[3]}_generator.0.{_LINEAR_LEAVES[n[4]]}"
    return None


def _prompt_leaf(cfg: BackboneConfig, rest: str) -> str | None:
    prefix = "model.encoder.prompt_modules." if cfg.family == "bart" else "encoder.prompt_modules."
    index = {"embedding": 0, "hidden": 1, "out": 3}.get(rest.split("/")[0])
    if index is None:
        return None
    leaf = rest.split("/")[-1]
    return f"{prefix}prompts.{TASK_ALIAS}.prefix_embedding.{index}.{_LINEAR_LEAVES[leaf]}"


def _lora_leaf(cfg: BackboneConfig, stack: str, layer: int, attn: str, rest: str) -> str | None:
    m = re.fullmatch(r"pet_(q|v)/(down|up)/kernel", rest)
    if not m:
        return None
    if cfg.family == "bart":
        hf_attn = {"self_attn": "self_attn", "cross_attn": "encoder_attn"}[attn]
        base = f"model.{stack}.layers.{layer}.{hf_attn}.{m[1]}_proj."
    else:
        sub = {"self_attn": "0.SelfAttention", "cross_attn": "1.EncDecAttention"}[attn]
        base = f"{stack}.block.{layer}.layer.{sub}.{m[1]}."
    return f"{base}lora_{'As' if m[2] == 'down' else 'Bs'}.{TASK_ALIAS}"


def _pet_leaf(cfg: BackboneConfig, path: str, phm: bool) -> str | None:
    if path.startswith("pet_shared/"):
        return _hyper_leaf(path)
    if m := re.fullmatch(r"backbone/pet_encoder_prefix/(.+)", path):
        return _prompt_leaf(cfg, m[1])
    if m := re.fullmatch(r"backbone/(encoder|decoder)_layers_(\d+)/pet_([a-z_]+)/(.+)", path):
        return _site_module(cfg, m[1], int(m[2]), m[3], m[4], phm)
    if m := re.fullmatch(
        r"backbone/(encoder|decoder)_layers_(\d+)/(self_attn|cross_attn)/(.+)", path
    ):
        return _lora_leaf(cfg, m[1], int(m[2]), m[3], m[4])
    return None


def released_names(
    method_name: str, cfg: BackboneConfig, hooks: PetHooks, paths: list[str]
) -> dict[str, str]:
    """`{our path: released parameter name}` for `paths` (e.g. the trainable leaves)."""
    table = {**_backbone(cfg), **_visual(cfg)}
    if method_name in importable_methods():
        # A layout released for BART only raises on T5: those leaves are named below instead.
        with contextlib.suppress(ValueError):
            table.update(official_names(method_name, cfg, hooks))
    phm = method_name.split("+")[0] == "compacter"
    names, unknown = {}, []
    for path in paths:
        if path in table:
            names[path] = table[path].first_key.replace(TASK, TASK_ALIAS)
        elif (name := _pet_leaf(cfg, path, phm)) is not None:
            names[path] = name
        else:
            unknown.append(path)
    if unknown:
        raise KeyError(f"{method_name}: no released name for {unknown[:5]}")
    return names
