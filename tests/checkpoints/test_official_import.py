"""Importing released PyTorch VL-PET checkpoints (SPEC.md §9).

A state dict in the released format is generated from the SPEC's key patterns (not from our tree),
imported, compared leaf by leaf with its source tensors, and run: our Flax model on the imported
tree must give the logits of an independent float64 NumPy forward that reads the state dict by its
official names (tests/checkpoints/official_reference.py), within 3e-5.
"""

from __future__ import annotations

import json
import re

import jax
import numpy as np
import pytest
import torch
from absl import flags
from absl.testing import flagsaver
from flax.traverse_util import flatten_dict
from safetensors.numpy import save_file

import vlpet_jax.pet.adapters
import vlpet_jax.pet.lora  # noqa: F401  (registers lora)
from tests.checkpoints.official_reference import (
    TASKS,
    VL_PET_LEVELS,
    Arch,
    Reference,
    make_batch,
    official_state_dict,
)
from vlpet_jax.checkpoints import official
from vlpet_jax.checkpoints.official import OfficialCheckpointError, load, load_official
from vlpet_jax.checkpoints.official_save import restore_params, save_params
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import get_method

TOLERANCE = 3e-5
CASES = [(family, f"vl_pet_{level}") for family in ("bart", "t5") for level in VL_PET_LEVELS]
CASES += [("bart", "vl_adapter"), ("bart", "lora")]  # released for BART only (SPEC.md §9)


def _write(state_dict: dict[str, np.ndarray], path) -> str:
    if str(path).endswith(".safetensors"):
        save_file({k: np.ascontiguousarray(v) for k, v in state_dict.items()}, str(path))
    else:
        torch.save({k: torch.from_numpy(np.array(v)) for k, v in state_dict.items()}, path)
    return str(path)


@pytest.fixture(scope="module", params=CASES, ids=[f"{f}-{m}" for f, m in CASES])
def imported(request, tmp_path_factory):
    family, method = request.param
    arch = Arch(family)
    state_dict = official_state_dict(arch, method, seed=CASES.index(request.param))
    path = _write(state_dict, tmp_path_factory.mktemp("official") / "checkpoint.pth")
    params = load(path, arch.backbone_cfg(), method, arch.pet_sizes(method))
    return arch, method, state_dict, params


# ---------------------------------------------------------------- leaf by leaf


def _expected_leaves(sd: dict[str, np.ndarray], arch: Arch, method: str) -> dict[str, np.ndarray]:
    """Our path -> the value it must hold, written from the official names (test-local table)."""
    sd = {k.removeprefix("module."): v for k, v in sd.items()}
    out: dict[str, np.ndarray] = {}
    bart = arch.family == "bart"

    def linear(ours, theirs, bias=True):
        out[f"{ours}/kernel"] = sd[f"{theirs}.weight"].T
        if bias:
            out[f"{ours}/bias"] = sd[f"{theirs}.bias"]

    def norm(ours, theirs):
        out[f"{ours}/scale"] = sd[f"{theirs}.weight"]
        if bart:
            out[f"{ours}/bias"] = sd[f"{theirs}.bias"]

    b = "backbone"
    if bart:
        out[f"{b}/shared/embedding"] = sd["model.shared.weight"]
        out[f"{b}/final_logits_bias"] = sd["final_logits_bias"][0]
        for s in ("encoder", "decoder"):
            out[f"{b}/{s}_positions/embedding"] = sd[f"model.{s}.embed_positions.weight"]
            norm(f"{b}/{s}_layernorm_embedding", f"model.{s}.layernorm_embedding")
            for i in range(arch.layers):
                o, t = f"{b}/{s}_layers_{i}", f"model.{s}.layers.{i}"
                attns = [("self_attn", "self_attn")]
                if s == "decoder":
                    attns.append(("cross_attn", "encoder_attn"))
                for ours, theirs in attns:
                    for p, q in zip("qkvo", ("q_proj", "k_proj", "v_proj", "out_proj")):
                        linear(f"{o}/{ours}/{p}", f"{t}.{theirs}.{q}")
                    norm(f"{o}/{ours}_norm", f"{t}.{theirs}_layer_norm")
                linear(f"{o}/ff/fc1", f"{t}.fc1")
                linear(f"{o}/ff/fc2", f"{t}.fc2")
                norm(f"{o}/ff_norm", f"{t}.final_layer_norm")
    else:
        out[f"{b}/shared/embedding"] = sd["shared.weight"]
        for s in ("encoder", "decoder"):
            out[f"{b}/{s}_relative_bias/embedding"] = sd[
                f"{s}.block.0.layer.0.SelfAttention.relative_attention_bias.weight"
            ]
            norm(f"{b}/{s}_final_norm", f"{s}.final_layer_norm")
            for i in range(arch.layers):
                o, t = f"{b}/{s}_layers_{i}", f"{s}.block.{i}.layer"
                attns = [("self_attn", "0.SelfAttention", "0")]
                if s == "decoder":
                    attns.append(("cross_attn", "1.EncDecAttention", "1"))
                for ours, theirs, j in attns:
                    for p in "qkvo":
                        linear(f"{o}/{ours}/{p}", f"{t}.{theirs}.{p}", bias=False)
                    norm(f"{o}/{ours}_norm", f"{t}.{j}.layer_norm")
                f = len(attns)
                linear(f"{o}/ff/wi", f"{t}.{f}.DenseReluDense.wi", bias=False)
                linear(f"{o}/ff/wo", f"{t}.{f}.DenseReluDense.wo", bias=False)
                norm(f"{o}/ff_norm", f"{t}.{f}.layer_norm")
    vp = "model.encoder.visual_embedding" if bart else "encoder.visual_embedding"
    linear("visual_embedding/feat_proj", f"{vp}.feat_embedding.0")
    norm("visual_embedding/feat_norm", f"{vp}.feat_embedding.1")
    linear("visual_embedding/box_proj", f"{vp}.absolute_vis_pos_embedding.0")
    norm("visual_embedding/box_norm", f"{vp}.absolute_vis_pos_embedding.1")
    out["visual_embedding/img_order_embedding"] = sd[f"{vp}.img_order_embedding.weight"]

    if method == "vl_adapter":
        for s, i in [(s, i) for s in ("encoder", "decoder") for i in range(arch.layers)]:
            sites = {"self_attn": "attn_adapter", "ff": "ff_adapter"}
            if s == "decoder":
                sites = {"self_attn": "self_attn_adapter", "cross_attn": "enc_attn_adapter",
                         "ff": "ff_adapter"}  # fmt: skip
            for site, theirs in sites.items():
                adapter = f"model.{s}.layers.{i}.{theirs}.adapters.nlvr"
                linear(f"{b}/{s}_layers_{i}/pet_{site}/mod/down", f"{adapter}.down_sampler")
                linear(f"{b}/{s}_layers_{i}/pet_{site}/mod/up", f"{adapter}.up_sampler")
        return out
    if method == "lora":
        attns = [("encoder", i, "self_attn", "self_attn") for i in range(arch.layers)]
        attns += [("decoder", i, o, t) for i in range(arch.layers)
                  for o, t in (("self_attn", "self_attn"), ("cross_attn", "encoder_attn"))]  # fmt: skip
        for s, i, ours, theirs in attns:
            for p in "qv":
                base = f"model.{s}.layers.{i}.{theirs}.{p}_proj"
                out[f"{b}/{s}_layers_{i}/{ours}/pet_{p}/down/kernel"] = sd[f"{base}.lora_As.vqa"].T
                out[f"{b}/{s}_layers_{i}/{ours}/pet_{p}/up/kernel"] = sd[f"{base}.lora_Bs.vqa"].T
        return out
    level = method.removeprefix("vl_pet_")
    for i in range(arch.layers):
        for p, site in (("attn", "self_attn"), ("ff", "ff")):
            t = (
                f"model.encoder.layers.{i}."
                if bart
                else f"encoder.block.{i}.layer.{'01'[p == 'ff']}."
            )
            o = f"{b}/encoder_layers_{i}/pet_{site}"
            heads = [f"{t}{p}_adapter_multihead_down.{h}" for h in range(arch.pet_heads)]
            # concat_h: head h fills output columns [h·r/N_h, (h+1)·r/N_h) of the Dense(d→r).
            out[f"{o}/mod/down/kernel"] = np.concatenate([sd[f"{k}.weight"].T for k in heads], 1)
            out[f"{o}/mod/down/bias"] = np.concatenate([sd[f"{k}.bias"] for k in heads])
            linear(f"{o}/mod/up", f"{t}{p}_adapter_multihead_up")
            g = f"{t}encoder_{p}_adapter_gating_"
            if level == "large":
                linear(f"{o}/gate/down", f"{g}large_x_down")
                linear(f"{o}/gate/up", f"{g}large_x_up")
            elif level == "middle_x":
                linear(f"{o}/gate/proj", f"{g}middle_xy_add")
            elif level == "middle_y":
                out[f"{o}/gate/z"] = sd[f"{g}middle_ia3_add"]
            else:
                linear(f"{o}/gate/proj", f"{g}small_xy_cat")
        cross = (
            f"model.decoder.layers.{i}.encoder_attn"
            if bart
            else f"decoder.block.{i}.layer.1.EncDecAttention"
        )
        adapter = f"{cross}.attn_value_parallel_adapter.adapters.gqa"
        o = f"{b}/decoder_layers_{i}/cross_attn/pet_v/mod"
        linear(f"{o}/down", f"{adapter}.down_sampler")
        linear(f"{o}/up", f"{adapter}.up_sampler")
    return out


def test_imported_tree_equals_source_tensors_leaf_by_leaf(imported):
    arch, method, state_dict, params = imported
    flat = flatten_dict(params, sep="/")
    expected = _expected_leaves(state_dict, arch, method)
    assert sorted(flat) == sorted(expected)
    for path, want in expected.items():
        got = np.asarray(flat[path])
        assert got.dtype == np.float32, path
        np.testing.assert_array_equal(got, want, err_msg=path)


def test_multihead_down_is_the_concatenation_of_heads(bart_large):
    """x @ kernel == concat_h(W_h x + b_h), the released forward (SPEC.md §3)."""
    arch, state_dict, _, params = bart_large
    sd = {k.removeprefix("module."): v.astype(np.float64) for k, v in state_dict.items()}
    pre = "model.encoder.layers.1." if arch.family == "bart" else "encoder.block.1.layer.1."
    x = np.random.default_rng(0).standard_normal((3, arch.d))
    heads = [
        x @ sd[f"{pre}ff_adapter_multihead_down.{h}.weight"].T
        + sd[f"{pre}ff_adapter_multihead_down.{h}.bias"]
        for h in range(arch.pet_heads)
    ]
    down = params["backbone"]["encoder_layers_1"]["pet_ff"]["mod"]["down"]
    ours = x @ np.asarray(down["kernel"], np.float64) + np.asarray(down["bias"], np.float64)
    np.testing.assert_allclose(ours, np.concatenate(heads, -1), rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- logits parity


def test_logits_match_numpy_reference(imported):
    """One image (default order ids) and an NLVR2 pair; T5 text reaches the log buckets."""
    arch, method, state_dict, params = imported
    cfg = arch.backbone_cfg()
    model = VLModel(cfg, get_method(method, cfg, arch.pet_sizes(method)).hooks)
    reference = Reference(state_dict, arch, method)
    text_len = 40 if arch.family == "t5" else 12
    if arch.family == "t5":  # 40 tokens: distances past max_exact = 8 use the logarithmic buckets
        pos = np.arange(text_len)
        buckets = reference.t5_bucket(pos[None, :] - pos[:, None], bidirectional=True)
        assert len(np.unique(buckets)) > 2 * (arch.buckets // 4) + 4
    apply = jax.jit(model.apply)
    for two_images in (False, True):
        batch = make_batch(arch, seed=7 + two_images, two_images=two_images, text_len=text_len)
        want = reference.logits(batch)
        got = np.asarray(apply({"params": params}, batch), np.float64)
        assert got.shape == want.shape == (2, 5, arch.vocab)
        error = float(np.max(np.abs(got - want)))
        print(f"{arch.family} {method} two_images={two_images}: max |Δlogit| {error:.2e}")
        assert error < TOLERANCE, (two_images, error)


@pytest.mark.parametrize("method", [m for f, m in CASES if f == "t5"] + ["vl_adapter", "lora"])
def test_reference_reads_every_pet_tensor(method):
    """Guard on the test itself: shifting any PET tensor (one task copy: the one the reference
    reads) moves the reference logits, so parity cannot pass with a term silently dropped."""
    arch = Arch("bart" if method in ("vl_adapter", "lora") else "t5")
    sd = official_state_dict(arch, method, seed=3)
    batch = make_batch(arch, seed=1, two_images=True, text_len=10)
    base = Reference(sd, arch, method).logits(batch)
    read_alias = "gqa" if method == "lora" else "caption"  # the copy Reference reads

    def read_by_reference(key: str) -> bool:
        alias = re.search(rf"\.({'|'.join(TASKS)})(\.|$)", key)
        return alias is None or alias.group(1) == read_alias

    pet_keys = [k for k in sd if ("adapter" in k or "lora_" in k) and read_by_reference(k)]
    assert len(pet_keys) >= 4 * arch.layers
    rng = np.random.default_rng(0)
    for key in pet_keys:
        # Random, not constant: a constant shift of a sub-layer output is removed by BART's LN.
        changed = {**sd, key: sd[key] + 0.5 * rng.standard_normal(sd[key].shape)}
        moved = Reference(changed, arch, method).logits(batch)
        assert np.max(np.abs(moved - base)) > 1e-4, key


# ---------------------------------------------------------------- formats and the CLI


@pytest.fixture(scope="module")
def bart_large(tmp_path_factory):
    arch = Arch("bart")
    state_dict = official_state_dict(arch, "vl_pet_large", seed=11)
    path = _write(state_dict, tmp_path_factory.mktemp("bart_large") / "checkpoint.pth")
    params = load_official(
        path, arch.backbone_cfg(), "vl_pet_large", arch.pet_sizes("vl_pet_large")
    )
    return arch, state_dict, path, params


def _assert_same_tree(a, b):
    flat_a, flat_b = flatten_dict(a, sep="/"), flatten_dict(b, sep="/")
    assert sorted(flat_a) == sorted(flat_b)
    for key in flat_a:
        np.testing.assert_array_equal(np.asarray(flat_a[key]), np.asarray(flat_b[key]), key)


def test_safetensors_without_prefix_or_duplicates_gives_the_same_tree(bart_large, tmp_path):
    """A re-saved checkpoint may drop `module.` and the duplicate copies (safetensors dedups)."""
    arch, state_dict, _, params = bart_large
    keep = {}
    for key, value in state_dict.items():
        key = key.removeprefix("module.")
        is_copy = any(f"adapters.{t}." in key for t in TASKS[1:]) or key in (
            "lm_head.weight",
            "model.encoder.embed_tokens.weight",
            "model.decoder.embed_tokens.weight",
            "model.encoder.visual_embedding.obj_order_embedding.weight",
        )
        if not is_copy:
            keep[key] = value
    assert len(keep) < len(state_dict) - 8
    path = _write(keep, tmp_path / "deduplicated.safetensors")
    _assert_same_tree(
        load_official(path, arch.backbone_cfg(), "vl_pet_large", arch.pet_sizes("vl_pet_large")),
        params,
    )


def test_save_params_is_atomic_and_round_trips(bart_large, tmp_path):
    _, _, _, params = bart_large
    out = save_params(params, tmp_path / "converted")
    _assert_same_tree(restore_params(out), params)
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".converted.tmp")]
    with pytest.raises(FileExistsError, match="already exists"):
        save_params(params, out)


def test_convert_cli_writes_the_imported_tree(bart_large, tmp_path):
    from launch import convert as cli
    from tests.hf_reference import TINY_BART

    arch, _, path, params = bart_large
    hf_dir = tmp_path / "bart_hf"
    hf_dir.mkdir()
    # Only config.json is read; its vocabulary (the pre-resize one) is replaced by the checkpoint's.
    with open(hf_dir / "config.json", "w") as f:
        json.dump({**TINY_BART, "model_type": "bart", "vocab_size": 50}, f)
    out = tmp_path / "out"
    sizes = ",".join(f"{k}={v}" for k, v in arch.pet_sizes("vl_pet_large").items())
    argv = ["convert", f"--official={path}", f"--backbone_checkpoint={hf_dir}",
            "--method=vl_pet_large", f"--out={out}", f"--pet={sizes}"]  # fmt: skip
    with flagsaver.flagsaver():
        flags.FLAGS(argv)
        cli.main(argv[:1])
    _assert_same_tree(restore_params(out), params)


# ---------------------------------------------------------------- strictness


def _load_variant(state_dict, tmp_path, **overrides):
    arch = Arch("bart")
    sizes = {**arch.pet_sizes("vl_pet_large"), **overrides.pop("sizes", {})}
    method = overrides.pop("method", "vl_pet_large")
    path = _write(state_dict, tmp_path / "variant.safetensors")
    return load_official(path, arch.backbone_cfg(), method, sizes)


def test_unknown_key_is_an_error(bart_large, tmp_path):
    _, state_dict, _, _ = bart_large
    extra = "module.model.encoder.layers.0.attn_adapter_extra.weight"
    variant = {**state_dict, extra: np.ones((2, 2), np.float32)}
    with pytest.raises(OfficialCheckpointError, match=r"0 missing keys: none; 1 unknown keys: "
                       r"model\.encoder\.layers\.0\.attn_adapter_extra\.weight"):  # fmt: skip
        _load_variant(variant, tmp_path)


def test_missing_key_is_an_error(bart_large, tmp_path):
    _, state_dict, _, _ = bart_large
    gone = "module.model.encoder.layers.1.encoder_ff_adapter_gating_large_x_up.weight"
    variant = {k: v for k, v in state_dict.items() if k != gone and "up_sampler.bias" not in k}
    with pytest.raises(OfficialCheckpointError) as err:
        _load_variant(variant, tmp_path)
    message = str(err.value)
    assert "3 missing keys" in message and "0 unknown keys: none" in message
    assert (
        "model.encoder.layers.1.encoder_ff_adapter_gating_large_x_up.weight "
        "(for backbone/encoder_layers_1/pet_ff/gate/up/kernel)" in message
    )
    assert (
        "model.decoder.layers.0.encoder_attn.attn_value_parallel_adapter.adapters.{task}.up_sampler.bias"
        in message
    )


def test_wrong_granularity_lists_both_sides(bart_large, tmp_path):
    _, state_dict, _, _ = bart_large
    with pytest.raises(OfficialCheckpointError) as err:
        _load_variant(state_dict, tmp_path, method="vl_pet_small")
    message = str(err.value)
    assert re.search(r"\d+ missing keys: .*small_xy_cat", message)
    assert re.search(r"\d+ unknown keys: .*large_x_down", message)


@pytest.mark.parametrize(
    "copy_key,canonical",
    [
        ("module.lm_head.weight", "model.shared.weight"),
        ("module.model.encoder.visual_embedding.obj_order_embedding.weight", "model.shared.weight"),
        (
            "module.model.decoder.layers.1.encoder_attn.attn_value_parallel_adapter.adapters.nlvr.down_sampler.weight",
            "model.decoder.layers.1.encoder_attn.attn_value_parallel_adapter.adapters.caption.down_sampler.weight",
        ),
    ],
    ids=["lm_head", "obj_order_embedding", "task_alias"],
)
def test_unequal_copies_are_an_error(bart_large, tmp_path, copy_key, canonical):
    _, state_dict, _, _ = bart_large
    variant = dict(state_dict)
    variant[copy_key] = state_dict[copy_key].copy()
    variant[copy_key][1, 2] += 0.25
    with pytest.raises(OfficialCheckpointError) as err:
        _load_variant(variant, tmp_path)
    message = str(err.value)
    assert f"{copy_key.removeprefix('module.')!r} differs from its copy {canonical!r}" in message
    assert "max |difference| 0.25" in message


def test_shape_mismatch_names_both_shapes(bart_large, tmp_path):
    _, state_dict, _, _ = bart_large
    with pytest.raises(OfficialCheckpointError) as err:
        _load_variant(state_dict, tmp_path, sizes={"gate_rank": 10, "rank": 20})
    message = str(err.value)
    assert (
        "'model.encoder.layers.0.encoder_attn_adapter_gating_large_x_down.weight' has shape "
        "(12, 32), expected (10, 32) (our parameter backbone/encoder_layers_0/pet_self_attn/gate/"
        "down/kernel has shape (32, 10))" in message
    )
    assert (
        "'model.encoder.layers.0.attn_adapter_multihead_down.0.weight' has shape 4 parts of "
        "[(4, 32), (4, 32), (4, 32), (4, 32)], expected 4 parts of (5, 32)" in message
    )
    img = "module.model.encoder.visual_embedding.img_order_embedding.weight"
    variant = {**state_dict, img: np.zeros((3, 32), np.float32)}
    with pytest.raises(OfficialCheckpointError, match=r"has shape \(3, 32\), expected \(2, 32\)"):
        _load_variant(variant, tmp_path)


def test_method_without_official_layout_is_an_error(bart_large):
    arch, _, path, _ = bart_large
    with pytest.raises(KeyError, match="no official checkpoint layout for PET method 'full_ft'"):
        official.load(path, arch.backbone_cfg(), "full_ft")


# ---------------------------------------------------------------- the experiment-config form

TINY_CONFIG = "configs/image_text.py:backbone=bart_tiny,method=vl_pet_middle_x,runlocal=True"


@pytest.fixture(scope="module")
def tiny_config_checkpoint(tmp_path_factory):
    """A released-format file with the sizes of the `bart_tiny` preset and its runlocal PET sizes."""
    import vlpet_jax

    config = vlpet_jax.load_config(TINY_CONFIG)
    backbone = vlpet_jax.backbone_config(config)
    arch = Arch(
        "bart", vocab=backbone.vocab_size, d=backbone.d_model, heads=backbone.num_heads,
        d_kv=backbone.d_kv, d_ff=backbone.d_ff, layers=backbone.num_encoder_layers,
        feat_dim=config.model.feat_dim, max_positions=backbone.max_position_embeddings,
        rank=config.pet.rank, pet_heads=config.pet.num_heads, gate_rank=config.pet.gate_rank,
        value_rank=config.pet.value_rank,
    )  # fmt: skip
    state_dict = official_state_dict(arch, "vl_pet_middle_x", seed=5)
    path = _write(state_dict, tmp_path_factory.mktemp("tiny_config") / "checkpoint.pth")
    explicit = load_official(
        path, arch.backbone_cfg(), "vl_pet_middle_x", arch.pet_sizes("vl_pet_middle_x")
    )
    return config, path, explicit


def test_load_with_experiment_config_equals_explicit_arguments(tiny_config_checkpoint):
    config, path, explicit = tiny_config_checkpoint
    _assert_same_tree(official.load(path, config), explicit)
    with pytest.raises(TypeError, match=r"come from config\.pet"):
        official.load(path, config, "vl_pet_large")


def test_convert_cli_with_config(tiny_config_checkpoint, tmp_path):
    from launch import convert as cli

    _, path, explicit = tiny_config_checkpoint
    out = tmp_path / "out"
    argv = ["convert", f"--official={path}", f"--out={out}", f"--config={TINY_CONFIG}"]
    with flagsaver.flagsaver():
        flags.FLAGS(argv)
        cli.main(argv[:1])
    _assert_same_tree(restore_params(out), explicit)
