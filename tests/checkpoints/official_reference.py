"""Released-format VL-PET state dicts and an independent float64 NumPy forward over them.

Nothing here reads our parameter tree or our name tables. `official_state_dict` writes random
weights under the key names of SPEC.md §9 (with the DDP `module.` prefix and every duplicate copy
the original trainer saves), sized from the architecture alone; `reference_logits` runs the
forward of SPEC.md §2–4 by reading that dict by its official names. The importer and our Flax
model must reproduce these logits.

Every PET weight is random and nonzero, including the ones training zero-initialises, so each
term of every formula reaches the logits.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
from scipy.special import erf

from vlpet_jax.models.config import BackboneConfig

TASKS = ("vqa", "gqa", "nlvr", "caption")  # the image release's task aliases
VL_PET_LEVELS = ("large", "middle_x", "middle_y", "small")


@dataclasses.dataclass(frozen=True)
class Arch:
    """Tiny sizes: d 32, 2 + 2 layers, 4 heads, feat_dim 16; VL-PET sizes chosen all different."""

    family: str
    vocab: int = 120
    d: int = 32
    heads: int = 4
    d_kv: int = 8
    d_ff: int = 64
    layers: int = 2
    feat_dim: int = 16
    n_images: int = 2
    max_positions: int = 64  # BART
    buckets: int = 32  # T5 (the real t5-base values, so 40 tokens reach the log buckets)
    max_distance: int = 128
    rank: int = 16  # VL-PET modification width r, split in `pet_heads` heads
    pet_heads: int = 4
    gate_rank: int = 12
    value_rank: int = 8
    adapter_rank: int = 8  # VL-Adapter r = d / adapter_reduction
    lora_rank: int = 8
    lora_alpha: float = 16.0  # not the default 32: the scaling alpha / r must come from the sizes

    @property
    def pad(self) -> int:
        return 1 if self.family == "bart" else 0

    @property
    def scale(self) -> float:
        return 1.0 if self.family == "bart" else 0.3  # s of SPEC.md §3

    def backbone_cfg(self) -> BackboneConfig:
        common = dict(
            vocab_size=self.vocab, d_model=self.d, num_heads=self.heads, d_kv=self.d_kv,
            d_ff=self.d_ff, num_encoder_layers=self.layers, num_decoder_layers=self.layers,
            dropout_rate=0.0, attention_dropout_rate=0.0,
        )  # fmt: skip
        if self.family == "bart":
            return BackboneConfig(
                family="bart", ffn_activation="gelu", layer_norm_eps=1e-5, pad_token_id=1,
                eos_token_id=2, bos_token_id=0, decoder_start_token_id=2,
                max_position_embeddings=self.max_positions, scale_decoder_outputs=False, **common,
            )  # fmt: skip
        return BackboneConfig(
            family="t5", ffn_activation="relu", layer_norm_eps=1e-6,
            relative_attention_num_buckets=self.buckets,
            relative_attention_max_distance=self.max_distance, **common,
        )  # fmt: skip

    def pet_sizes(self, method: str) -> dict[str, float]:
        if method == "vl_adapter":
            return dict(adapter_reduction=self.d // self.adapter_rank)
        if method == "lora":
            return dict(lora_rank=self.lora_rank, lora_alpha=self.lora_alpha)
        return dict(
            rank=self.rank,
            num_heads=self.pet_heads,
            gate_rank=self.gate_rank,
            value_rank=self.value_rank,
        )


# ---------------------------------------------------------------- state dict in the released format


class _Writer:
    """Random tensors under official names; weights scaled by fan-in so activations stay O(1)."""

    def __init__(self, seed: int):
        self.rng = np.random.default_rng(seed)
        self.sd: dict[str, np.ndarray] = {}

    def normal(self, shape, std: float) -> np.ndarray:
        return (self.rng.standard_normal(shape) * std).astype(np.float32)

    def put(self, key: str, value: np.ndarray, copies: tuple[str, ...] = ()) -> None:
        for name in (key, *copies):
            assert name not in self.sd, name
            self.sd[name] = value.copy()

    def linear(self, prefix: str, fan_in: int, fan_out: int, bias: bool = True, copies=()):
        """`copies`: other prefixes holding the same module (task aliases)."""
        self.put(
            f"{prefix}.weight",
            self.normal((fan_out, fan_in), fan_in**-0.5),
            tuple(f"{c}.weight" for c in copies),
        )
        if bias:
            self.put(
                f"{prefix}.bias", self.normal((fan_out,), 0.1), tuple(f"{c}.bias" for c in copies)
            )

    def norm(self, prefix: str, d: int, bias: bool) -> None:
        self.put(f"{prefix}.weight", 1.0 + self.normal((d,), 0.1))
        if bias:
            self.put(f"{prefix}.bias", self.normal((d,), 0.1))


def _bart_backbone(w: _Writer, a: Arch) -> None:
    table = w.normal((a.vocab, a.d), 1.0)
    w.put(
        "model.shared.weight",
        table,
        (
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
            "model.encoder.visual_embedding.obj_order_embedding.weight",
            "lm_head.weight",
        ),
    )
    w.put("final_logits_bias", w.normal((1, a.vocab), 0.5))
    for stack in ("encoder", "decoder"):
        w.put(f"model.{stack}.embed_positions.weight", w.normal((a.max_positions + 2, a.d), 0.5))
        w.norm(f"model.{stack}.layernorm_embedding", a.d, bias=True)
        for i in range(a.layers):
            p = f"model.{stack}.layers.{i}."
            attns = ["self_attn", "encoder_attn"] if stack == "decoder" else ["self_attn"]
            for attn in attns:
                for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
                    w.linear(f"{p}{attn}.{proj}", a.d, a.d)
                w.norm(f"{p}{attn}_layer_norm", a.d, bias=True)
            w.linear(f"{p}fc1", a.d, a.d_ff)
            w.linear(f"{p}fc2", a.d_ff, a.d)
            w.norm(f"{p}final_layer_norm", a.d, bias=True)


def _t5_backbone(w: _Writer, a: Arch) -> None:
    table = w.normal((a.vocab, a.d), 1.0)
    w.put(
        "shared.weight",
        table,
        (
            "encoder.embed_tokens.weight",
            "decoder.embed_tokens.weight",
            "encoder.visual_embedding.obj_order_embedding.weight",
            "lm_head.weight",
        ),
    )
    inner = a.heads * a.d_kv
    for stack in ("encoder", "decoder"):
        w.put(
            f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight",
            w.normal((a.buckets, a.heads), 1.0),
        )
        w.norm(f"{stack}.final_layer_norm", a.d, bias=False)
        for i in range(a.layers):
            p = f"{stack}.block.{i}.layer."
            attns = (
                ["SelfAttention", "EncDecAttention"] if stack == "decoder" else ["SelfAttention"]
            )
            for j, attn in enumerate(attns):
                for proj in ("q", "k", "v"):
                    w.linear(f"{p}{j}.{attn}.{proj}", a.d, inner, bias=False)
                w.linear(f"{p}{j}.{attn}.o", inner, a.d, bias=False)
                w.norm(f"{p}{j}.layer_norm", a.d, bias=False)
            f = len(attns)
            w.linear(f"{p}{f}.DenseReluDense.wi", a.d, a.d_ff, bias=False)
            w.linear(f"{p}{f}.DenseReluDense.wo", a.d_ff, a.d, bias=False)
            w.norm(f"{p}{f}.layer_norm", a.d, bias=False)


def _visual(w: _Writer, a: Arch) -> None:
    vp = _visual_prefix(a)
    bart = a.family == "bart"
    w.linear(f"{vp}feat_embedding.0", a.feat_dim, a.d)
    w.norm(f"{vp}feat_embedding.1", a.d, bias=bart)
    w.linear(f"{vp}absolute_vis_pos_embedding.0", 5, a.d)
    w.norm(f"{vp}absolute_vis_pos_embedding.1", a.d, bias=bart)
    w.put(f"{vp}img_order_embedding.weight", w.normal((a.n_images, a.d), 1.0))


def _visual_prefix(a: Arch) -> str:
    return "model.encoder.visual_embedding." if a.family == "bart" else "encoder.visual_embedding."


def _enc_prefix(a: Arch, i: int, p: str) -> str:
    if a.family == "bart":
        return f"model.encoder.layers.{i}."
    return f"encoder.block.{i}.layer.{0 if p == 'attn' else 1}."


def _cross_prefix(a: Arch, i: int) -> str:
    if a.family == "bart":
        return f"model.decoder.layers.{i}.encoder_attn."
    return f"decoder.block.{i}.layer.1.EncDecAttention."


def _vl_pet(w: _Writer, a: Arch, level: str) -> None:
    for i in range(a.layers):
        for p in ("attn", "ff"):
            pre = _enc_prefix(a, i, p)
            for h in range(a.pet_heads):
                w.linear(f"{pre}{p}_adapter_multihead_down.{h}", a.d, a.rank // a.pet_heads)
            w.linear(f"{pre}{p}_adapter_multihead_up", a.rank, a.d)
            g = f"{pre}encoder_{p}_adapter_gating_"
            if level == "large":
                w.linear(f"{g}large_x_down", a.d, a.gate_rank)
                w.linear(f"{g}large_x_up", a.gate_rank, a.d)
            elif level == "middle_x":
                w.linear(f"{g}middle_xy_add", a.d, 1)
            elif level == "middle_y":
                w.put(f"{g}middle_ia3_add", w.normal((a.d,), 0.5))
            else:
                w.linear(f"{g}small_xy_cat", 2 * a.d, 1)
    for i in range(a.layers):
        base = f"{_cross_prefix(a, i)}attn_value_parallel_adapter.adapters."
        for sampler, fan_in, fan_out in (
            ("down_sampler", a.d, a.value_rank),
            ("up_sampler", a.value_rank, a.d),
        ):
            keys = [f"{base}{t}.{sampler}" for t in TASKS]
            w.linear(keys[0], fan_in, fan_out, copies=tuple(keys[1:]))


def _task_adapter(w: _Writer, base: str, d: int, rank: int) -> None:
    """One "single" adapter saved under every task alias: `{base}adapters.{task}.*_sampler`."""
    for sampler, fan_in, fan_out in (("down_sampler", d, rank), ("up_sampler", rank, d)):
        keys = [f"{base}adapters.{t}.{sampler}" for t in TASKS]
        w.linear(keys[0], fan_in, fan_out, copies=tuple(keys[1:]))


def _vl_adapter(w: _Writer, a: Arch) -> None:
    for i in range(a.layers):
        for name in ("attn_adapter", "ff_adapter"):
            _task_adapter(w, f"model.encoder.layers.{i}.{name}.", a.d, a.adapter_rank)
        for name in ("self_attn_adapter", "enc_attn_adapter", "ff_adapter"):
            _task_adapter(w, f"model.decoder.layers.{i}.{name}.", a.d, a.adapter_rank)


def _lora(w: _Writer, a: Arch) -> None:
    attns = [f"model.encoder.layers.{i}.self_attn." for i in range(a.layers)]
    attns += [
        f"model.decoder.layers.{i}.{n}."
        for i in range(a.layers)
        for n in ("self_attn", "encoder_attn")
    ]
    for attn in attns:
        for proj in ("q_proj", "v_proj"):
            lora_a = w.normal((a.lora_rank, a.d), a.d**-0.5)
            lora_b = w.normal((a.d, a.lora_rank), 0.3 * a.lora_rank**-0.5)
            w.put(
                f"{attn}{proj}.lora_As.{TASKS[0]}",
                lora_a,
                tuple(f"{attn}{proj}.lora_As.{t}" for t in TASKS[1:]),
            )
            w.put(
                f"{attn}{proj}.lora_Bs.{TASKS[0]}",
                lora_b,
                tuple(f"{attn}{proj}.lora_Bs.{t}" for t in TASKS[1:]),
            )


def official_state_dict(arch: Arch, method: str, seed: int = 0) -> dict[str, np.ndarray]:
    """A state dict as the original trainer saves it: `module.` prefix, all duplicates."""
    w = _Writer(seed)
    (_bart_backbone if arch.family == "bart" else _t5_backbone)(w, arch)
    _visual(w, arch)
    if method.startswith("vl_pet_"):
        _vl_pet(w, arch, method.removeprefix("vl_pet_"))
    elif method == "vl_adapter":
        _vl_adapter(w, arch)
    elif method == "lora":
        _lora(w, arch)
    else:
        raise ValueError(f"no released layout written for {method!r}")
    return {f"module.{k}": v for k, v in w.sd.items()}


# ---------------------------------------------------------------- batches


def make_batch(
    arch: Arch, seed: int, two_images: bool, text_len: int, dec_len: int = 5, batch: int = 2
) -> dict[str, np.ndarray]:
    """Ragged text (row 1 half padded); one image of 6 tokens with default order ids, or an
    NLVR2-style pair of 2 × 4 tokens with image ids 0/1 and object ids 0..3, 0..3."""
    rng = np.random.default_rng(seed)
    ids = rng.integers(3, arch.vocab, size=(batch, text_len))
    lengths = np.array([text_len] + [text_len // 2 + 1] * (batch - 1))
    mask = np.arange(text_len)[None, :] < lengths[:, None]
    ids = np.where(mask, ids, arch.pad)
    num_vis = 8 if two_images else 6
    # General boxes: the model must use the released area formula (b3 - b2)(b1 - b0).
    boxes = rng.uniform(0.0, 1.0, size=(batch, num_vis, 4))
    out = dict(
        input_ids=ids.astype(np.int32),
        attention_mask=mask.astype(np.int32),
        vis_feats=rng.standard_normal((batch, num_vis, arch.feat_dim)).astype(np.float32),
        vis_pos=boxes.astype(np.float32),
        decoder_input_ids=rng.integers(3, arch.vocab, size=(batch, dec_len)).astype(np.int32),
    )
    if two_images:
        out["img_order_ids"] = np.tile(np.repeat(np.arange(2), 4), (batch, 1)).astype(np.int32)
        out["obj_order_ids"] = np.tile(np.tile(np.arange(4), 2), (batch, 1)).astype(np.int32)
    return out


# ---------------------------------------------------------------- the NumPy forward


def gelu_tanh(x):
    return 0.5 * x * (1.0 + np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x**3)))


def gelu_exact(x):
    return 0.5 * x * (1.0 + erf(x / math.sqrt(2.0)))


def sigmoid(x):
    return 1.0 / (1.0 + np.exp(-x))


class Reference:
    """The released model's forward, by official key names, in float64."""

    def __init__(self, state_dict: dict[str, np.ndarray], arch: Arch, method: str):
        self.sd = {k.removeprefix("module."): v.astype(np.float64) for k, v in state_dict.items()}
        self.a = arch
        self.method = method

    # -- pieces
    def lin(self, x, prefix):
        y = x @ self.sd[f"{prefix}.weight"].T
        bias = self.sd.get(f"{prefix}.bias")
        return y if bias is None else y + bias

    def norm(self, x, prefix):
        if self.a.family == "bart":  # LayerNorm, eps 1e-5
            mu = x.mean(-1, keepdims=True)
            var = ((x - mu) ** 2).mean(-1, keepdims=True)
            y = (x - mu) / np.sqrt(var + 1e-5)
            return y * self.sd[f"{prefix}.weight"] + self.sd[f"{prefix}.bias"]
        y = x / np.sqrt((x**2).mean(-1, keepdims=True) + 1e-6)  # RMSNorm, eps 1e-6
        return y * self.sd[f"{prefix}.weight"]

    def attention(self, xq, xkv, prefix, bias):
        a = self.a
        names = ("q_proj", "k_proj", "v_proj", "out_proj") if a.family == "bart" else "qkvo"
        b, lq, lk = xq.shape[0], xq.shape[1], xkv.shape[1]
        q = self.lin(xq, f"{prefix}{names[0]}") + self.projection_delta(xq, prefix, names[0])
        k = self.lin(xkv, f"{prefix}{names[1]}")
        v = self.lin(xkv, f"{prefix}{names[2]}") + self.projection_delta(xkv, prefix, names[2])
        q = q.reshape(b, lq, a.heads, a.d_kv)
        k = k.reshape(b, lk, a.heads, a.d_kv)
        v = v.reshape(b, lk, a.heads, a.d_kv)
        if a.family == "bart":
            q = q * a.d_kv**-0.5  # T5 does not scale
        logits = np.einsum("bqhd,bkhd->bhqk", q, k) + bias
        logits = logits - logits.max(-1, keepdims=True)
        weights = np.exp(logits)
        weights = weights / weights.sum(-1, keepdims=True)
        out = np.einsum("bhqk,bkhd->bqhd", weights, v).reshape(b, lq, a.heads * a.d_kv)
        return self.lin(out, f"{prefix}{names[3]}")

    @staticmethod
    def mask_bias(keep):
        return np.where(keep, 0.0, -1e9)

    # -- the PET methods
    def adapter(self, x, base):
        """A "single" adapter's bottleneck, read from one task alias (all are equal)."""
        pre = f"{base}adapters.{TASKS[-1]}."
        return self.lin(gelu_tanh(self.lin(x, f"{pre}down_sampler")), f"{pre}up_sampler")

    def encoder_sublayer(self, x, h, pre, p):
        """The encoder sub-layer output H after the method's module (p: attn / ff)."""
        if self.method == "vl_adapter":
            return h + self.adapter(h, f"{pre}{p}_adapter.")  # sequential, SPEC.md §5
        if self.method.startswith("vl_pet_"):
            return self.vl_pet(x, h, pre, p)
        return h

    def decoder_sublayer(self, h, pre, name):
        """name: self_attn / enc_attn / ff; only VL-Adapter has decoder sub-layer modules."""
        if self.method == "vl_adapter":
            return h + self.adapter(h, f"{pre}{name}_adapter.")
        return h

    def projection_delta(self, x, attn_prefix, proj):
        """LoRA on q and v (SPEC.md §5); VL-PET's value adapter on cross-attention v (§4)."""
        if self.method == "lora" and proj in ("q_proj", "v_proj"):
            lora_a = self.sd[f"{attn_prefix}{proj}.lora_As.{TASKS[1]}"]
            lora_b = self.sd[f"{attn_prefix}{proj}.lora_Bs.{TASKS[1]}"]
            return (x @ lora_a.T @ lora_b.T) * (self.a.lora_alpha / self.a.lora_rank)
        is_cross = "encoder_attn" in attn_prefix or "EncDecAttention" in attn_prefix
        if self.method.startswith("vl_pet_") and is_cross and proj in ("v_proj", "v"):
            return self.adapter(x, f"{attn_prefix}attn_value_parallel_adapter.")
        return 0.0

    # -- VL-PET (SPEC.md §3, §4)
    def vl_pet(self, x, h, pre, p):
        """H' = s · G ⊙ (H + ΔH); X is the sub-layer input (BART) / raw residual (T5)."""
        sd, a = self.sd, self.a
        down = np.concatenate(
            [self.lin(h, f"{pre}{p}_adapter_multihead_down.{k}") for k in range(a.pet_heads)], -1
        )
        hs = h + self.lin(gelu_tanh(down), f"{pre}{p}_adapter_multihead_up")
        g = f"{pre}encoder_{p}_adapter_gating_"
        level = self.method.removeprefix("vl_pet_")
        if level == "large":
            gate = sigmoid(self.lin(gelu_tanh(self.lin(x, f"{g}large_x_down")), f"{g}large_x_up"))
        elif level == "middle_x":
            gate = sigmoid(self.lin(x + hs, f"{g}middle_xy_add"))
        elif level == "middle_y":
            gate = 1.0 + sd[f"{g}middle_ia3_add"]  # no sigmoid
        else:  # small: mean over every token, pads and visual tokens included
            per_token = sigmoid(self.lin(np.concatenate([x, hs], -1), f"{g}small_xy_cat"))
            gate = per_token.mean(axis=1, keepdims=True)
        return a.scale * gate * hs

    # -- visual embedding (SPEC.md §2)
    def visual(self, batch):
        sd, a = self.sd, self.a
        vp = _visual_prefix(a)
        feats, pos = batch["vis_feats"].astype(np.float64), batch["vis_pos"].astype(np.float64)
        b, v = feats.shape[:2]
        img = batch.get("img_order_ids", np.zeros((b, v), np.int64))  # released defaults
        obj = batch.get("obj_order_ids", np.broadcast_to(np.arange(v), (b, v)))
        area = (pos[..., 3] - pos[..., 2]) * (pos[..., 1] - pos[..., 0])  # released get_area
        feat = self.norm(self.lin(feats, f"{vp}feat_embedding.0"), f"{vp}feat_embedding.1")
        box = self.norm(
            self.lin(
                np.concatenate([pos, area[..., None]], -1), f"{vp}absolute_vis_pos_embedding.0"
            ),
            f"{vp}absolute_vis_pos_embedding.1",
        )
        table = sd[f"{vp}obj_order_embedding.weight"]
        return feat + box + sd[f"{vp}img_order_embedding.weight"][img] + table[len(table) - obj - 1]

    # -- T5 relative positions (SPEC.md §1)
    def t5_bucket(self, relative, bidirectional):
        num_buckets, out = self.a.buckets, np.zeros_like(relative)
        if bidirectional:
            num_buckets //= 2
            out = out + (relative > 0) * num_buckets
            n = np.abs(relative)
        else:
            n = -np.minimum(relative, 0)
        max_exact = num_buckets // 2
        with np.errstate(divide="ignore"):
            large = max_exact + (
                np.log(np.maximum(n, 1) / max_exact) / math.log(self.a.max_distance / max_exact)
                * (num_buckets - max_exact)
            ).astype(np.int64)  # fmt: skip
        large = np.minimum(large, num_buckets - 1)
        return out + np.where(n < max_exact, n, large)

    def t5_position_bias(self, stack, length, bidirectional):
        pos = np.arange(length)
        buckets = self.t5_bucket(pos[None, :] - pos[:, None], bidirectional)
        table = self.sd[f"{stack}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"]
        return table[buckets].transpose(2, 0, 1)[None]  # (1, H, L, L)

    # -- whole model
    def logits(self, batch) -> np.ndarray:
        return (self._bart if self.a.family == "bart" else self._t5)(batch)

    def _bart(self, batch):
        sd, a = self.sd, self.a
        ids, dec = batch["input_ids"], batch["decoder_input_ids"]
        length = ids.shape[1]
        x = sd["model.encoder.embed_tokens.weight"][ids]
        x = x + sd["model.encoder.embed_positions.weight"][np.arange(length) + 2]
        x = self.norm(x, "model.encoder.layernorm_embedding")  # text only, then the concat
        vis = self.visual(batch)
        x = np.concatenate([x, vis], 1)
        keep = np.concatenate([ids != a.pad, np.ones(vis.shape[:2], bool)], 1)
        bias = self.mask_bias(keep)[:, None, None, :]
        for i in range(a.layers):
            pre = f"model.encoder.layers.{i}."
            h = self.attention(x, x, f"{pre}self_attn.", bias)
            x = self.norm(
                x + self.encoder_sublayer(x, h, pre, "attn"), f"{pre}self_attn_layer_norm"
            )
            h = self.lin(gelu_exact(self.lin(x, f"{pre}fc1")), f"{pre}fc2")
            x = self.norm(x + self.encoder_sublayer(x, h, pre, "ff"), f"{pre}final_layer_norm")
        enc = x
        t = dec.shape[1]
        y = sd["model.decoder.embed_tokens.weight"][dec]
        y = y + sd["model.decoder.embed_positions.weight"][np.arange(t) + 2]
        y = self.norm(y, "model.decoder.layernorm_embedding")
        causal = self.mask_bias(np.tril(np.ones((t, t), bool)))[None, None]  # no padding mask
        for i in range(a.layers):
            pre = f"model.decoder.layers.{i}."
            h = self.decoder_sublayer(
                self.attention(y, y, f"{pre}self_attn.", causal), pre, "self_attn"
            )
            y = self.norm(y + h, f"{pre}self_attn_layer_norm")
            h = self.attention(y, enc, f"{pre}encoder_attn.", bias)
            y = self.norm(
                y + self.decoder_sublayer(h, pre, "enc_attn"), f"{pre}encoder_attn_layer_norm"
            )
            h = self.lin(gelu_exact(self.lin(y, f"{pre}fc1")), f"{pre}fc2")
            y = self.norm(y + self.decoder_sublayer(h, pre, "ff"), f"{pre}final_layer_norm")
        return y @ sd["lm_head.weight"].T + sd["final_logits_bias"][0]

    def _t5(self, batch):
        sd, a = self.sd, self.a
        ids, dec = batch["input_ids"], batch["decoder_input_ids"]
        length = ids.shape[1]
        vis = self.visual(batch)
        x = np.concatenate([sd["encoder.embed_tokens.weight"][ids], vis], 1)
        n = x.shape[1]
        position = np.zeros((1, a.heads, n, n))  # 0 wherever a visual token is involved
        position[:, :, :length, :length] = self.t5_position_bias("encoder", length, True)[0]
        keep = np.concatenate([ids != a.pad, np.ones(vis.shape[:2], bool)], 1)
        bias = position + self.mask_bias(keep)[:, None, None, :]
        for i in range(a.layers):
            p0, p1 = f"encoder.block.{i}.layer.0.", f"encoder.block.{i}.layer.1."
            h = self.attention(
                self.norm(x, f"{p0}layer_norm"),
                self.norm(x, f"{p0}layer_norm"),
                f"{p0}SelfAttention.",
                bias,
            )
            x = x + self.encoder_sublayer(x, h, p0, "attn")  # X = the raw residual stream
            h = self.lin(
                np.maximum(self.lin(self.norm(x, f"{p1}layer_norm"), f"{p1}DenseReluDense.wi"), 0),
                f"{p1}DenseReluDense.wo",
            )
            x = x + self.encoder_sublayer(x, h, p1, "ff")
        enc = self.norm(x, "encoder.final_layer_norm")
        t = dec.shape[1]
        y = sd["decoder.embed_tokens.weight"][dec]
        self_bias = (
            self.t5_position_bias("decoder", t, False)
            + self.mask_bias(np.tril(np.ones((t, t), bool)))[None, None]
        )
        cross_bias = self.mask_bias(keep)[:, None, None, :]
        for i in range(a.layers):
            p = f"decoder.block.{i}.layer."
            normed = self.norm(y, f"{p}0.layer_norm")
            y = y + self.attention(normed, normed, f"{p}0.SelfAttention.", self_bias)
            h = self.attention(
                self.norm(y, f"{p}1.layer_norm"), enc, f"{p}1.EncDecAttention.", cross_bias
            )
            y = y + h
            normed = self.norm(y, f"{p}2.layer_norm")
            h = self.lin(
                np.maximum(self.lin(normed, f"{p}2.DenseReluDense.wi"), 0),
                f"{p}2.DenseReluDense.wo",
            )
            y = y + h
        y = self.norm(y, "decoder.final_layer_norm") * a.d**-0.5  # T5 v1 scaling before tied head
        return y @ sd["lm_head.weight"].T
