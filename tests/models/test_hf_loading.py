"""Loading Hugging Face checkpoint directories: formats, vocabulary growth, tokenizers, errors."""

import json
import os
import shutil

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import load_file, save_file
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from tests.hf_reference import make_bart, make_t5, padded_batch, torch_logits
from vlpet_jax.checkpoints.hf import load_backbone
from vlpet_jax.checkpoints.tokenizer import load_tokenizer, model_vocab_size
from vlpet_jax.models.backbone import build_backbone


@pytest.fixture(scope="module")
def t5_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("t5")
    return path, make_t5(path, seed=5)


def _logits(cfg, params, ids, mask, dec):
    return np.asarray(build_backbone(cfg).apply({"params": params}, ids, mask, dec))


@pytest.mark.parametrize("layout", ["sharded_safetensors", "pytorch_bin", "sharded_bin"])
def test_other_weight_layouts_load_to_the_same_logits(layout, tmp_path):
    model = make_bart(tmp_path / "src", seed=6)
    kwargs = {"safe_serialization": False} if "bin" in layout else {}
    if "sharded" in layout:
        kwargs["max_shard_size"] = "20KB"
    # transformers 5 only writes safetensors; write the PyTorch layouts by hand where needed.
    out = tmp_path / layout
    try:
        model.save_pretrained(out, **kwargs)
    except TypeError:
        model.save_pretrained(out, max_shard_size=kwargs.get("max_shard_size", "5GB"))
    if "bin" in layout and not any(f.endswith(".bin") for f in os.listdir(out)):
        _rewrite_as_torch_bin(out, sharded="sharded" in layout)
    files = os.listdir(out)
    if layout == "sharded_safetensors":
        assert "model.safetensors.index.json" in files
    else:
        assert any(f.endswith(".bin") for f in files)
    cfg, params = load_backbone(out)
    rng = np.random.default_rng(0)
    ids, mask = padded_batch(rng, cfg.vocab_size, cfg.pad_token_id)
    dec = rng.integers(3, cfg.vocab_size, size=(3, 4))
    np.testing.assert_allclose(
        _logits(cfg, params, ids, mask, dec), torch_logits(model, ids, mask, dec), atol=1e-4
    )


def _rewrite_as_torch_bin(directory, sharded: bool) -> None:
    import torch

    tensors = {}
    for name in os.listdir(directory):
        if name.endswith(".safetensors"):
            tensors.update(load_file(directory / name))
            os.remove(directory / name)
    index = directory / "model.safetensors.index.json"
    if index.exists():
        index.unlink()
    keys = sorted(tensors)
    if not sharded:
        torch.save({k: torch.from_numpy(tensors[k]) for k in keys}, directory / "pytorch_model.bin")
        return
    weight_map = {}
    for shard, part in enumerate((keys[::2], keys[1::2])):
        name = f"pytorch_model-{shard + 1:05d}-of-00002.bin"
        torch.save({k: torch.from_numpy(tensors[k]) for k in part}, directory / name)
        weight_map.update(dict.fromkeys(part, name))
    with open(directory / "pytorch_model.bin.index.json", "w") as f:
        json.dump({"metadata": {}, "weight_map": weight_map}, f)


def test_bf16_parameters_and_vocabulary_growth(t5_dir):
    path, _ = t5_dir
    cfg, params = load_backbone(path)
    grown_cfg, grown = load_backbone(
        path, vocab_size=cfg.vocab_size + 30, param_dtype=jnp.bfloat16, rng=jax.random.key(1)
    )
    assert grown_cfg.vocab_size == cfg.vocab_size + 30
    assert all(leaf.dtype == jnp.bfloat16 for leaf in jax.tree.leaves(grown))
    table, old = np.asarray(grown["shared"]["embedding"], np.float32), params["shared"]["embedding"]
    assert table.shape == (cfg.vocab_size + 30, cfg.d_model)
    np.testing.assert_allclose(table[: cfg.vocab_size], np.asarray(old), rtol=1e-2, atol=1e-2)
    new_rows = table[cfg.vocab_size :]
    assert 0.8 < new_rows.std() < 1.2  # T5's new rows are N(0, 1) (SPEC.md §1)


def test_bart_vocabulary_growth_uses_small_init_and_zero_bias(tmp_path):
    make_bart(tmp_path, seed=2)
    _, grown = load_backbone(tmp_path, vocab_size=200, rng=jax.random.key(0))
    new_rows = np.asarray(grown["shared"]["embedding"])[120:]
    assert new_rows.shape == (80, 32) and 0.015 < new_rows.std() < 0.025
    np.testing.assert_array_equal(np.asarray(grown["final_logits_bias"])[120:], 0.0)
    with pytest.raises(ValueError, match="needs an `rng`"):
        load_backbone(tmp_path, vocab_size=200)
    with pytest.raises(ValueError, match="smaller than the checkpoint"):
        load_backbone(tmp_path, vocab_size=100, rng=jax.random.key(0))


def _copy(src, dst):
    shutil.copytree(src, dst)
    return dst


def test_bad_checkpoints_give_errors_naming_the_problem(t5_dir, tmp_path):
    path, _ = t5_dir
    with pytest.raises(FileNotFoundError, match=r"config\.json"):
        load_backbone(tmp_path / "nowhere")

    no_weights = _copy(path, tmp_path / "no_weights")
    os.remove(no_weights / "model.safetensors")
    with pytest.raises(FileNotFoundError, match="no weights found"):
        load_backbone(no_weights)

    unknown = _copy(path, tmp_path / "unknown")
    config = json.loads((unknown / "config.json").read_text())
    config["model_type"] = "gpt2"
    (unknown / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match="'model_type' is 'gpt2'"):
        load_backbone(unknown)

    weights = load_file(path / "model.safetensors")
    bad_shape = _copy(path, tmp_path / "bad_shape")
    key = "encoder.block.1.layer.1.DenseReluDense.wo.weight"
    save_file({**weights, key: np.zeros((32, 63), np.float32)}, bad_shape / "model.safetensors")
    with pytest.raises(ValueError, match=r"wo.weight' has shape \(32, 63\), expected \(32, 64\)"):
        load_backbone(bad_shape)

    missing = _copy(path, tmp_path / "missing")
    reduced = {k: v for k, v in weights.items() if "block.0.layer.0.SelfAttention.q" not in k}
    reduced["encoder.block.0.layer.0.SelfAttention.surprise"] = np.zeros(3, np.float32)
    save_file(reduced, missing / "model.safetensors")
    with pytest.raises(KeyError) as err:
        load_backbone(missing)
    message = str(err.value)
    assert "encoder.block.0.layer.0.SelfAttention.q.weight" in message
    assert "decoder.block.0.layer.0.SelfAttention.q.weight" in message
    assert "SelfAttention.surprise" in message


def _tiny_tokenizer(directory, family: str) -> None:
    words = ["<pad>", "</s>", "<unk>", "<s>", "a", "red", "cube", "left", "of"]
    if family == "t5":
        words += [f"<extra_id_{i}>" for i in range(99, -1, -1)]
    vocab = {w: i for i, w in enumerate(words)}
    core = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    core.pre_tokenizer = pre_tokenizers.Whitespace()
    special = {"pad_token": "<pad>", "eos_token": "</s>", "unk_token": "<unk>"}
    if family == "bart":
        special["bos_token"] = "<s>"
    PreTrainedTokenizerFast(tokenizer_object=core, **special).save_pretrained(directory)


@pytest.mark.parametrize("family,added", [("t5", 100), ("bart", 200)])
def test_tokenizer_gets_the_vl_special_tokens(family, added, tmp_path):
    _tiny_tokenizer(tmp_path, family)
    tokenizer = load_tokenizer(tmp_path)
    base = 9 + (100 if family == "t5" else 0)
    assert len(tokenizer) == base + added
    # Descending numbering: <vis_extra_id_0> is the last id (the object-order code of object 0).
    assert tokenizer.convert_tokens_to_ids("<vis_extra_id_0>") == len(tokenizer) - 1
    assert tokenizer.convert_tokens_to_ids("<vis_extra_id_99>") == len(tokenizer) - 100
    assert tokenizer("a red cube").input_ids[:3] == [4, 5, 6]
    assert model_vocab_size(32128, tokenizer) == 32128
    assert model_vocab_size(10, tokenizer) == len(tokenizer)


@pytest.mark.parametrize("family", ["t5_v1", "t5_v1_1", "bart"])
def test_exported_checkpoint_loads_in_hugging_face_and_back(family, tmp_path):
    """Our random init, written by `save_backbone`, gives the same logits in PyTorch and in ours."""
    from transformers import AutoModelForSeq2SeqLM

    from vlpet_jax.checkpoints.hf import init_backbone_params
    from vlpet_jax.checkpoints.hf_export import save_backbone
    from vlpet_jax.models.config import BackboneConfig

    common = dict(vocab_size=90, d_model=32, num_heads=4, d_kv=8, d_ff=48,
                  num_encoder_layers=2, num_decoder_layers=1, dropout_rate=0.0)  # fmt: skip
    if family == "bart":
        cfg = BackboneConfig(family="bart", ffn_activation="gelu", layer_norm_eps=1e-5,
                             pad_token_id=1, eos_token_id=2, bos_token_id=0,
                             decoder_start_token_id=2, max_position_embeddings=40,
                             scale_decoder_outputs=False, **common)  # fmt: skip
    else:
        v11 = family == "t5_v1_1"
        cfg = BackboneConfig(family="t5", layer_norm_eps=1e-6, pad_token_id=0, eos_token_id=1,
                             ffn_activation="gated-gelu" if v11 else "relu",
                             tie_word_embeddings=not v11, scale_decoder_outputs=not v11,
                             relative_attention_num_buckets=8, relative_attention_max_distance=16,
                             **common)  # fmt: skip
    params = init_backbone_params(cfg, jax.random.key(3))
    save_backbone(cfg, params, tmp_path / "ckpt")
    reference = AutoModelForSeq2SeqLM.from_pretrained(tmp_path / "ckpt").eval()
    loaded_cfg, loaded = load_backbone(tmp_path / "ckpt")
    assert loaded_cfg == cfg
    rng = np.random.default_rng(0)
    ids, mask = padded_batch(rng, cfg.vocab_size, cfg.pad_token_id, batch=2, length=7)
    dec = rng.integers(3, cfg.vocab_size, size=(2, 5))
    ours = _logits(cfg, loaded, ids, mask, dec)
    np.testing.assert_allclose(ours, _logits(cfg, params, ids, mask, dec), atol=1e-6)
    np.testing.assert_allclose(
        ours, torch_logits(reference, ids, mask, dec), atol=1e-4 * max(1, np.abs(ours).max())
    )
