"""CLIP's ModifiedResNet image encoder in Flax, up to the layer-4 grid (SPEC.md §2).

Architecture (Radford et al. 2021, §2.4, and the RN101 sizes): a 3-convolution stem (3×3 convs
with width/2, width/2 and width channels, the first with stride 2, each followed by BatchNorm and
ReLU) and a 2×2 average pool; then four stages of bottleneck blocks with ``layers`` = [3, 4, 23, 3]
blocks for RN101 and ``planes`` = width·[1, 2, 4, 8]. A bottleneck is 1×1 -> 3×3 -> 1×1 (expansion
4) with BatchNorm and ReLU; it strides *anti-aliased*: an average pool of the stride's size after
the 3×3 conv instead of a strided conv, and its projection shortcut is average pool -> 1×1 conv ->
BatchNorm. The attention pooling that ends CLIP's encoder is not built: VL-PET uses the layer-4
map, (H/32, W/32, 32·width) = (7, 7, 2048) for RN101 at 224 px.

BatchNorm is inference-only (running statistics, eps 1e-5) and its statistics are ordinary
parameters (``scale``, ``bias``, ``mean``, ``var``), so the whole encoder is one param tree. Names
follow CLIP's state dict (``layer3_22/downsample_bn`` <- ``visual.layer3.22.downsample.2``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vlpet_jax.data.extract.weights import conv_kernel, fill_tree, identity

Array = jax.Array
EXPANSION = 4
_BN_NAMES = {"weight": "scale", "bias": "bias", "running_mean": "mean", "running_var": "var"}


@dataclass(frozen=True)
class ResNetConfig:
    """RN101: layers (3, 4, 23, 3), width 64 -> layer-4 channels 64·32 = 2048."""

    layers: tuple[int, int, int, int] = (3, 4, 23, 3)
    width: int = 64

    @property
    def out_channels(self) -> int:
        return self.width * 8 * EXPANSION


class FrozenBatchNorm(nn.Module):
    """BatchNorm with fixed statistics: (x - mean) / sqrt(var + eps) · scale + bias."""

    eps: float = 1e-5

    @nn.compact
    def __call__(self, x: Array) -> Array:
        channels = x.shape[-1]
        scale = self.param("scale", nn.initializers.ones, (channels,))
        bias = self.param("bias", nn.initializers.zeros, (channels,))
        mean = self.param("mean", nn.initializers.zeros, (channels,))
        var = self.param("var", nn.initializers.ones, (channels,))
        return (x - mean) * (scale * jax.lax.rsqrt(var + self.eps)) + bias


def _conv(features: int, size: int, name: str, stride: int = 1) -> nn.Conv:
    pad = size // 2
    return nn.Conv(
        features, (size, size), (stride, stride), [(pad, pad)] * 2, use_bias=False, name=name
    )


def _avg_pool(x: Array, size: int) -> Array:
    return nn.avg_pool(x, (size, size), (size, size)) if size > 1 else x


class Bottleneck(nn.Module):
    """1×1 -> 3×3 -> (avg pool) -> 1×1·4, with an avg-pool + 1×1 + BN shortcut when needed."""

    planes: int
    stride: int = 1

    @nn.compact
    def __call__(self, x: Array) -> Array:
        out = nn.relu(FrozenBatchNorm(name="bn1")(_conv(self.planes, 1, "conv1")(x)))
        out = nn.relu(FrozenBatchNorm(name="bn2")(_conv(self.planes, 3, "conv2")(out)))
        out = _avg_pool(out, self.stride)
        out = FrozenBatchNorm(name="bn3")(_conv(self.planes * EXPANSION, 1, "conv3")(out))
        shortcut = x
        if self.stride > 1 or x.shape[-1] != self.planes * EXPANSION:
            shortcut = _conv(self.planes * EXPANSION, 1, "downsample_conv")(
                _avg_pool(x, self.stride)
            )
            shortcut = FrozenBatchNorm(name="downsample_bn")(shortcut)
        return nn.relu(out + shortcut)


class ModifiedResNet(nn.Module):
    """Images (N, H, W, 3), CLIP-normalised -> layer-4 grid (N, H/32, W/32, 32·width)."""

    config: ResNetConfig

    @nn.compact
    def __call__(self, images: Array) -> Array:
        width = self.config.width
        x = images
        for k, (features, stride) in enumerate([(width // 2, 2), (width // 2, 1), (width, 1)]):
            x = _conv(features, 3, f"conv{k + 1}", stride)(x)
            x = nn.relu(FrozenBatchNorm(name=f"bn{k + 1}")(x))
        x = _avg_pool(x, 2)
        for stage, blocks in enumerate(self.config.layers):
            for block in range(blocks):
                stride = 2 if stage > 0 and block == 0 else 1
                name = f"layer{stage + 1}_{block}"
                x = Bottleneck(width * 2**stage, stride, name=name)(x)
        return x


# --------------------------------------------------------------------------------------------------
# CLIP state dict -> config and params


def resnet_config(state: dict[str, np.ndarray]) -> ResNetConfig:
    """Read the architecture off the tensors (``visual.`` prefix removed), as CLIP itself does."""
    if "layer1.0.conv1.weight" not in state:
        found = "a ViT (class_embedding)" if "class_embedding" in state else "no layer1.0.conv1"
        raise ValueError(f"not CLIP ModifiedResNet weights: found {found}")
    layers = tuple(
        len({k.split(".")[1] for k in state if k.startswith(f"layer{stage}.")})
        for stage in range(1, 5)
    )
    return ResNetConfig(layers=layers, width=int(state["layer1.0.conv1.weight"].shape[1]))


def _rename(key: str) -> tuple[tuple[str, ...], Any] | None:
    parts = key.split(".")
    if parts[0] == "attnpool" or parts[-1] == "num_batches_tracked":
        return None
    leaf = parts[-1]
    if parts[0].startswith("layer"):
        module = parts[2:-1]
        if module[0] == "downsample":  # Sequential(AvgPool, Conv, BN)
            module = ["downsample_conv" if module[1] == "1" else "downsample_bn"]
        path = (f"{parts[0]}_{parts[1]}", module[0])
    else:
        path = (parts[0],)
    if path[-1].startswith(("conv", "downsample_conv")):
        return (*path, "kernel"), conv_kernel
    return (*path, _BN_NAMES.get(leaf, leaf)), identity


def resnet_from_state_dict(
    state: dict[str, np.ndarray], source: str = "CLIP weights"
) -> tuple[ResNetConfig, dict[str, Any]]:
    """``(config, params)`` of :class:`ModifiedResNet` from a CLIP ``visual.*`` state dict."""
    config = resnet_config(state)
    abstract = jax.eval_shape(
        ModifiedResNet(config).init, jax.random.key(0), jnp.zeros((1, 32, 32, 3))
    )["params"]
    return config, fill_tree(state, abstract, _rename, source)


def layer4_features(config: ResNetConfig, params: Any, images: Array) -> Array:
    """The (N, h, w, C) layer-4 map of CLIP-normalised (N, H, W, 3) images."""
    return ModifiedResNet(config).apply({"params": params}, images)
