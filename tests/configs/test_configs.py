"""The experiment configs: the paper's recipe per backbone/method/modality, the config-string
arguments, `--config.a.b=v` overrides, runlocal, presets and the errors users see."""

from __future__ import annotations

import math
import re
from pathlib import Path

import ml_collections
import pytest
from absl import flags
from ml_collections import config_flags

import vlpet_jax
from configs import image_text, video_text
from vlpet_jax.config_args import parse_arg
from vlpet_jax.data.multitask import IMAGE_BATCH_RATIOS, task_batch_sizes
from vlpet_jax.data.tasks import get_task
from vlpet_jax.models.presets import get_preset, known_presets

REPO = Path(__file__).resolve().parents[2]


# ------------------------------------------------------------------------------- recipe values


def test_image_bart_vl_pet_recipe():
    c = image_text.get_config("backbone=bart_base,method=vl_pet_large")
    assert (c.model.backbone, c.model.checkpoint) == ("bart_base", "")
    assert (c.model.feat_dim, c.model.num_vis_tokens, c.model.num_images) == (2048, 36, 2)
    assert c.pet.method == "vl_pet_large"
    assert (c.pet.rank, c.pet.num_heads, c.pet.gate_rank, c.pet.value_rank) == (96, 4, 96, 96)
    assert c.pet.scale == 1.0 and c.pet.rules is None
    assert (c.pet.lora_rank, c.pet.lora_alpha, c.pet.lora_dropout) == (128, 32.0, 0.1)
    assert (c.pet.prompt_length, c.pet.prompt_hidden) == (40, 800)
    assert (c.pet.adapter_reduction, c.pet.compacter_n) == (8, 2)
    assert c.optim.lr == 1e-3 and c.data.batch_size == 500
    assert (c.optim.b1, c.optim.b2, c.optim.eps, c.optim.weight_decay) == (0.9, 0.999, 1e-6, 0.01)
    assert (c.optim.warmup_ratio, c.optim.grad_clip_norm) == (0.1, 5.0)
    assert c.optim.adam_eps_style == "released" and c.optim.decay_rules is None
    assert c.pet.gate_pooling == "released"
    assert c.train.epochs == 20 and c.train.seed == 42
    assert c.data.tasks == ("vqa", "gqa", "nlvr", "caption")
    assert c.data.gqa.prompt == "gpa: "
    assert (c.data.vqa.max_input_len, c.data.vqa.max_target_len) == (20, 10)
    assert c.data.caption.max_target_len == 40 and c.data.caption.max_input_len is None
    assert (c.eval.vqa.mode, c.eval.vqa.num_beams, c.eval.vqa.max_length) == ("generate", 1, 20)
    assert (c.eval.caption.num_beams, c.eval.caption.max_length) == (5, 40)
    assert c.eval.nlvr.mode == "score"
    assert c.eval.no_repeat_ngram_size == 3
    assert (c.mesh.data, c.mesh.fsdp, c.mesh.tensor) == (-1, 1, 1)


def test_image_t5_recipe():
    c = image_text.get_config("backbone=t5_base,method=vl_pet_small")
    assert c.optim.lr == 3e-4 and c.data.batch_size == 300
    assert (c.pet.rank, c.pet.gate_rank, c.pet.value_rank, c.pet.scale) == (192, 192, 96, 0.3)
    assert c.eval.no_repeat_ngram_size == 0


@pytest.mark.parametrize(
    "module,backbone,method,lr",
    [
        (image_text, "bart_base", "full_ft", 1e-4),
        (image_text, "bart_base", "vl_pet_middle_y", 1e-3),
        (image_text, "t5_base", "full_ft", 1e-4),
        (video_text, "bart_base", "vl_pet_large", 7e-4),
        (video_text, "bart_base", "full_ft", 1e-4),
    ],
)
def test_learning_rate_follows_the_table(module, backbone, method, lr):
    assert module.get_config(f"backbone={backbone},method={method}").optim.lr == lr


def test_video_recipe():
    c = video_text.get_config("backbone=bart_base,method=vl_pet_large")
    assert (c.model.feat_dim, c.model.num_vis_tokens) == (512, 64)
    assert c.data.batch_size == 50 and c.optim.lr == 7e-4
    assert c.data.tasks == ("tvqa", "how2qa", "tvc", "yc2c")
    assert all(c.data[t].batch_ratio == (1, 1) for t in c.data.tasks)
    assert all(c.data[t].max_input_len == 600 for t in c.data.tasks)
    assert c.data.tvqa.prompt == "tvqa: "
    assert c.pet.rank == 96


def test_image_batch_ratios_give_spec_batches_and_agree_with_the_data_pipeline():
    c = image_text.get_config()
    sizes = {t: c.data.batch_size * c.data[t].batch_ratio[0] // c.data[t].batch_ratio[1]
             for t in c.data.tasks}  # fmt: skip
    # SPEC.md §6: VQA B, GQA ⌊B·100/60⌋, NLVR2 ⌊B·20/60⌋, COCO ⌊B·50/60⌋.
    assert sizes == {"vqa": 500, "gqa": 833, "nlvr": 166, "caption": 416}
    assert sizes == task_batch_sizes(c.data.tasks, c.data.batch_size)
    assert {t: c.data[t].batch_ratio for t in c.data.tasks} == IMAGE_BATCH_RATIOS


@pytest.mark.parametrize("module", [image_text, video_text])
def test_token_limits_agree_with_the_task_registry(module):
    c = module.get_config()
    for task in c.data.tasks:
        spec = get_task(task)
        assert c.data[task].max_input_len == spec.max_input_len, task
        assert c.data[task].max_target_len == spec.max_target_len, task


def _floats(cfg: ml_collections.ConfigDict, prefix: str = "") -> dict[str, object]:
    out = {}
    for key, value in cfg.items():
        if isinstance(value, ml_collections.ConfigDict):
            out.update(_floats(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def test_float_fields_are_floats_so_overrides_keep_their_type():
    values = _floats(image_text.get_config())
    for name in ("optim.lr", "optim.eps", "optim.weight_decay", "optim.warmup_ratio",
                 "optim.grad_clip_norm", "pet.scale", "pet.lora_alpha", "pet.lora_dropout",
                 "model.dropout", "eval.length_penalty"):  # fmt: skip
        assert type(values[name]) is float, name


# ----------------------------------------------------------------------------- runlocal


@pytest.mark.parametrize("module", [image_text, video_text])
@pytest.mark.parametrize("backbone,tiny", [("bart_base", "bart_tiny"), ("t5_base", "t5_tiny")])
def test_runlocal_shrinks_everything(module, backbone, tiny):
    full = module.get_config(f"backbone={backbone}")
    local = module.get_config(f"backbone={backbone},runlocal=True")
    assert local.model.backbone == tiny
    assert get_preset(tiny).d_model < get_preset(backbone).d_model
    assert local.data.batch_size < full.data.batch_size
    assert local.train.epochs == 2 < full.train.epochs
    assert local.pet.rank < full.pet.rank and local.pet.prompt_length < full.pet.prompt_length
    assert local.pet.scale == full.pet.scale  # s is the family's, not a size
    assert local.optim.lr == full.optim.lr


def test_runlocal_video_shortens_inputs():
    assert video_text.get_config("runlocal").data.tvqa.max_input_len == 128


# ------------------------------------------------------------------------------ arguments


def test_config_string_arguments():
    c = image_text.get_config("backbone=t5_base, method=vl_pet_middle_x ,seed=43,tasks=vqa+nlvr")
    assert (c.model.backbone, c.pet.method, c.train.seed) == ("t5_base", "vl_pet_middle_x", 43)
    assert c.data.tasks == ("vqa", "nlvr")
    c = image_text.get_config("checkpoint=/ckpt/bart-base,runlocal=False")
    assert c.model.checkpoint == "/ckpt/bart-base" and c.model.backbone == "bart_base"


def test_parse_arg_types_and_errors():
    args = parse_arg("flag,n=3,x=2,name=a=b", flag=False, n=1, x=0.5, name="", names=("a",))
    assert (args.flag, args.n, args.x, args.name, args.names) == (True, 3, 2.0, "a=b", ("a",))
    assert parse_arg("names=b+c", names=("a",)).names == ("b", "c")
    assert type(args.x) is float
    assert parse_arg(None, n=1).n == 1 and parse_arg("", n=1).n == 1
    with pytest.raises(ValueError, match=r"unknown config argument 'm'.*accepted: n"):
        parse_arg("m=1", n=1)
    with pytest.raises(ValueError, match="given twice"):
        parse_arg("n=1,n=2", n=1)
    with pytest.raises(ValueError, match="n='x': expected an integer"):
        parse_arg("n=x", n=1)
    with pytest.raises(ValueError, match="expected a boolean"):
        parse_arg("flag=maybe", flag=False)
    with pytest.raises(ValueError, match="needs a value"):
        parse_arg("n", n=1)


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(ValueError, match=r"unknown PET method 'vl_pet_huge'.*vl_pet_large"):
        image_text.get_config("method=vl_pet_huge")


def test_unknown_backbone_lists_the_presets():
    with pytest.raises(ValueError, match=r"unknown backbone preset 't5_huge'.*bart_base.*t5_base"):
        video_text.get_config("backbone=t5_huge")


def test_unknown_task_is_an_error():
    with pytest.raises(ValueError, match=r"unknown tasks \['tvqa'\].*vqa"):
        image_text.get_config("tasks=vqa+tvqa")


# ------------------------------------------------------------------------------ overrides


def _parse_flags(*argv: str) -> ml_collections.ConfigDict:
    values = flags.FlagValues()
    argv = ["prog", *argv]
    # Overrides are read from `sys_argv` (default: the process's own command line).
    config_flags.DEFINE_config_file("config", None, "config", flag_values=values, sys_argv=argv)
    values(argv)
    return values.config


def test_command_line_overrides_reach_every_section(monkeypatch):
    monkeypatch.chdir(REPO)
    c = _parse_flags(
        "--config=configs/image_text.py:backbone=t5_base,method=vl_pet_large",
        "--config.optim.lr=1",
        "--config.pet.rank=48",
        "--config.model.frozen_dtype=bfloat16",
        "--config.data.tasks=('vqa', 'gqa')",
        "--config.data.gqa.prompt=gqa: ",
        "--config.data.caption.max_input_len=30",
        "--config.pet.rules=(('visual_embedding/.*', True), ('.*', False))",
        "--config.mesh.fsdp=4",
        "--config.train.epochs=3",
    )
    assert c.optim.lr == 1.0 and type(c.optim.lr) is float
    assert c.pet.rank == 48 and c.model.frozen_dtype == "bfloat16"
    assert c.data.tasks == ("vqa", "gqa") and c.data.gqa.prompt == "gqa: "
    assert c.data.caption.max_input_len == 30
    assert c.pet.rules == (("visual_embedding/.*", True), (".*", False))
    assert (c.mesh.fsdp, c.train.epochs) == (4, 3)


def test_override_of_a_missing_field_fails(monkeypatch):
    monkeypatch.chdir(REPO)
    with pytest.raises(AttributeError, match="lr_typo"):
        _parse_flags("--config=configs/image_text.py", "--config.optim.lr_typo=1")


def test_load_config_by_path_from_anywhere(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    c = vlpet_jax.load_config("configs/video_text.py:backbone=t5_base,method=vl_pet_small")
    assert (c.model.backbone, c.pet.method, c.model.feat_dim) == ("t5_base", "vl_pet_small", 512)
    c.pet.rank = 8  # existing fields stay editable
    with pytest.raises(AttributeError):
        c.pet.rnak = 8  # a locked config refuses new (misspelt) fields
    with pytest.raises(FileNotFoundError, match=r"nowhere\.py"):
        vlpet_jax.load_config("configs/nowhere.py")


# -------------------------------------------------------------------------------- presets


def test_presets_have_the_spec_sizes():
    bart, t5, flan = get_preset("bart_base"), get_preset("t5_base"), get_preset("flan_t5_base")
    assert (bart.vocab_size, bart.d_model, bart.num_heads, bart.d_kv, bart.d_ff) == (
        50465, 768, 12, 64, 3072)  # fmt: skip
    assert (bart.num_encoder_layers, bart.num_decoder_layers) == (6, 6)
    assert (bart.family, bart.ffn_activation, bart.layer_norm_eps) == ("bart", "gelu", 1e-5)
    assert (bart.decoder_start_token_id, bart.pad_token_id) == (2, 1)
    assert (t5.vocab_size, t5.num_encoder_layers, t5.ffn_activation) == (32200, 12, "relu")
    assert t5.tie_word_embeddings and t5.scale_decoder_outputs and t5.layer_norm_eps == 1e-6
    assert (flan.ffn_activation, flan.tie_word_embeddings, flan.scale_decoder_outputs) == (
        "gated-gelu", False, False)  # fmt: skip
    for name in ("bart_tiny", "t5_tiny"):
        tiny = get_preset(name)
        assert (tiny.d_model, tiny.num_encoder_layers, tiny.num_heads, tiny.d_ff) == (64, 2, 4, 128)
        # Room for the 100 object-order codes read from the end of the table.
        assert tiny.vocab_size >= 300


def test_unknown_preset_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        get_preset("bart_large")
    assert all(name in str(err.value) for name in known_presets())


def test_tiny_pet_sizes_fit_the_tiny_width():
    c = image_text.get_config("backbone=t5_tiny")
    d = get_preset("t5_tiny").d_model
    assert c.pet.rank < d and c.pet.rank % c.pet.num_heads == 0
    assert math.isclose(c.pet.scale, 0.3)


def test_every_option_a_method_reads_is_a_config_field():
    """A size a method reads but the config lacks could not be set with --config.pet.<key>."""
    from vlpet_jax.pet import gated_designs, methods

    pet_dir = Path(vlpet_jax.__file__).parent / "pet"
    read = set()
    for source in pet_dir.glob("*.py"):
        read |= set(re.findall(r'pet_option\(\s*\w+,\s*"(\w+)"', source.read_text()))
    read |= {k for sizes in methods.VL_PET_DEFAULTS.values() for k in sizes}
    read |= {k for sizes in gated_designs.GATE_DEFAULTS.values() for k in sizes}
    assert {"rank", "lora_rank", "adapter_reduction"} <= read  # the scan finds what it should
    for module in (image_text, video_text):
        for backbone in ("bart_base", "t5_base", "bart_tiny"):
            pet = module.get_config(f"backbone={backbone}").pet
            assert read <= set(pet.keys()), sorted(read - set(pet.keys()))
