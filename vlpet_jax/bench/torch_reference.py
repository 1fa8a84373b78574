"""A PyTorch VL-PET reference for the train-step benchmark: Hugging Face BART/T5 with the modules of
SPEC.md §2-§4 added in PyTorch, run eagerly in fp32 the way the released code runs.

Written from SPEC.md, independently of the Flax implementation, so that the benchmark (and
`tests/bench`) can check that both compute the same loss on the same weights before comparing
their speed:

* the visual embedding `v = Norm(Linear(feats)) + Norm(Linear([box, area])) + Emb_img + Shared[...]`
  and the joint encoder input (text first, then visual tokens; BART positions and
  `layernorm_embedding` on the text only; T5 relative position bias on the text×text block only),
  computed here, then the Hugging Face encoder layers, decoder and LM head;
* the VL-PET-large encoder module on every encoder self-attention and FFN sub-layer,
  `H' = s · G(X) ⊙ (H + ΔH)`, attached with forward hooks on the Hugging Face sub-modules (X is
  the sub-layer input on BART, the raw residual stream on T5; H the sub-layer output before dropout);
* the decoder cross-attention value adapter `V += up(gelu_tanh(down(E)))`, a forward hook on the
  value projection.

`lora_model` puts Hugging Face PEFT LoRA (q and v of every attention, SPEC.md §5) on the same
backbone behind the same visual embedding.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn


def gelu_tanh(x: torch.Tensor) -> torch.Tensor:
    return F.gelu(x, approximate="tanh")


class RMSNorm(nn.Module):
    """T5's norm (scale only, no mean), in fp32."""

    def __init__(self, d: int, eps: float):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(d))
        self.eps = eps

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        var = x.float().pow(2).mean(-1, keepdim=True)
        return (x.float() * torch.rsqrt(var + self.eps)).to(x.dtype) * self.weight


def _norm(family: str, d: int, eps: float) -> nn.Module:
    return RMSNorm(d, eps) if family == "t5" else nn.LayerNorm(d, eps=eps)


class VisualEmbedding(nn.Module):
    """SPEC.md §2: projected features + projected [box, area] (each normed) + image-order rows +
    object-order codes read from the frozen token table (passed in)."""

    def __init__(self, family: str, feat_dim: int, d: int, num_images: int, eps: float):
        super().__init__()
        self.feat_proj = nn.Linear(feat_dim, d)
        self.feat_norm = _norm(family, d, eps)
        self.box_proj = nn.Linear(5, d)
        self.box_norm = _norm(family, d, eps)
        self.img_order_embedding = nn.Embedding(num_images, d)

    def forward(self, feats, boxes, img_order_ids, obj_order_codes):
        # The released code's "area" (b3 - b2) * (b1 - b0), zero for grid features.
        area = (boxes[..., 3] - boxes[..., 2]) * (boxes[..., 1] - boxes[..., 0])
        pos = torch.cat([boxes, area[..., None]], dim=-1)
        return (
            self.feat_norm(self.feat_proj(feats))
            + self.box_norm(self.box_proj(pos))
            + self.img_order_embedding(img_order_ids)
            + obj_order_codes
        )


class Bottleneck(nn.Module):
    """`up(gelu_tanh(down(x)))`; the multi-head down projection of SPEC.md §3 is one Linear."""

    def __init__(self, d: int, rank: int):
        super().__init__()
        self.down = nn.Linear(d, rank)
        self.up = nn.Linear(rank, d)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.up(gelu_tanh(self.down(x)))


class GatedModificationLarge(nn.Module):
    """One encoder sub-layer's VL-PET-large module: H' = s · sigmoid(up(gelu_tanh(down(X)))) ⊙ Hs,
    Hs = H + up(gelu_tanh(down(H))) (SPEC.md §3). `x` is captured by a pre-hook before the
    sub-layer runs and consumed when its output arrives."""

    def __init__(self, d: int, rank: int, gate_rank: int, scale: float):
        super().__init__()
        self.mod = Bottleneck(d, rank)
        self.gate = Bottleneck(d, gate_rank)
        self.scale = scale
        self._x: torch.Tensor | None = None

    def capture(self, x: torch.Tensor) -> None:
        self._x = x

    def forward(self, h: torch.Tensor) -> torch.Tensor:
        x, self._x = self._x, None
        if x is None:
            raise RuntimeError("VL-PET module called without its sub-layer input X")
        hs = h + self.mod(h)
        return self.scale * torch.sigmoid(self.gate(x)) * hs


def _first_arg(args, kwargs, name: str):
    return args[0] if args else kwargs[name]


def _replace_first(output, new):
    if isinstance(output, tuple):
        return (new, *output[1:])
    return new


class TorchVLModel(nn.Module):
    """Hugging Face `BartForConditionalGeneration` / `T5ForConditionalGeneration` reading visual
    tokens, with VL-PET-large attached when `pet` is given (dict: rank, gate_rank, value_rank,
    scale). `pet=None` is the plain VL backbone (full fine-tuning, or PEFT LoRA wrapped inside)."""

    def __init__(
        self,
        hf_model: nn.Module,
        family: str,
        feat_dim: int,
        num_images: int = 2,
        pet: Mapping[str, Any] | None = None,
    ):
        super().__init__()
        self.hf = hf_model
        self.family = family
        config = hf_model.config
        self.d_model = config.d_model
        eps = config.layer_norm_epsilon if family == "t5" else 1e-5
        self.visual_embedding = VisualEmbedding(family, feat_dim, self.d_model, num_images, eps)
        self.pet = nn.ModuleDict()
        self._handles = []
        if pet is not None:
            self._attach_vl_pet(pet)

    # ------------------------------------------------------------------ structure

    def encoder(self):
        return self.hf.model.encoder if self.family == "bart" else self.hf.encoder

    def decoder(self):
        return self.hf.model.decoder if self.family == "bart" else self.hf.decoder

    def encoder_sublayers(self):
        """(layer index, kind, module whose input is X, module whose output is H)."""
        for i, layer in enumerate(self.encoder_layers()):
            if self.family == "bart":
                yield i, "attn", layer.self_attn, layer.self_attn
                yield i, "ff", layer.fc1, layer.fc2
            else:
                yield i, "attn", layer.layer[0].layer_norm, layer.layer[0].SelfAttention
                yield i, "ff", layer.layer[1].layer_norm, layer.layer[1].DenseReluDense

    def encoder_layers(self):
        enc = self.encoder()
        return enc.layers if self.family == "bart" else enc.block

    def cross_value_projections(self):
        for layer in self.decoder().layers if self.family == "bart" else self.decoder().block:
            yield (
                layer.encoder_attn.v_proj
                if self.family == "bart"
                else layer.layer[1].EncDecAttention.v
            )

    def encoder_norms(self):
        """The encoder norms VL-PET trains (SPEC.md §4)."""
        enc = self.encoder()
        if self.family == "bart":
            norms = [enc.layernorm_embedding]
            for layer in enc.layers:
                norms += [layer.self_attn_layer_norm, layer.final_layer_norm]
        else:
            norms = [enc.final_layer_norm]
            for block in enc.block:
                norms += [block.layer[0].layer_norm, block.layer[1].layer_norm]
        return norms

    def _attach_vl_pet(self, pet: Mapping[str, Any]) -> None:
        d = self.d_model
        for i, kind, x_module, h_module in self.encoder_sublayers():
            module = GatedModificationLarge(d, pet["rank"], pet["gate_rank"], pet["scale"])
            self.pet[f"enc{i}_{kind}"] = module

            def capture(mod, args, kwargs, module=module):
                module.capture(_first_arg(args, kwargs, "hidden_states"))

            def gate(mod, args, kwargs, output, module=module):
                h = output[0] if isinstance(output, tuple) else output
                return _replace_first(output, module(h))

            self._handles.append(x_module.register_forward_pre_hook(capture, with_kwargs=True))
            self._handles.append(h_module.register_forward_hook(gate, with_kwargs=True))
        for i, v_proj in enumerate(self.cross_value_projections()):
            adapter = Bottleneck(d, pet["value_rank"])
            self.pet[f"dec{i}_value"] = adapter

            def add_value(mod, args, output, adapter=adapter):
                return output + adapter(args[0])

            self._handles.append(v_proj.register_forward_hook(add_value))

    # ------------------------------------------------------------------ forward

    def embed_visual(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        feats = batch["vis_feats"]
        b, v = feats.shape[:2]
        boxes = batch.get("vis_pos", torch.zeros(b, v, 4))
        img_order = batch.get("img_order_ids", torch.zeros(b, v, dtype=torch.long))
        obj_order = batch.get("obj_order_ids", torch.arange(v).expand(b, v))
        table = self.hf.get_input_embeddings().weight
        codes = table[table.shape[0] - 1 - obj_order]
        return self.visual_embedding(feats, boxes, img_order, codes)

    def encode(self, batch: Mapping[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
        from transformers.masking_utils import create_bidirectional_mask

        enc = self.encoder()
        ids = batch["input_ids"]
        vis = self.embed_visual(batch)
        mask = torch.cat([batch["attention_mask"], torch.ones(vis.shape[:2], dtype=torch.long)], 1)
        if self.family == "bart":
            text = enc.layernorm_embedding(enc.embed_tokens(ids) + enc.embed_positions(ids))
            x = F.dropout(torch.cat([text, vis], 1), p=enc.dropout, training=self.training)
        else:
            x = enc.dropout(torch.cat([enc.embed_tokens(ids), vis], 1))
        mask4d = create_bidirectional_mask(config=enc.config, inputs_embeds=x, attention_mask=mask)
        if self.family == "bart":
            for layer in enc.layers:
                x = layer(x, mask4d)
            return x, mask
        # Relative position bias on the text×text block only; 0 wherever a visual token is.
        length, extra = ids.shape[1], vis.shape[1]
        text_bias = enc.block[0].layer[0].SelfAttention.compute_bias(length, length)
        position_bias = F.pad(text_bias, (0, extra, 0, extra))
        for block in enc.block:
            x = block(x, mask4d, position_bias)[0]
        return enc.dropout(enc.final_layer_norm(x)), mask

    def forward(self, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
        enc_hidden, enc_mask = self.encode(batch)
        out = self.decoder()(
            input_ids=batch["decoder_input_ids"],
            encoder_hidden_states=enc_hidden,
            encoder_attention_mask=enc_mask,
            use_cache=False,
        )
        hidden = out[0]
        if self.family == "bart":
            return self.hf.lm_head(hidden) + self.hf.final_logits_bias
        if getattr(self.hf.config, "scale_decoder_outputs", self.hf.config.tie_word_embeddings):
            hidden = hidden * self.d_model**-0.5
        return self.hf.lm_head(hidden)


def sequence_loss(logits: torch.Tensor, batch: Mapping[str, torch.Tensor]) -> torch.Tensor:
    """SPEC.md §6 per-example loss: mean token CE of each example × its weight, batch mean."""
    labels = batch["labels"]
    ce = F.cross_entropy(
        logits.float().transpose(1, 2), labels, ignore_index=-100, reduction="none"
    )
    tokens = (labels != -100).sum(1).clamp(min=1)
    per_example = ce.sum(1) / tokens
    return (per_example * batch["loss_weights"]).mean()


# ---------------------------------------------------------------------- trainability, optimiser


def mark_vl_pet_trainable(model: TorchVLModel) -> None:
    """SPEC.md §4: visual embedding + encoder VL-PET modules + encoder norms + value adapters."""
    model.requires_grad_(False)
    model.visual_embedding.requires_grad_(True)
    model.pet.requires_grad_(True)
    for norm in model.encoder_norms():
        norm.requires_grad_(True)


def adamw(model: nn.Module, lr: float = 1e-3) -> torch.optim.Optimizer:
    """AdamW of SPEC.md §8 over the trainable parameters only (biases not decayed)."""
    named = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
    decay = [p for n, p in named if not n.endswith("bias")]
    no_decay = [p for n, p in named if n.endswith("bias")]
    groups = [{"params": decay, "weight_decay": 0.01}, {"params": no_decay, "weight_decay": 0.0}]
    return torch.optim.AdamW(groups, lr=lr, betas=(0.9, 0.999), eps=1e-6)


def make_train_step(model: nn.Module, optimizer: torch.optim.Optimizer, clip: float = 5.0):
    """One eager training step (dropout as the model's `training` flag says), gradient clipping
    at `clip` as the released trainer does; returns the loss."""
    params = [p for p in model.parameters() if p.requires_grad]

    def step(batch):
        loss = sequence_loss(model(batch), batch)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(params, clip)
        optimizer.step()
        optimizer.zero_grad(set_to_none=True)
        return loss.detach()

    return step


def lora_model(
    hf_model: nn.Module, family: str, feat_dim: int, rank: int = 128, alpha: float = 32.0,
    dropout: float = 0.1, num_images: int = 2,
) -> TorchVLModel:  # fmt: skip
    """PEFT LoRA on q and v of every attention (SPEC.md §5: r 128, alpha 32, dropout 0.1, biases
    trained), behind the same trainable visual embedding."""
    from peft import LoraConfig, get_peft_model

    targets = ["q_proj", "v_proj"] if family == "bart" else ["q", "v"]
    bias = "all" if family == "bart" else "none"  # T5 has no biases
    config = LoraConfig(
        r=rank, lora_alpha=alpha, lora_dropout=dropout, target_modules=targets, bias=bias
    )
    peft_model = get_peft_model(hf_model, config)
    model = TorchVLModel(peft_model.base_model.model, family, feat_dim, num_images, pet=None)
    model.visual_embedding.requires_grad_(True)
    return model


# ---------------------------------------------------------------------- weights from the Flax tree


def _t(array: Any) -> torch.Tensor:
    return torch.from_numpy(np.asarray(array, dtype=np.float32).copy())


def _set_linear(linear: nn.Linear, tree: Mapping[str, Any]) -> None:
    linear.weight.data.copy_(_t(tree["kernel"]).T)
    if linear.bias is not None:
        linear.bias.data.copy_(_t(tree["bias"]))


def _set_norm(norm: nn.Module, tree: Mapping[str, Any]) -> None:
    norm.weight.data.copy_(_t(tree["scale"]))
    if "bias" in tree:
        norm.bias.data.copy_(_t(tree["bias"]))


@torch.no_grad()
def load_trainable_from_flax(model: TorchVLModel, params: Mapping[str, Any]) -> None:
    """Copy our visual embedding, VL-PET modules and encoder norms (the trainable set) into the
    PyTorch modules; the frozen backbone already came from the same Hugging Face checkpoint."""
    vis = params["visual_embedding"]
    emb = model.visual_embedding
    _set_linear(emb.feat_proj, vis["feat_proj"])
    _set_norm(emb.feat_norm, vis["feat_norm"])
    _set_linear(emb.box_proj, vis["box_proj"])
    _set_norm(emb.box_norm, vis["box_norm"])
    emb.img_order_embedding.weight.copy_(_t(vis["img_order_embedding"]))
    backbone = params["backbone"]
    for i, kind, _, _ in model.encoder_sublayers():
        ours = backbone[f"encoder_layers_{i}"]["pet_self_attn" if kind == "attn" else "pet_ff"]
        module = model.pet[f"enc{i}_{kind}"]
        for name in ("mod", "gate"):
            _set_linear(getattr(module, name).down, ours[name]["down"])
            _set_linear(getattr(module, name).up, ours[name]["up"])
    for i in range(len(list(model.cross_value_projections()))):
        ours = backbone[f"decoder_layers_{i}"]["cross_attn"]["pet_v"]["mod"]
        _set_linear(model.pet[f"dec{i}_value"].down, ours["down"])
        _set_linear(model.pet[f"dec{i}_value"].up, ours["up"])
    norms = model.encoder_norms()
    if model.family == "bart":
        ours_norms = [backbone["encoder_layernorm_embedding"]]
        for i in range(len(model.encoder_layers())):
            layer = backbone[f"encoder_layers_{i}"]
            ours_norms += [layer["self_attn_norm"], layer["ff_norm"]]
    else:
        ours_norms = [backbone["encoder_final_norm"]]
        for i in range(len(model.encoder_layers())):
            layer = backbone[f"encoder_layers_{i}"]
            ours_norms += [layer["self_attn_norm"], layer["ff_norm"]]
    for norm, tree in zip(norms, ours_norms, strict=True):
        _set_norm(norm, tree)


def torch_batch(batch: Mapping[str, np.ndarray]) -> dict[str, torch.Tensor]:
    """Our host batch as torch tensors (ids as int64)."""
    out = {}
    for key, value in batch.items():
        value = np.asarray(value)
        if value.ndim == 0:
            continue
        dtype = torch.long if np.issubdtype(value.dtype, np.integer) else torch.float32
        out[key] = torch.as_tensor(value).to(dtype)
    return out
