"""Where each of our parameters lives in a released PyTorch VL-PET, VL-Adapter or LoRA checkpoint.

SPEC.md §9 gives the key patterns. `official_names(method_name, backbone_cfg, hooks)` returns
`{our '/'-joined path: Source}` for every leaf of the `VLModel` tree of that method: the backbone
(reusing `hf_name_map`, the table the Hugging Face loader uses), the visual embedding, and the
method's own modules. The importer
(`official.py`) is generic over this table, so supporting another released method is one more
name builder here.

Two kinds of duplicates appear in a released state dict and are expressed as *copies* (several
key templates that must hold equal tensors; the importer reads one and compares the rest):
* the tied token table, saved five times (`shared`, encoder/decoder `embed_tokens`,
  `visual_embedding.obj_order_embedding`, `lm_head`);
* every "single" adapter tensor, saved once per task under `adapters.<task>.`; the task names
  differ between the image and video releases, so the templates hold the placeholder `{task}`
  and match any task name found in the checkpoint.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

from vlpet_jax.checkpoints.hf_names import hf_name_map, tied_aliases
from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.hooks import PetHooks
from vlpet_jax.pet.vl_pet import LEVELS, VLPetHooks

TASK = "{task}"  # placeholder in a key template: any task alias (vqa, gqa, nlvr, caption, ...)


@dataclasses.dataclass(frozen=True)
class Source:
    """The official tensor(s) one of our leaves is read from.

    `parts` are concatenated along axis 0 in the official (PyTorch) layout: the heads of VL-PET's
    multi-head down projection, `{p}_adapter_multihead_down.{h}`, are one `Dense(d→r)` for us whose
    output axis is the heads' outputs in order h = 0..N_h-1 (SPEC.md §3, `concat_h`). Most leaves
    have one part. Each part is a tuple of key templates holding copies of the same tensor: at
    least one must be present, all present ones must be equal.

    `transpose`: a PyTorch `Linear.weight` is (out, in), our `Dense` kernel (in, out).
    `flatten`: BART's `final_logits_bias` buffer is (1, vocab), ours (vocab,).
    """

    parts: tuple[tuple[str, ...], ...]
    transpose: bool = False
    flatten: bool = False

    @property
    def first_key(self) -> str:
        return self.parts[0][0]


NameTable = dict[str, Source]
NameBuilder = Callable[[BackboneConfig, PetHooks], NameTable]


def _one(key: str, *copies: str, transpose: bool = False, flatten: bool = False) -> Source:
    return Source(parts=((key, *copies),), transpose=transpose, flatten=flatten)


def _linear(ours: str, theirs: str, bias: bool = True) -> NameTable:
    """A PyTorch `nn.Linear` at official prefix `theirs` -> our `Dense` at path `ours`."""
    table = {f"{ours}/kernel": _one(f"{theirs}.weight", transpose=True)}
    if bias:
        table[f"{ours}/bias"] = _one(f"{theirs}.bias")
    return table


def _norm(ours: str, theirs: str, family: str) -> NameTable:
    """LayerNorm (BART: weight and bias) or T5's RMSNorm (weight only)."""
    table = {f"{ours}/scale": _one(f"{theirs}.weight")}
    if family == "bart":
        table[f"{ours}/bias"] = _one(f"{theirs}.bias")
    return table


# ---------------------------------------------------------------- backbone and visual embedding


def visual_prefix(cfg: BackboneConfig) -> str:
    """The visual embedding sits in the encoder: `model.encoder.` (BART) or `encoder.` (T5)."""
    return (
        "model.encoder.visual_embedding." if cfg.family == "bart" else "encoder.visual_embedding."
    )


def _backbone(cfg: BackboneConfig) -> NameTable:
    """Hugging Face names (SPEC.md §9 "backbone"), with the tied table's copies attached."""
    copies: dict[str, list[str]] = {}
    for alias, canonical in tied_aliases(cfg).items():
        copies.setdefault(canonical, []).append(alias)
    shared_key = "model.shared.weight" if cfg.family == "bart" else "shared.weight"
    # VL-T5's object-order codes read the shared table through the visual embedding (SPEC.md §2).
    copies.setdefault(shared_key, []).append(f"{visual_prefix(cfg)}obj_order_embedding.weight")
    return {
        f"backbone/{path}": _one(
            key, *copies.get(key, ()), transpose=transpose, flatten=path == "final_logits_bias"
        )
        for path, (key, transpose) in hf_name_map(cfg).items()
    }


def _visual(cfg: BackboneConfig) -> NameTable:
    """`feat_embedding.{0,1}`, `absolute_vis_pos_embedding.{0,1}`, `img_order_embedding`."""
    prefix = visual_prefix(cfg)
    ours = "visual_embedding"
    return {
        **_linear(f"{ours}/feat_proj", f"{prefix}feat_embedding.0"),
        **_norm(f"{ours}/feat_norm", f"{prefix}feat_embedding.1", cfg.family),
        **_linear(f"{ours}/box_proj", f"{prefix}absolute_vis_pos_embedding.0"),
        **_norm(f"{ours}/box_norm", f"{prefix}absolute_vis_pos_embedding.1", cfg.family),
        f"{ours}/img_order_embedding": _one(f"{prefix}img_order_embedding.weight"),
    }


# ---------------------------------------------------------------- VL-PET (SPEC.md §3, §4)

# Official sub-layer tag -> our hook site name under `encoder_layers_{i}`.
_SUBLAYERS = {"attn": "self_attn", "ff": "ff"}


def encoder_sublayer_prefix(cfg: BackboneConfig, layer: int, sublayer: str) -> str:
    """BART keeps attn and ff modules on the layer; T5 on `layer.0` (attn) / `layer.1` (ff)."""
    if cfg.family == "bart":
        return f"model.encoder.layers.{layer}."
    return f"encoder.block.{layer}.layer.{0 if sublayer == 'attn' else 1}."


def cross_attention_prefix(cfg: BackboneConfig, layer: int) -> str:
    if cfg.family == "bart":
        return f"model.decoder.layers.{layer}.encoder_attn."
    return f"decoder.block.{layer}.layer.1.EncDecAttention."


def _gate(level: str, ours: str, theirs: str, sublayer: str) -> NameTable:
    """The granularity gate G of one sub-layer; `theirs` is the sub-layer's official prefix."""
    name = f"{theirs}encoder_{sublayer}_adapter_gating_"
    if level == "large":
        return {
            **_linear(f"{ours}/down", f"{name}large_x_down"),
            **_linear(f"{ours}/up", f"{name}large_x_up"),
        }
    if level == "middle_x":
        return _linear(f"{ours}/proj", f"{name}middle_xy_add")
    if level == "middle_y":  # a bare (d,) parameter z, G = 1 + z
        return {f"{ours}/z": _one(f"{name}middle_ia3_add")}
    if level == "small":  # Linear(2d→1) over [X ; Hs]
        return _linear(f"{ours}/proj", f"{name}small_xy_cat")
    raise ValueError(f"unknown VL-PET granularity {level!r}; known: {LEVELS}")


def _multihead_down(ours: str, theirs: str, num_heads: int) -> NameTable:
    """N_h Linear(d→r/N_h) heads -> our Dense(d→r): heads stacked along the output axis."""
    heads = [f"{theirs}.{h}" for h in range(num_heads)]
    return {
        f"{ours}/kernel": Source(parts=tuple((f"{k}.weight",) for k in heads), transpose=True),
        f"{ours}/bias": Source(parts=tuple((f"{k}.bias",) for k in heads)),
    }


def _task_adapter(ours: str, theirs: str) -> NameTable:
    """A "single" adapter (one module shared by all tasks, saved under every task alias)."""
    return {
        **_linear(f"{ours}/down", f"{theirs}adapters.{TASK}.down_sampler"),
        **_linear(f"{ours}/up", f"{theirs}adapters.{TASK}.up_sampler"),
    }


def _vl_pet(cfg: BackboneConfig, hooks: PetHooks) -> NameTable:
    if not isinstance(hooks, VLPetHooks):
        raise TypeError(f"VL-PET import needs VLPetHooks, got {type(hooks).__name__}")
    table: NameTable = {}
    for i in range(cfg.num_encoder_layers):
        for sublayer, site in _SUBLAYERS.items():
            theirs = encoder_sublayer_prefix(cfg, i, sublayer)
            ours = f"backbone/encoder_layers_{i}/pet_{site}"
            table.update(
                _multihead_down(
                    f"{ours}/mod/down",
                    f"{theirs}{sublayer}_adapter_multihead_down",
                    hooks.num_heads,
                )
            )
            table.update(_linear(f"{ours}/mod/up", f"{theirs}{sublayer}_adapter_multihead_up"))
            table.update(_gate(hooks.level, f"{ours}/gate", theirs, sublayer))
    for i in range(cfg.num_decoder_layers):
        theirs = f"{cross_attention_prefix(cfg, i)}attn_value_parallel_adapter."
        table.update(_task_adapter(f"backbone/decoder_layers_{i}/cross_attn/pet_v/mod", theirs))
    return table


# ---------------------------------------------------------------- VL-Adapter and LoRA (SPEC.md §5)


def _require_bart(cfg: BackboneConfig, method: str) -> None:
    if cfg.family != "bart":
        raise ValueError(
            f"{method}: the released checkpoints and their key names are for BART only "
            f"(SPEC.md §9); got a {cfg.family} backbone"
        )


def _vl_adapter(cfg: BackboneConfig, hooks: PetHooks) -> NameTable:
    """Sequential "single" adapters on every sub-layer: `{attn,ff}_adapter` in the encoder,
    `{self_attn,enc_attn,ff}_adapter` in the decoder, each `.adapters.{task}.{down,up}_sampler`."""
    del hooks
    _require_bart(cfg, "vl_adapter")
    table: NameTable = {}
    stacks = (
        ("encoder", cfg.num_encoder_layers, {"self_attn": "attn_adapter", "ff": "ff_adapter"}),
        (
            "decoder",
            cfg.num_decoder_layers,
            {
                "self_attn": "self_attn_adapter",
                "cross_attn": "enc_attn_adapter",
                "ff": "ff_adapter",
            },
        ),
    )
    for stack, num_layers, sites in stacks:
        for i in range(num_layers):
            for site, theirs in sites.items():
                table.update(
                    _task_adapter(
                        f"backbone/{stack}_layers_{i}/pet_{site}/mod",
                        f"model.{stack}.layers.{i}.{theirs}.",
                    )
                )
    return table


def _lora(cfg: BackboneConfig, hooks: PetHooks) -> NameTable:
    """`lora_As.{task}` (r, d_in) and `lora_Bs.{task}` (d_out, r) beside each frozen q/v projection
    of every attention; our `down` kernel is A^T and our `up` kernel B^T."""
    del hooks
    _require_bart(cfg, "lora")
    attentions = [("encoder", i, "self_attn", "self_attn") for i in range(cfg.num_encoder_layers)]
    for i in range(cfg.num_decoder_layers):
        attentions += [("decoder", i, "self_attn", "self_attn")]
        attentions += [("decoder", i, "cross_attn", "encoder_attn")]
    table: NameTable = {}
    for stack, i, ours, theirs in attentions:
        for proj, hf_proj in (("q", "q_proj"), ("v", "v_proj")):
            base = f"model.{stack}.layers.{i}.{theirs}.{hf_proj}."
            path = f"backbone/{stack}_layers_{i}/{ours}/pet_{proj}"
            table[f"{path}/down/kernel"] = _one(f"{base}lora_As.{TASK}", transpose=True)
            table[f"{path}/up/kernel"] = _one(f"{base}lora_Bs.{TASK}", transpose=True)
    return table


# ---------------------------------------------------------------- registry

_BUILDERS: dict[str, NameBuilder] = {
    **{f"vl_pet_{level}": _vl_pet for level in LEVELS},
    "vl_adapter": _vl_adapter,
    "adapter": _vl_adapter,  # the registry's alias of vl_adapter
    "lora": _lora,
}


def importable_methods() -> list[str]:
    return sorted(_BUILDERS)


def official_names(method_name: str, cfg: BackboneConfig, hooks: PetHooks) -> NameTable:
    """`{our path: Source}` for every leaf of `VLModel(cfg, hooks)` (SPEC.md §9)."""
    if method_name not in _BUILDERS:
        raise KeyError(
            f"no official checkpoint layout for PET method {method_name!r}; importable methods: "
            f"{importable_methods()}"
        )
    return {**_backbone(cfg), **_visual(cfg), **_BUILDERS[method_name](cfg, hooks)}
