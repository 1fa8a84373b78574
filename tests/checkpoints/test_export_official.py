"""Exporting to the released PyTorch format (`checkpoints/export_official.py`), the reverse of the
importer: a tree of our own model, with every leaf random and nonzero, is written as a `.pth`,
read back with `torch.load`, run through the independent float64 NumPy forward of the original
model (tests/checkpoints/official_reference.py) and imported again."""

from __future__ import annotations

import jax
import numpy as np
import pytest
import torch
from flax.traverse_util import flatten_dict, unflatten_dict

import vlpet_jax.pet.adapters
import vlpet_jax.pet.lora  # noqa: F401  (registers lora)
from tests.checkpoints.official_reference import Arch, Reference, make_batch, official_state_dict
from vlpet_jax.checkpoints.export_official import official_state_dict as export_state_dict
from vlpet_jax.checkpoints.export_official import save_official
from vlpet_jax.checkpoints.official import abstract_vl_params, load_official
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import get_method

TOLERANCE = 3e-5
LEVELS = ("large", "middle_x", "middle_y", "small")
CASES = [(family, f"vl_pet_{level}") for family in ("bart", "t5") for level in LEVELS]
CASES += [("bart", "vl_adapter"), ("bart", "lora")]


def _random_tree(arch: Arch, hooks, seed: int) -> dict:
    """A tree of our model's shapes with every leaf random and nonzero (zero-inits included),
    scaled like the reference's released-format weights so activations stay O(1)."""
    rng = np.random.default_rng(seed)
    flat = {}
    for path, leaf in abstract_vl_params(arch.backbone_cfg(), hooks, 2, arch.feat_dim).items():
        shape = leaf.shape
        if path.endswith("/scale"):
            value = 1.0 + rng.normal(0.0, 0.1, shape)
        elif path.endswith("/kernel"):
            value = rng.normal(0.0, shape[0] ** -0.5, shape)
        else:  # biases, embeddings, VL-PET's z
            value = rng.normal(0.0, 0.1 if len(shape) == 1 else 0.5, shape)
        flat[path] = value.astype(np.float32)
    return unflatten_dict(flat, sep="/")


def _logits(model: VLModel, params: dict, batch: dict) -> np.ndarray:
    # The cheapest XLA backend optimisation: this program runs once (compile 2x faster on CPU).
    compiled = jax.jit(model.apply).lower({"params": params}, batch)
    options = {"xla_backend_optimization_level": 0} if jax.default_backend() == "cpu" else None
    return np.asarray(compiled.compile(options)({"params": params}, batch), np.float64)


@pytest.mark.parametrize("family,method", CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_export_matches_reference_forward_and_imports_back(family, method, tmp_path):
    arch = Arch(family)
    cfg = arch.backbone_cfg()
    hooks = get_method(method, cfg, arch.pet_sizes(method)).hooks
    model = VLModel(cfg, hooks)
    params = _random_tree(arch, hooks, seed=CASES.index((family, method)))

    path = save_official(export_state_dict(params, cfg, method, hooks), tmp_path / "ours.pth")
    state = torch.load(path, map_location="cpu", weights_only=True)
    assert all(key.startswith("module.") for key in state)
    state = {k: v.numpy() for k, v in state.items()}

    text_len = 40 if family == "t5" else 12  # T5: reach the logarithmic position buckets
    batch = make_batch(arch, seed=5, two_images=True, text_len=text_len)
    want = Reference(state, arch, method).logits(batch)
    got = _logits(model, params, batch)
    error = float(np.max(np.abs(got - want)))
    assert error < TOLERANCE, error

    imported = flatten_dict(load_official(path, cfg, method, arch.pet_sizes(method)), sep="/")
    flat = flatten_dict(params, sep="/")
    assert sorted(imported) == sorted(flat)
    for key, value in flat.items():
        np.testing.assert_array_equal(np.asarray(imported[key]), value, err_msg=key)


@pytest.mark.parametrize("family,method", CASES, ids=[f"{f}-{m}" for f, m in CASES])
def test_import_then_export_gives_the_released_state_dict(family, method, tmp_path):
    """Key for key and value for value what the original trainer saves: `module.`, the five
    copies of the tied table, every task alias of a single adapter."""
    arch = Arch(family)
    released = official_state_dict(arch, method, seed=3)
    path = tmp_path / "released.safetensors"
    save_official(released, path)
    cfg = arch.backbone_cfg()
    hooks = get_method(method, cfg, arch.pet_sizes(method)).hooks
    params = load_official(path, cfg, method, arch.pet_sizes(method))
    exported = export_state_dict(params, cfg, method, hooks)
    assert sorted(exported) == sorted(released)
    for key, value in released.items():
        np.testing.assert_array_equal(exported[key], value, err_msg=key)


def test_export_of_the_wrong_method_names_the_mismatch():
    arch = Arch("bart")
    cfg = arch.backbone_cfg()
    hooks = get_method("vl_pet_large", cfg, arch.pet_sizes("vl_pet_large")).hooks
    params = _random_tree(arch, hooks, seed=0)
    small = get_method("vl_pet_small", cfg, arch.pet_sizes("vl_pet_small")).hooks
    with pytest.raises(ValueError, match=r"not a 'vl_pet_small' model of this backbone: missing "
                       r"\['backbone/encoder_layers_0/pet_ff/gate/proj/bias'"):  # fmt: skip
        export_state_dict(params, cfg, "vl_pet_small", small)
