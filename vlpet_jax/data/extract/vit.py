"""CLIP's ViT image encoder in Flax, up to its projected output (SPEC.md §2: ViT-B/32 -> 512-d).

Architecture (Dosovitskiy et al. 2021 as used by CLIP, Radford et al. 2021 §2.4): non-overlapping
P×P patches embedded by a bias-free conv; a learned class token prepended; learned positional
embeddings added; a LayerNorm *before* the transformer (CLIP's addition); ``layers`` pre-norm
residual blocks ``x + MHA(LN(x))`` then ``x + MLP(LN(x))`` with a 4× MLP and QuickGELU
(``x·sigmoid(1.702x)``); then LayerNorm of the class token and a bias-free projection to
``output_dim``. Heads = width / 64 (CLIP's rule), LayerNorm eps 1e-5. ViT-B/32: P 32, width 768,
12 layers, 12 heads, output 512, 224 px input.

Names follow CLIP's state dict (``resblocks_3/attn/in_proj`` <- ``visual.transformer.resblocks.3
.attn.in_proj_weight``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vlpet_jax.data.extract.weights import conv_kernel, dense_kernel, fill_tree, identity

Array = jax.Array
HEAD_DIM = 64


@dataclass(frozen=True)
class ViTConfig:
    """ViT-B/32 by default."""

    patch_size: int = 32
    width: int = 768
    layers: int = 12
    output_dim: int = 512
    input_resolution: int = 224

    @property
    def heads(self) -> int:
        return max(1, self.width // HEAD_DIM)


def quick_gelu(x: Array) -> Array:
    return x * jax.nn.sigmoid(1.702 * x)


class SelfAttention(nn.Module):
    """Multi-head self-attention with one fused input projection (torch's MultiheadAttention)."""

    heads: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        batch, length, width = x.shape
        qkv = nn.Dense(3 * width, name="in_proj")(x).reshape(batch, length, 3, self.heads, -1)
        q, k, v = (qkv[:, :, i] for i in range(3))
        logits = jnp.einsum("bqhd,bkhd->bhqk", q, k) / math.sqrt(q.shape[-1])
        out = jnp.einsum("bhqk,bkhd->bqhd", jax.nn.softmax(logits, axis=-1), v)
        return nn.Dense(width, name="out_proj")(out.reshape(batch, length, width))


class ResidualBlock(nn.Module):
    heads: int

    @nn.compact
    def __call__(self, x: Array) -> Array:
        width = x.shape[-1]
        x = x + SelfAttention(self.heads, name="attn")(nn.LayerNorm(1e-5, name="ln_1")(x))
        hidden = quick_gelu(nn.Dense(4 * width, name="c_fc")(nn.LayerNorm(1e-5, name="ln_2")(x)))
        return x + nn.Dense(width, name="c_proj")(hidden)


class VisionTransformer(nn.Module):
    """Images (N, R, R, 3), CLIP-normalised -> (N, output_dim) image embeddings."""

    config: ViTConfig

    @nn.compact
    def __call__(self, images: Array) -> Array:
        cfg = self.config
        p = cfg.patch_size
        x = nn.Conv(cfg.width, (p, p), (p, p), "VALID", use_bias=False, name="conv1")(images)
        x = x.reshape(x.shape[0], -1, cfg.width)
        grid = (cfg.input_resolution // p) ** 2
        if x.shape[1] != grid:
            raise ValueError(
                f"images of {images.shape[1]}x{images.shape[2]} give {x.shape[1]} patches; the "
                f"weights' positional embedding is for {cfg.input_resolution} px ({grid} patches)"
            )
        scale = cfg.width**-0.5
        cls = self.param("class_embedding", nn.initializers.normal(scale), (cfg.width,))
        pos = self.param(
            "positional_embedding", nn.initializers.normal(scale), (grid + 1, cfg.width)
        )
        x = jnp.concatenate([jnp.broadcast_to(cls, (x.shape[0], 1, cfg.width)), x], axis=1) + pos
        x = nn.LayerNorm(1e-5, name="ln_pre")(x)
        for i in range(cfg.layers):
            x = ResidualBlock(cfg.heads, name=f"resblocks_{i}")(x)
        cls_out = nn.LayerNorm(1e-5, name="ln_post")(x[:, 0])
        proj = self.param("proj", nn.initializers.normal(scale), (cfg.width, cfg.output_dim))
        return cls_out @ proj


# --------------------------------------------------------------------------------------------------
# CLIP state dict -> config and params


def vit_config(state: dict[str, np.ndarray]) -> ViTConfig:
    """Read the architecture off the tensors (``visual.`` prefix removed), as CLIP itself does."""
    if "class_embedding" not in state:
        found = "a ModifiedResNet (layer1)" if "layer1.0.conv1.weight" in state else "none"
        raise ValueError(f"not CLIP ViT weights: no class_embedding (found {found})")
    width, _, patch, _ = state["conv1.weight"].shape
    grid = math.isqrt(state["positional_embedding"].shape[0] - 1)
    layers = len({k.split(".")[2] for k in state if k.startswith("transformer.resblocks.")})
    return ViTConfig(
        patch_size=int(patch),
        width=int(width),
        layers=layers,
        output_dim=int(state["proj"].shape[1]),
        input_resolution=int(patch * grid),
    )


_BLOCK_LEAVES = {
    "attn.in_proj_weight": (("attn", "in_proj", "kernel"), dense_kernel),
    "attn.in_proj_bias": (("attn", "in_proj", "bias"), identity),
    "attn.out_proj.weight": (("attn", "out_proj", "kernel"), dense_kernel),
    "attn.out_proj.bias": (("attn", "out_proj", "bias"), identity),
    "mlp.c_fc.weight": (("c_fc", "kernel"), dense_kernel),
    "mlp.c_fc.bias": (("c_fc", "bias"), identity),
    "mlp.c_proj.weight": (("c_proj", "kernel"), dense_kernel),
    "mlp.c_proj.bias": (("c_proj", "bias"), identity),
}


def _rename(key: str) -> tuple[tuple[str, ...], Any] | None:
    parts = key.split(".")
    if parts[:2] == ["transformer", "resblocks"]:
        rest = ".".join(parts[3:])
        block = f"resblocks_{parts[2]}"
        if rest in _BLOCK_LEAVES:
            path, layout = _BLOCK_LEAVES[rest]
            return (block, *path), layout
        module, leaf = rest.rsplit(".", 1)  # ln_1 / ln_2
        return (block, module, "scale" if leaf == "weight" else leaf), identity
    if key == "conv1.weight":
        return ("conv1", "kernel"), conv_kernel
    if parts[0] in ("ln_pre", "ln_post"):
        return (parts[0], "scale" if parts[1] == "weight" else parts[1]), identity
    return (key,), identity


def vit_from_state_dict(
    state: dict[str, np.ndarray], source: str = "CLIP weights"
) -> tuple[ViTConfig, dict[str, Any]]:
    """``(config, params)`` of :class:`VisionTransformer` from a CLIP ``visual.*`` state dict."""
    config = vit_config(state)
    res = config.input_resolution
    abstract = jax.eval_shape(
        VisionTransformer(config).init, jax.random.key(0), jnp.zeros((1, res, res, 3))
    )["params"]
    return config, fill_tree(state, abstract, _rename, source)


def image_embeddings(config: ViTConfig, params: Any, images: Array) -> Array:
    """The (N, output_dim) CLIP embeddings of CLIP-normalised (N, R, R, 3) images."""
    return VisionTransformer(config).apply({"params": params}, images)
