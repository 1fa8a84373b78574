"""Inspection: counts per SPEC.md §4 (checked against hand counts from the SPEC formulas), the
per-module table, the CLI line, the Python API on real trees, and the gate read-outs."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import flax.linen as nn
import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

import vlpet_jax
from tests.hf_reference import make_bart
from vlpet_jax import api
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import known_methods
from vlpet_jax.train import inspect as vl_inspect

REPO = Path(__file__).resolve().parents[2]
CONFIGS = {"image": "configs/image_text.py", "video": "configs/video_text.py"}
LINE = re.compile(r"trainable params: (\d+) \|\| all params: (\d+) \|\| trainable%: (\d+\.\d{4})")


def _config(modality: str, arg: str):
    return vlpet_jax.load_config(f"{CONFIGS[modality]}:{arg}")


# ------------------------------------------------------------- hand counts from SPEC.md formulas


def _dense(fan_in: int, fan_out: int) -> int:
    return fan_in * fan_out + fan_out


def _visual(feat_dim: int, d: int, norm: int) -> int:
    """Linear(feat→d) + norm + Linear(5→d) + norm + Emb_img(2, d) (SPEC.md §2)."""
    return _dense(feat_dim, d) + norm + _dense(5, d) + norm + 2 * d


GATE = {  # parameters of one sub-layer's G (SPEC.md §3 table)
    "large": lambda d, rg: _dense(d, rg) + _dense(rg, d),
    "middle_x": lambda d, rg: _dense(d, 1),
    "middle_y": lambda d, rg: d,
    "small": lambda d, rg: _dense(2 * d, 1),
}


def _vl_pet_trainable(
    level: str, *, d: int, layers: int, r: int, rg: int, rd: int, feat: int, norm: int,
    enc_norms: int,
) -> int:  # fmt: skip
    modification = _dense(d, r) + _dense(r, d)
    encoder = 2 * layers * (modification + GATE[level](d, rg))
    value_adapters = layers * (_dense(d, rd) + _dense(rd, d))
    return _visual(feat, d, norm) + encoder + enc_norms + value_adapters


def bart_base_expected(level: str, feat: int) -> tuple[int, int]:
    """(trainable, all) for VL-PET on BART-base: 6+6 layers, d 768, ffn 3072, vocab 50465."""
    d, f, layers, vocab = 768, 3072, 6, 50465
    trainable = _vl_pet_trainable(
        level, d=d, layers=layers, r=96, rg=96, rd=96, feat=feat, norm=2 * d,
        enc_norms=layers * 2 * (2 * d) + 2 * d,  # self-attn + FFN LayerNorms, layernorm_embedding
    )  # fmt: skip
    attn, ffn, ln = 4 * _dense(d, d), _dense(d, f) + _dense(f, d), 2 * d
    backbone = (
        vocab * d  # tied table, once
        + 2 * 1026 * d  # learned positions (1024 + offset 2), encoder and decoder
        + 2 * ln  # layernorm_embedding of both stacks
        + layers * (attn + ffn + 2 * ln)
        + layers * (2 * attn + ffn + 3 * ln)
    )  # final_logits_bias: a PyTorch buffer, not counted
    frozen_pet_free = backbone - (layers * 2 * (2 * d) + 2 * d)  # minus the trainable norms
    return trainable, frozen_pet_free + trainable


def t5_base_expected(level: str, feat: int) -> tuple[int, int]:
    """(trainable, all) for VL-PET on T5-base: 12+12 layers, no biases, RMSNorm, vocab 32200."""
    d, f, layers, vocab = 768, 3072, 12, 32200
    enc_norms = layers * 2 * d + d  # two RMSNorms per layer + the final one
    trainable = _vl_pet_trainable(
        level, d=d, layers=layers, r=192, rg=192, rd=96, feat=feat, norm=d, enc_norms=enc_norms
    )
    backbone = (
        vocab * d
        + 2 * 32 * 12  # relative position bias tables (32 buckets x 12 heads), enc and dec
        + layers * (4 * d * d + 2 * d * f + 2 * d)
        + layers * (8 * d * d + 2 * d * f + 3 * d)
        + 2 * d  # final norms
    )
    return trainable, backbone - enc_norms + trainable


EXPECTED = {"bart_base": bart_base_expected, "t5_base": t5_base_expected}
FEAT = {"image": 2048, "video": 512}


def test_hand_count_of_vl_pet_large_on_bart_base_image():
    summary = vl_inspect.summary_from_config(_config("image", "backbone=bart_base"))
    trainable = (
        (2048 * 768 + 768) + 2 * 768 + (5 * 768 + 768) + 2 * 768 + 2 * 768  # visual embedding
        + 2 * 6 * (768 * 96 + 96 + 96 * 768 + 768)  # modification down/up, 6 layers x 2
        + 2 * 6 * (768 * 96 + 96 + 96 * 768 + 768)  # large gate down/up
        + 6 * 2 * 2 * 768 + 2 * 768  # encoder LayerNorms + layernorm_embedding
        + 6 * (768 * 96 + 96 + 96 * 768 + 768)  # decoder value adapters
    )  # fmt: skip
    assert summary.trainable == trainable == 6_052_416
    assert summary.total == 145_606_464
    assert summary.line() == (
        "trainable params: 6052416 || all params: 145606464 || trainable%: 4.1567"
    )  # the paper's 4.16%
    assert summary.buffers == 50465  # final_logits_bias, listed but not counted


def test_hand_count_of_vl_pet_large_on_t5_base_image():
    summary = vl_inspect.summary_from_config(_config("image", "backbone=t5_base"))
    trainable = (
        (2048 * 768 + 768) + 768 + (5 * 768 + 768) + 768 + 2 * 768  # visual (RMSNorm: no bias)
        + 2 * 12 * (768 * 192 + 192 + 192 * 768 + 768)  # modification, r = 192
        + 2 * 12 * (768 * 192 + 192 + 192 * 768 + 768)  # large gate, r_g = 192
        + 12 * 2 * 768 + 768  # encoder RMSNorms + final norm
        + 12 * (768 * 96 + 96 + 96 * 768 + 768)  # decoder value adapters, r_d = 96
    )  # fmt: skip
    assert summary.trainable == trainable == 17_582_208
    assert summary.total == 240_521_856
    assert summary.buffers == 0


# ----------------------------------------------------- every method x backbone x modality


@pytest.mark.parametrize("modality", ["image", "video"])
@pytest.mark.parametrize("backbone", ["bart_base", "t5_base"])
@pytest.mark.parametrize("method", known_methods())
def test_every_method_inspects_from_abstract_shapes(method, backbone, modality):
    config = _config(modality, f"backbone={backbone},method={method}")
    boxed = api.abstract_variables(config)["params"]
    summary = vl_inspect.summary(boxed, config)  # the same tree summary_from_config builds
    leaves = flatten_dict(nn.unbox(boxed), sep="/")
    assert sum(r.instances for r in summary.rows) == len(leaves)
    counted = [r for r in summary.rows if not r.buffer]
    assert summary.total == sum(r.count for r in counted)
    assert summary.total + summary.buffers == sum(int(np.prod(v.shape)) for v in leaves.values())
    assert summary.trainable == sum(r.count for r in counted if r.trainable)
    assert summary.buffers == (50465 if backbone == "bart_base" else 0)
    # Every method trains the visual embedding (SPEC.md §5).
    visual = [r for r in summary.rows if r.pattern.startswith("visual_embedding/")]
    assert visual and all(r.trainable for r in visual)
    table = {r.pattern: r for r in summary.rows}
    if method == "full_ft":
        assert summary.trainable == summary.total
    else:
        assert 0 < summary.trainable < 0.25 * summary.total
        assert not table["backbone/shared/embedding"].trainable
        assert table["backbone/shared/embedding"].axes == ("vocab", "embed")
    # Granularity gates on every encoder sub-layer for VL-PET and the `+g_<level>` designs.
    gated = method.startswith("vl_pet_") or "+g_" in method
    layers = 6 if backbone == "bart_base" else 12
    assert len(vl_inspect.gate_modules(boxed)) == (2 * layers if gated else 0)
    if method.startswith("vl_pet_"):  # every granularity against the SPEC.md §3-§4 formulas
        level = method.removeprefix("vl_pet_")
        assert (summary.trainable, summary.total) == EXPECTED[backbone](level, FEAT[modality])
    match = LINE.fullmatch(summary.line())
    assert match and (int(match[1]), int(match[2])) == (summary.trainable, summary.total)
    assert float(match[3]) == pytest.approx(100 * summary.trainable / summary.total, abs=5e-5)


def test_rows_collapse_layers_and_carry_axes():
    summary = vl_inspect.summary_from_config(_config("image", "backbone=t5_base"))
    table = {r.pattern: r for r in summary.rows}
    down = table["backbone/encoder_layers_*/pet_ff/mod/down/kernel"]
    assert (down.instances, down.shape, down.count) == (12, (768, 192), 12 * 768 * 192)
    assert down.trainable and down.axes == ("embed", "pet_rank") and down.dtype == "float32"
    wi = table["backbone/decoder_layers_*/ff/wi/kernel"]
    assert (wi.instances, wi.trainable, wi.axes) == (12, False, ("embed", "mlp"))
    assert not any(re.search(r"layers_\d", p) for p in table)
    text = summary.format()
    assert "backbone/encoder_layers_*/pet_self_attn/gate/up/kernel" in text
    assert text.splitlines()[-1] == summary.line()
    assert summary.format(table=False).splitlines()[-1] == summary.line()


def test_video_differs_from_image_only_by_the_feature_projection():
    image = vl_inspect.summary_from_config(_config("image", "backbone=bart_base"))
    video = vl_inspect.summary_from_config(_config("video", "backbone=bart_base"))
    assert image.trainable - video.trainable == (2048 - 512) * 768
    assert image.total - video.total == (2048 - 512) * 768


def test_rules_override_and_frozen_dtype():
    config = _config("image", "backbone=bart_base")
    with config.unlocked():
        config.pet.rules = ((r"visual_embedding/.*", True), (".*", False))
        config.model.frozen_dtype = "bfloat16"
    summary = vl_inspect.summary_from_config(config)
    assert summary.trainable == _visual(2048, 768, 2 * 768)
    assert {r.dtype for r in summary.rows if r.trainable} == {"float32"}
    assert {r.dtype for r in summary.rows if not r.trainable} == {"bfloat16"}
    leaves = flatten_dict(api.abstract_params(config), sep="/")
    assert leaves["backbone/encoder_layers_0/pet_ff/mod/up/kernel"].dtype == np.dtype("bfloat16")
    with config.unlocked():
        config.pet.rules = ((r"visual_embedding/.*", True), ("nothing/.*", True), (".*", False))
    with pytest.raises(ValueError, match="nothing/"):
        vl_inspect.summary_from_config(config)


def test_unknown_method_in_an_overridden_config_is_a_clear_error():
    config = _config("image", "backbone=bart_base")
    config.pet.method = "vl_pet_huge"
    with pytest.raises(KeyError, match=r"unknown PET method 'vl_pet_huge'.*vl_pet_large"):
        vl_inspect.summary_from_config(config)


def test_unknown_backbone_in_an_overridden_config_is_a_clear_error():
    config = _config("image", "backbone=bart_base")
    config.model.backbone = "bart_huge"
    with pytest.raises(KeyError, match=r"unknown backbone preset 'bart_huge'.*t5_base"):
        vl_inspect.summary_from_config(config)


def test_gate_modules_from_abstract_trees():
    gates = vl_inspect.gate_modules(
        api.abstract_variables(_config("image", "backbone=t5_base"))["params"]
    )
    assert len(gates) == 24
    assert gates[0].endswith("/pet_ff/gate") or gates[0].endswith("/pet_self_attn/gate")
    assert "backbone/encoder_layers_11/pet_self_attn/gate" in gates
    assert vl_inspect.gate_modules(api.abstract_params(_config("image", "method=full_ft"))) == []


# --------------------------------------------------------------------------------- the CLI


def _run_inspect(*args: str) -> str:
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    result = subprocess.run(
        [sys.executable, "-m", "launch.inspect", *args],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return result.stdout


def test_cli_prints_the_table_and_the_line():
    out = _run_inspect("--config", "configs/image_text.py:backbone=bart_base,method=vl_pet_large")
    lines = out.strip().splitlines()
    assert lines[-1] == "trainable params: 6052416 || all params: 145606464 || trainable%: 4.1567"
    assert LINE.fullmatch(lines[-1])
    assert any(line.startswith("path") for line in lines)
    assert any("backbone/encoder_layers_*/pet_ff/mod/down/kernel" in line for line in lines)


def test_cli_applies_overrides():
    out = _run_inspect(
        "--config", "configs/video_text.py:backbone=t5_base,method=vl_pet_small",
        "--config.pet.rank=48", "--notable", "--gates",
    )  # fmt: skip
    line = out.strip().splitlines()[-1]
    trainable, total = t5_base_expected("small", 512)
    smaller = 2 * 12 * (192 - 48) * (2 * 768 + 1)  # modification width 192 -> 48
    assert line == vl_inspect.ParamSummary((), trainable - smaller, total - smaller, 0).line()
    assert "gate modules (24):" in out and "path" not in out


# ------------------------------------------------------------------- real trees and gates


@pytest.fixture(scope="module")
def bart_tiny():
    config = _config("image", "runlocal=True,method=vl_pet_large")
    return config, api.build_model(config), api.init_params(config, jax.random.key(0))


def test_summary_of_a_real_tree_matches_the_abstract_one(bart_tiny):
    config, _, params = bart_tiny
    real = vlpet_jax.inspect.summary(params, config)
    abstract = vl_inspect.summary_from_config(config)
    assert real == abstract
    assert real.rows and 0 < real.trainable < real.total
    # A boxed tree: axis names come from its own boxes.
    boxed = vl_inspect.summary(api.abstract_variables(config)["params"], config)
    assert boxed.line() == real.line()


def test_model_runs_on_initialised_params(bart_tiny):
    config, model, params = bart_tiny
    batch = api.dummy_batch(config, batch_size=2, text_length=5)
    logits = model.apply({"params": params}, batch, train=False)
    assert logits.shape == (2, 2, model.backbone_cfg.vocab_size)
    assert np.isfinite(np.asarray(logits)).all()
    # BART's padding row starts at zero, as Hugging Face initialises it.
    assert not np.asarray(params["backbone"]["shared"]["embedding"][1]).any()


def test_gate_values_of_bart_large(bart_tiny):
    config, model, params = bart_tiny
    gates = vl_inspect.gate_values(model, params, api.dummy_batch(config, batch_size=2))
    layers = api.backbone_config(config).num_encoder_layers
    assert gates.kinds() == ["ff", "self_attn"] and gates.layers() == list(range(layers))
    matrix = gates.mean_matrix()
    assert matrix.shape == (layers, 2)
    # N(0, 0.02) init: the large gate starts near sigmoid(0) = 0.5, but not exactly there.
    assert np.all(np.abs(matrix - 0.5) < 0.1) and not np.all(matrix == 0.5)
    d = model.backbone_cfg.d_model
    n_tokens = 4 + config.model.num_vis_tokens
    assert gates.per_channel("ff").shape == (layers, d)
    assert gates.per_token("self_attn").shape == (layers, n_tokens)


@pytest.mark.parametrize(
    "level,value,channel_dim,token_dim",
    [("large", 0.5, 64, 40), ("middle_x", 0.5, 1, 40), ("middle_y", 1.0, 64, 1),
     ("small", 0.5, 1, 1)],
)  # fmt: skip
def test_gate_values_of_t5_levels_start_at_their_zero_init(level, value, channel_dim, token_dim):
    config = _config("image", f"backbone=t5_base,runlocal=True,method=vl_pet_{level}")
    model = api.build_model(config)
    params = api.init_params(config, jax.random.key(1))
    gates = vl_inspect.gate_values(model, params, api.dummy_batch(config, batch_size=2))
    # T5 zero-initialises every gate output layer and z (SPEC.md §3).
    np.testing.assert_array_equal(gates.mean_matrix(), np.full((2, 2), value, np.float32))
    assert gates.per_channel("ff").shape == (2, channel_dim)
    assert gates.per_token("ff").shape == (2, token_dim)
    assert len(vl_inspect.gate_modules(params)) == 4


def test_gate_values_without_gates_is_an_error(bart_tiny):
    config, model, params = bart_tiny
    plain = VLModel(model.backbone_cfg, num_images=config.model.num_images)  # no PET hooks
    backbone = {k: v for k, v in params["backbone"].items() if not k.startswith("pet_")}
    backbone = {
        k: {n: m for n, m in v.items() if not n.startswith("pet_")} if isinstance(v, dict) else v
        for k, v in backbone.items()
    }
    plain_params = {**params, "backbone": backbone}
    with pytest.raises(ValueError, match="no 'gate_values'"):
        vl_inspect.gate_values(plain, plain_params, api.dummy_batch(config))
    assert vl_inspect.gate_modules(plain_params) == []


# --------------------------------------------------------------- a pretrained checkpoint


def _tokenizer(directory: Path) -> None:
    words = ["<s>", "<pad>", "</s>", "<unk>", "a", "red", "cube", "left", "of"]
    core = Tokenizer(models.WordLevel({w: i for i, w in enumerate(words)}, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token="<pad>", eos_token="</s>", unk_token="<unk>",
        bos_token="<s>",
    ).save_pretrained(directory)  # fmt: skip


def test_init_params_reads_the_backbone_from_a_checkpoint(tmp_path):
    reference = make_bart(tmp_path)
    _tokenizer(tmp_path)
    config = _config("image", f"runlocal=True,checkpoint={tmp_path}")
    cfg = api.backbone_config(config)
    assert (cfg.d_model, cfg.vocab_size) == (32, 9 + 200)  # grown to the VL-T5 tokenizer
    params = api.init_params(config, jax.random.key(0))
    state = {k: v.detach().numpy() for k, v in reference.state_dict().items()}
    table = np.asarray(params["backbone"]["shared"]["embedding"])
    np.testing.assert_array_equal(table[:120], state["model.shared.weight"])
    assert table.shape == (209, 32) and table[120:].std() > 0
    np.testing.assert_array_equal(
        np.asarray(params["backbone"]["encoder_layers_1"]["ff"]["fc1"]["kernel"]),
        state["model.encoder.layers.1.fc1.weight"].T,
    )
    np.testing.assert_array_equal(
        np.asarray(params["backbone"]["final_logits_bias"])[:120],
        state["final_logits_bias"].reshape(-1),
    )
    assert "pet_ff" in params["backbone"]["encoder_layers_0"]
    real = vlpet_jax.inspect.summary(params, config)
    assert real == vl_inspect.summary_from_config(config)
    assert real.buffers == 209

    with config.unlocked():
        config.model.backbone = "t5_tiny"
    with pytest.raises(ValueError, match=r"is a bart model but config\.model\.backbone 't5_tiny'"):
        api.backbone_config(config)


# ------------------------------------------------------------------------------ the package


def test_import_is_light_and_inspect_is_reachable():
    code = (
        "import sys, vlpet_jax; assert 'jax' not in sys.modules, 'jax imported eagerly'; "
        "s = vlpet_jax.inspect.summary; import vlpet_jax.inspect as m; assert m.summary is s; "
        "assert callable(vlpet_jax.load_config) and callable(vlpet_jax.init_params); "
        "assert hasattr(vlpet_jax.checkpoints, 'hf'); print('ok')"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120,
        env={**os.environ, "JAX_PLATFORMS": "cpu"},
    )  # fmt: skip
    assert result.returncode == 0 and result.stdout.strip() == "ok", result.stderr[-2000:]
