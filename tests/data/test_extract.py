"""CLIP feature extraction (SPEC.md §2) against PyTorch references written here from the CLIP
paper's description of the encoders, with random weights saved under CLIP's state-dict names."""

from __future__ import annotations

import math
from collections import OrderedDict
from pathlib import Path

import h5py
import jax
import numpy as np
import pytest
import torch
from absl import flags
from PIL import Image
from safetensors.numpy import save_file
from torch import nn

from launch import extract_features
from vlpet_jax.data.consolidated import ConsolidatedImageStore, consolidate_features
from vlpet_jax.data.extract import (
    CLIP_MEAN,
    CLIP_STD,
    clip_preprocess,
    extract_image_features,
    load_state_dict,
    resnet_from_state_dict,
    vit_from_state_dict,
)
from vlpet_jax.data.extract.resnet import layer4_features
from vlpet_jax.data.extract.vit import image_embeddings
from vlpet_jax.data.features import ImageFeatureStore, VideoFeatureStore

# -- PyTorch references ----------------------------------------------------------------------------


class TorchBottleneck(nn.Module):
    """1x1 -> 3x3 -> avg-pool stride -> 1x1 (x4); shortcut avg-pool -> 1x1 -> BN when shapes change."""

    def __init__(self, cin: int, planes: int, stride: int) -> None:
        super().__init__()
        self.conv1, self.bn1 = nn.Conv2d(cin, planes, 1, bias=False), nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.pool = nn.AvgPool2d(stride) if stride > 1 else nn.Identity()
        self.conv3, self.bn3 = (
            nn.Conv2d(planes, 4 * planes, 1, bias=False),
            nn.BatchNorm2d(4 * planes),
        )
        self.downsample = None
        if stride > 1 or cin != 4 * planes:
            self.downsample = nn.Sequential(
                nn.AvgPool2d(stride) if stride > 1 else nn.Identity(),
                nn.Conv2d(cin, 4 * planes, 1, bias=False),
                nn.BatchNorm2d(4 * planes),
            )

    def forward(self, x):
        y = torch.relu(self.bn1(self.conv1(x)))
        y = self.pool(torch.relu(self.bn2(self.conv2(y))))
        y = self.bn3(self.conv3(y))
        return torch.relu(y + (x if self.downsample is None else self.downsample(x)))


class TorchModifiedResNet(nn.Module):
    """3-conv stem (stride 2 first) + 2x2 avg pool, four bottleneck stages; layer-4 map out."""

    def __init__(self, layers, width: int) -> None:
        super().__init__()
        half = width // 2
        self.conv1, self.bn1 = nn.Conv2d(3, half, 3, 2, 1, bias=False), nn.BatchNorm2d(half)
        self.conv2, self.bn2 = nn.Conv2d(half, half, 3, 1, 1, bias=False), nn.BatchNorm2d(half)
        self.conv3, self.bn3 = nn.Conv2d(half, width, 3, 1, 1, bias=False), nn.BatchNorm2d(width)
        cin = width
        for stage, blocks in enumerate(layers):
            planes, stack = width * 2**stage, []
            for b in range(blocks):
                stack.append(TorchBottleneck(cin, planes, 2 if stage > 0 and b == 0 else 1))
                cin = 4 * planes
            setattr(self, f"layer{stage + 1}", nn.Sequential(*stack))
        # The attention pool that ends CLIP's encoder: present in the weights, unused by VL-PET.
        self.attnpool = nn.Module()
        self.attnpool.positional_embedding = nn.Parameter(torch.randn(5, cin))
        self.attnpool.q_proj = nn.Linear(cin, cin)

    def forward(self, x):
        for k in (1, 2, 3):
            x = torch.relu(getattr(self, f"bn{k}")(getattr(self, f"conv{k}")(x)))
        x = nn.functional.avg_pool2d(x, 2)
        for stage in range(1, 5):
            x = getattr(self, f"layer{stage}")(x)
        return x


class QuickGELU(nn.Module):
    def forward(self, x):
        return x * torch.sigmoid(1.702 * x)


class TorchBlock(nn.Module):
    def __init__(self, width: int, heads: int) -> None:
        super().__init__()
        self.attn, self.ln_1 = nn.MultiheadAttention(width, heads), nn.LayerNorm(width)
        self.mlp = nn.Sequential(OrderedDict(
            c_fc=nn.Linear(width, 4 * width), gelu=QuickGELU(), c_proj=nn.Linear(4 * width, width)
        ))  # fmt: skip
        self.ln_2 = nn.LayerNorm(width)

    def forward(self, x):  # (L, N, E)
        h = self.ln_1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        return x + self.mlp(self.ln_2(x))


class TorchViT(nn.Module):
    """Patch conv, class token, positions, LN, pre-norm blocks, LN(class token) @ proj."""

    def __init__(self, patch: int, width: int, layers: int, out: int, resolution: int) -> None:
        super().__init__()
        scale = width**-0.5
        self.conv1 = nn.Conv2d(3, width, patch, patch, bias=False)
        self.class_embedding = nn.Parameter(scale * torch.randn(width))
        self.positional_embedding = nn.Parameter(
            scale * torch.randn((resolution // patch) ** 2 + 1, width)
        )
        self.ln_pre = nn.LayerNorm(width)
        self.transformer = nn.Module()
        self.transformer.resblocks = nn.Sequential(
            *[TorchBlock(width, width // 64) for _ in range(layers)]
        )
        self.ln_post = nn.LayerNorm(width)
        self.proj = nn.Parameter(scale * torch.randn(width, out))

    def forward(self, x):
        x = self.conv1(x).flatten(2).transpose(1, 2)  # (N, grid², width)
        cls = self.class_embedding.expand(x.shape[0], 1, -1)
        x = self.ln_pre(torch.cat([cls, x], 1) + self.positional_embedding)
        x = self.transformer.resblocks(x.transpose(0, 1)).transpose(0, 1)
        return self.ln_post(x[:, 0]) @ self.proj


class TorchCLIP(nn.Module):
    """A CLIP-shaped container, so the state dict has ``visual.*`` next to text-side keys."""

    def __init__(self, visual: nn.Module) -> None:
        super().__init__()
        self.visual = visual
        self.token_embedding = nn.Embedding(7, 4)
        self.logit_scale = nn.Parameter(torch.ones([]))

    def forward(self, images):
        return self.visual(images)


def _randomise_norms(model: nn.Module, seed: int) -> nn.Module:
    """Non-trivial BatchNorm statistics and norm affines, so every converted tensor matters."""
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for m in model.modules():
            if isinstance(m, (nn.BatchNorm2d, nn.LayerNorm)):
                n = m.weight.shape[0]
                m.weight.copy_(torch.rand(n, generator=g) + 0.5)
                m.bias.copy_(0.1 * torch.randn(n, generator=g))
            if isinstance(m, nn.BatchNorm2d):
                m.running_mean.copy_(0.1 * torch.randn(n, generator=g))
                m.running_var.copy_(torch.rand(n, generator=g) + 0.5)
    return model.eval()


def _nhwc(x: torch.Tensor) -> np.ndarray:
    return x.numpy().transpose(0, 2, 3, 1)


def _random_images(directory: Path, sizes, seed: int = 0) -> list[Path]:
    rng = np.random.default_rng(seed)
    directory.mkdir(parents=True, exist_ok=True)
    paths = []
    for k, (w, h) in enumerate(sizes):
        path = directory / f"img_{k}.png"
        Image.fromarray(rng.integers(0, 256, (h, w, 3), dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


# -- encoders vs references ------------------------------------------------------------------------


def test_rn101_depth_layer4_map_matches_torch(tmp_path):
    torch.manual_seed(0)
    reference = _randomise_norms(TorchModifiedResNet((3, 4, 23, 3), width=8), seed=1)
    images = torch.randn(2, 3, 64, 64)
    weights = tmp_path / "RN101-tiny.pt"  # the whole CLIP state dict, text side included
    torch.save(TorchCLIP(reference).state_dict(), weights)
    state = load_state_dict(weights)
    assert "layer3.22.conv2.weight" in state and "logit_scale" not in state
    config, params = resnet_from_state_dict(state)
    assert (config.layers, config.width, config.out_channels) == ((3, 4, 23, 3), 8, 256)
    ours = np.asarray(jax.jit(layer4_features, static_argnums=0)(config, params, _nhwc(images)))
    with torch.no_grad():
        expected = _nhwc(reference(images))
    assert ours.shape == expected.shape == (2, 2, 2, 256)
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    assert np.abs(expected).max() > 0.1  # a real signal, not all zeros


@pytest.mark.parametrize("fmt", ["safetensors", "npz_fp16"])
def test_vit_embeddings_match_torch(tmp_path, fmt):
    torch.manual_seed(2)
    reference = _randomise_norms(TorchViT(32, 128, 2, 16, 96), seed=3)
    state = {f"visual.{k}": v.numpy() for k, v in reference.state_dict().items()}
    if fmt == "safetensors":
        weights = tmp_path / "vit.safetensors"
        save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, weights)
    else:  # OpenAI's weights are fp16: the reference runs on the same rounded values
        weights = tmp_path / "vit.npz"
        np.savez(weights, **{k: v.astype(np.float16) for k, v in state.items()})
        reference.load_state_dict({k: v.half().float() for k, v in reference.state_dict().items()})
    config, params = vit_from_state_dict(load_state_dict(weights))
    assert (config.patch_size, config.width, config.heads, config.layers) == (32, 128, 2, 2)
    assert (config.output_dim, config.input_resolution) == (16, 96)
    images = torch.randn(3, 3, 96, 96)
    ours = np.asarray(jax.jit(image_embeddings, static_argnums=0)(config, params, _nhwc(images)))
    with torch.no_grad():
        expected = reference(images).numpy()
    np.testing.assert_allclose(ours, expected, atol=1e-4, rtol=0)
    with pytest.raises(ValueError, match=r"give 4 patches; .* for 96 px \(9 patches\)"):
        image_embeddings(config, params, np.zeros((1, 64, 64, 3), np.float32))


def test_weights_that_do_not_fit_are_reported(tmp_path):
    torch.manual_seed(0)
    state = {k: v.numpy() for k, v in TorchModifiedResNet((1, 1, 1, 1), 8).state_dict().items()}
    vit_state = {k: v.numpy() for k, v in TorchViT(32, 64, 1, 8, 64).state_dict().items()}
    with pytest.raises(ValueError, match="not CLIP ModifiedResNet weights: found a ViT"):
        resnet_from_state_dict(vit_state)
    with pytest.raises(ValueError, match=r"not CLIP ViT weights: .*ModifiedResNet"):
        vit_from_state_dict(state)
    broken = dict(state)
    del broken["layer2.0.bn1.running_var"]
    broken["layer2.0.extra.weight"] = np.zeros(3, np.float32)
    broken["conv2.weight"] = np.zeros((4, 4, 1, 1), np.float32)
    with pytest.raises(ValueError) as info:
        resnet_from_state_dict(broken, "my.pt")
    message = str(info.value)
    assert message.startswith("my.pt: the weights do not fit the model")
    assert "'layer2_0/bn1/var'" in message and "'layer2.0.extra.weight'" in message
    assert "conv2.weight: (1, 1, 4, 4) for conv2/kernel (3, 3, 4, 4)" in message
    with pytest.raises(ValueError, match=r"unknown weight format '\.ckpt'"):
        (tmp_path / "w.ckpt").write_bytes(b"")
        load_state_dict(tmp_path / "w.ckpt")
    with pytest.raises(FileNotFoundError, match="CLIP weights not found"):
        load_state_dict(tmp_path / "missing.pt")


# -- preprocessing ---------------------------------------------------------------------------------


def test_preprocess_normalises_with_clip_mean_and_std():
    out = clip_preprocess(Image.new("RGB", (300, 250), (10, 200, 30)))
    assert out.shape == (224, 224, 3) and out.dtype == np.float32
    expected = (np.array([10, 200, 30], np.float32) / 255 - CLIP_MEAN) / CLIP_STD
    np.testing.assert_allclose(out, np.broadcast_to(expected, out.shape), atol=1e-6)
    gray = clip_preprocess(Image.new("L", (224, 224), 128))  # converted to RGB: equal channels
    np.testing.assert_allclose(
        gray * CLIP_STD + CLIP_MEAN, np.full_like(gray, 128 / 255), atol=1e-6
    )


@pytest.mark.parametrize("wide", [True, False])
def test_preprocess_center_crops_the_longer_side(wide):
    # Shorter side already 224, so the resize keeps the pixels; the crop starts at round(276 / 2).
    code = np.arange(500) % 250  # each position's own value, readable after the crop
    strip = (
        np.repeat(code[None, :, None], 224, 0) if wide else np.repeat(code[:, None, None], 224, 1)
    )
    image = Image.fromarray(np.repeat(strip, 3, axis=2).astype(np.uint8))
    out = clip_preprocess(image) * CLIP_STD + CLIP_MEAN
    along = out[0, :, 0] if wide else out[:, 0, 0]
    np.testing.assert_allclose(along * 255, code[138 : 138 + 224], atol=1e-3)


# -- pipelines and file layouts --------------------------------------------------------------------


def test_image_extraction_writes_the_per_image_h5_layout(tmp_path):
    torch.manual_seed(4)
    reference = _randomise_norms(TorchModifiedResNet((1, 1, 1, 1), width=8), seed=5)
    weights = tmp_path / "rn.pt"  # OpenAI ships TorchScript archives
    example = torch.zeros(1, 3, 64, 64)
    torch.jit.save(torch.jit.trace(TorchCLIP(reference).eval(), example), str(weights))
    paths = _random_images(tmp_path / "images", [(250, 300), (224, 224), (300, 200)])
    (tmp_path / "images" / "notes.txt").write_text("not an image")
    out_dir = tmp_path / "feats"
    summary = extract_image_features(tmp_path / "images", weights, out_dir, batch_size=2)
    assert summary["written"] == 3 and summary["feature_shape"] == [49, 256]
    assert sorted(p.name for p in out_dir.iterdir()) == ["img_0.h5", "img_1.h5", "img_2.h5"]
    store = ImageFeatureStore(out_dir, expected_shape=(49, 256))
    for path in paths:
        with h5py.File(out_dir / f"{path.stem}.h5", "r") as f:
            assert list(f) == [path.stem] and list(f[path.stem]) == ["features"]
            assert f[f"{path.stem}/features"].dtype == np.float16
        pixels = torch.from_numpy(clip_preprocess(Image.open(path))[None].transpose(0, 3, 1, 2))
        with torch.no_grad():
            grid = reference(pixels)[0].numpy()  # (C, 7, 7) -> row-major (49, C)
        expected = grid.reshape(256, 49).T
        np.testing.assert_allclose(store.load(path.stem), expected, atol=2e-3, rtol=2e-3)
    again = extract_image_features(tmp_path / "images", weights, out_dir, batch_size=2)
    assert (again["written"], again["skipped"]) == (0, 3)
    consolidate_features(out_dir, "image")  # the output is ready for the one-file store
    assert len(ConsolidatedImageStore(tmp_path / "feats.h5", expected_shape=(49, 256))) == 3


def test_video_launcher_writes_the_value_npz_layout(tmp_path, capsys):
    torch.manual_seed(6)
    reference = _randomise_norms(TorchViT(32, 64, 1, 8, 64), seed=7)
    weights = tmp_path / "vit.pt"
    torch.save({f"visual.{k}": v for k, v in reference.state_dict().items()}, weights)
    frames = {"vid_a": 3, "vid_b": 1}
    for name, count in frames.items():
        _random_images(tmp_path / "frames" / name, [(80, 64)] * count, seed=count)
    argv = ["extract_features", "--kind=video", f"--weights={weights}",
            f"--input_dir={tmp_path / 'frames'}", f"--out_dir={tmp_path / 'npz'}",
            "--batch_size=2", "--l2_normalize"]  # fmt: skip
    flags.FLAGS(argv)  # the launcher in-process (a subprocess would re-import jax and torch)
    try:
        extract_features.main([])
    finally:
        flags.FLAGS.unparse_flags()
    printed = capsys.readouterr().out
    assert '"written": 2' in printed and '"feature_dim": 8' in printed
    store = VideoFeatureStore(tmp_path / "npz", feat_dim=8)
    for name, count in frames.items():
        with np.load(tmp_path / "npz" / f"{name}.npz") as archive:
            assert archive.files == ["features"]
            assert archive["features"].shape == (count, 8)
            assert archive["features"].dtype == np.float32
        files = sorted((tmp_path / "frames" / name).iterdir())
        pixels = np.stack([clip_preprocess(Image.open(p), 64) for p in files])
        with torch.no_grad():
            expected = reference(torch.from_numpy(pixels.transpose(0, 3, 1, 2))).numpy()
        expected /= np.linalg.norm(expected, axis=-1, keepdims=True)
        np.testing.assert_allclose(store.load(name), expected, atol=1e-4, rtol=0)
        assert math.isclose(float(np.linalg.norm(store.load(name)[0])), 1.0, rel_tol=1e-5)
