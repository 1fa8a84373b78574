"""The Python entry points of DESIGN.md "Python API": config -> model -> parameters.

    config = vlpet_jax.load_config("configs/image_text.py:backbone=t5_base,method=vl_pet_large")
    model = vlpet_jax.build_model(config)
    params = vlpet_jax.init_params(config, jax.random.key(0))
    logits = model.apply({"params": params}, batch, train=False)

Everything is derived from the config alone, so the trainer, the evaluator, the converter and the
inspection tools build exactly the same tree: the backbone architecture (a preset, or the
checkpoint's `config.json` with its vocabulary grown to the VL-T5 tokenizer), the PET method's
hooks and its trainability rules (or `config.pet.rules`), and the dtypes.
"""

from __future__ import annotations

import functools
import importlib.util
import itertools
import os
import sys
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import ml_collections
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax.models.config import BackboneConfig
from vlpet_jax.models.presets import get_preset
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import PetMethod, get_method
from vlpet_jax.pet.rules import released_decay_rules
from vlpet_jax.pet.trainability import Rules, trainable_paths

Config = ml_collections.ConfigDict
_REPO_ROOT = Path(__file__).resolve().parents[1]
_config_counter = itertools.count()


# ---------------------------------------------------------------------------------------- config


def load_config(spec: str) -> Config:
    """`"path/to/config.py:key=value,..."` -> the file's `get_config(arg)`, locked.

    The same string `--config` takes. A relative path is looked up in the working directory, then
    in the repository this package lives in, so notebooks elsewhere can say `configs/image_text.py`.
    """
    path_text, _, arg = spec.partition(":")
    path = Path(path_text)
    if not path.is_file() and not path.is_absolute() and (_REPO_ROOT / path).is_file():
        path = _REPO_ROOT / path
    if not path.is_file():
        raise FileNotFoundError(
            f"config file {path_text!r} not found (looked in {os.getcwd()} and {_REPO_ROOT})"
        )
    _make_package_importable(path)
    module_name = f"_vlpet_config_{next(_config_counter)}_{path.stem}"
    module_spec = importlib.util.spec_from_file_location(module_name, path)
    module = importlib.util.module_from_spec(module_spec)
    module_spec.loader.exec_module(module)
    if not hasattr(module, "get_config"):
        raise AttributeError(f"{path}: a config file must define get_config(arg)")
    config = module.get_config(arg or None)
    config.lock()
    return config


def _make_package_importable(path: Path) -> None:
    # Config files import their shared pieces as `from configs import common`; when the package
    # is not installed and the working directory is elsewhere, make its parent importable.
    directory = path.resolve().parent
    if (directory / "__init__.py").is_file() and importlib.util.find_spec(directory.name) is None:
        sys.path.append(str(directory.parent))


def dtype_of(name: str) -> jnp.dtype:
    try:
        return jnp.dtype(name)
    except TypeError:
        raise ValueError(
            f"config.model: {name!r} is not a dtype (e.g. float32, bfloat16)"
        ) from None


# -------------------------------------------------------------------------------------- backbone


@functools.lru_cache(maxsize=8)
def _checkpoint_backbone(checkpoint: str) -> BackboneConfig:
    """The checkpoint's architecture with its head resolved and the vocabulary grown to cover
    the VL-T5 tokenizer (SPEC.md §1): the shape `load_backbone` will produce."""
    from vlpet_jax.checkpoints.hf import resolve_head
    from vlpet_jax.checkpoints.tokenizer import load_tokenizer, model_vocab_size
    from vlpet_jax.checkpoints.weight_files import WeightFiles

    cfg = BackboneConfig.from_pretrained(checkpoint)
    cfg = resolve_head(cfg, WeightFiles(checkpoint))
    vocab = model_vocab_size(cfg.vocab_size, load_tokenizer(checkpoint))
    return cfg.replace(vocab_size=vocab)


def backbone_config(config: Config) -> BackboneConfig:
    """The architecture: `config.model.checkpoint`'s when set, else the preset's; dropout from
    `config.model.dropout` (VL-T5 sets it on every dropout of the backbone)."""
    preset = get_preset(config.model.backbone)
    if config.model.checkpoint:
        cfg = _checkpoint_backbone(os.path.abspath(config.model.checkpoint))
        if cfg.family != preset.family:
            raise ValueError(
                f"config.model.checkpoint {config.model.checkpoint!r} is a {cfg.family} model but "
                f"config.model.backbone {config.model.backbone!r} is {preset.family}; the recipe "
                f"(PET sizes, learning rate) follows the backbone, so pick a {cfg.family} preset"
            )
    else:
        cfg = preset
    rate = float(config.model.dropout)
    return cfg.replace(dropout_rate=rate, attention_dropout_rate=rate, activation_dropout_rate=rate)


# ---------------------------------------------------------------------------------------- method


def _pet_options(config: Config) -> dict[str, Any]:
    """`config.pet` as the plain mapping methods read their sizes from (`pet_option`)."""
    options = config.pet.to_dict()
    options.pop("method", None)
    options.pop("rules", None)
    return options


def pet_method(config: Config, backbone: BackboneConfig | None = None) -> PetMethod:
    """The registered method `config.pet.method`, sized by `config.pet` for the backbone."""
    backbone = backbone or backbone_config(config)
    return get_method(config.pet.method, backbone, _pet_options(config))


def trainability_rules(config: Config, method: PetMethod | None = None) -> Rules:
    """`config.pet.rules` when set (a sequence of (regex, trainable) pairs), else the method's."""
    override = config.pet.rules
    if override is None:
        return (method or pet_method(config)).rules
    return _rule_pairs(override, "config.pet.rules")


def decay_rules(config: Config, method: PetMethod | None = None) -> Rules:
    """`config.optim.decay_rules` when set (a sequence of (regex, decay) pairs), else the
    released weight-decay set of the method's backbone family (SPEC.md §8)."""
    override = config.optim.decay_rules
    if override is not None:
        return _rule_pairs(override, "config.optim.decay_rules")
    method = method or pet_method(config)
    return released_decay_rules(backbone_config(config), method.decay_exceptions)


def _rule_pairs(override: Any, field: str) -> Rules:
    rules = []
    for index, rule in enumerate(override):
        if len(rule) != 2 or not isinstance(rule[0], str) or not isinstance(rule[1], bool):
            raise ValueError(f"{field}[{index}] is {rule!r}; expected a (regex, True/False) pair")
        rules.append((rule[0], rule[1]))
    return rules


def build_model(config: Config) -> VLModel:
    """The VL encoder-decoder with the method's PET hooks attached."""
    backbone = backbone_config(config)
    method = pet_method(config, backbone)
    return VLModel(
        backbone_cfg=backbone,
        hooks=method.hooks,
        num_images=config.model.num_images,
        dtype=dtype_of(config.model.dtype),
        param_dtype=dtype_of(config.model.param_dtype),
    )


def dummy_batch(config: Config, batch_size: int = 1, text_length: int = 4) -> dict[str, Any]:
    """A batch of the right structure for initialisation and shape inference (zeros and ones)."""
    b, v = batch_size, config.model.num_vis_tokens
    ids = jnp.ones((b, text_length), jnp.int32)
    return {
        "input_ids": ids,
        "attention_mask": ids,
        "vis_feats": jnp.zeros((b, v, config.model.feat_dim), jnp.float32),
        "decoder_input_ids": jnp.ones((b, 2), jnp.int32),
        "task_ids": jnp.zeros((b,), jnp.int32),
    }


# ------------------------------------------------------------------------------------ parameters


def abstract_variables(config: Config) -> dict[str, Any]:
    """`model.init`'s variables as shapes (`{"params": ...}`), still in their
    `LogicallyPartitioned` boxes (axis names for sharding and inspection); no memory is
    allocated. Dtypes are `param_dtype`."""
    model = build_model(config)
    return jax.eval_shape(model.init, jax.random.key(0), dummy_batch(config))


def abstract_params(config: Config) -> dict[str, Any]:
    """`jax.ShapeDtypeStruct` for every parameter `init_params` returns (frozen leaves in
    `config.model.frozen_dtype`), without allocating any."""
    params = nn.unbox(abstract_variables(config)["params"])
    return cast_frozen(params, trainability_rules(config), dtype_of(config.model.frozen_dtype))


# Below this many parameters `model.init` runs as one jitted program (its compile is shorter than
# op-by-op dispatch: ~4 s vs ~13 s for the tiny presets); above it op-by-op wins, because a jitted
# init of a base-size model spends most of its time compiling a program that runs once.
_JIT_INIT_MAX_PARAMS = 20_000_000
# The init program runs once, so XLA's cheapest backend optimisation is the right trade on CPU: it
# compiles the tiny presets' init in 3.7 s instead of 6.7 s (2 cores), a cost every run pays.
# Accelerator backends keep their defaults (their compile of this program is not the bottleneck).
_CPU_INIT_COMPILER_OPTIONS = {"xla_backend_optimization_level": 0}


def _run_init(model: nn.Module, rng: jax.Array, batch: dict[str, Any]) -> dict[str, Any]:
    cfg = model.backbone_cfg
    layers = cfg.num_encoder_layers + cfg.num_decoder_layers
    # The backbone's size from its config (token table + attention and FFN matrices), no trace.
    approx_params = cfg.vocab_size * cfg.d_model + layers * (
        4 * cfg.d_model**2 + 2 * cfg.d_model * cfg.d_ff
    )
    if approx_params > _JIT_INIT_MAX_PARAMS:
        return model.init(rng, batch)
    options = _CPU_INIT_COMPILER_OPTIONS if jax.default_backend() == "cpu" else None
    return jax.jit(model.init).lower(rng, batch).compile(options)(rng, batch)


def init_params(config: Config, rng: jax.Array, pet_dir: str | None = None) -> dict[str, Any]:
    """Every parameter: PET modules and the visual embedding initialised as the released code
    does, the backbone from `config.model.checkpoint` when set (vocabulary grown to the
    tokenizer, new rows random), otherwise random; the visual embedding from the checkpoint's
    `visual_embedding.safetensors` when it has one. Frozen leaves come in `frozen_dtype`."""
    if pet_dir is not None:  # a launch.export PET directory on top (vlpet_jax.pet_export)
        from vlpet_jax.pet_export import load_pet

        return load_pet(init_params(config, rng), config, pet_dir)
    model = build_model(config)
    init_rng, vocab_rng = jax.random.split(rng)
    params = nn.unbox(_run_init(model, init_rng, dummy_batch(config))["params"])
    cfg = model.backbone_cfg
    if config.model.checkpoint:
        from vlpet_jax.checkpoints.hf import load_backbone

        _, loaded = load_backbone(
            config.model.checkpoint,
            vocab_size=cfg.vocab_size,
            param_dtype=dtype_of(config.model.param_dtype),
            rng=vocab_rng,
        )
        params["backbone"] = _merge_backbone(params["backbone"], loaded, config.model.checkpoint)
        from vlpet_jax.checkpoints.visual_weights import load_visual_embedding

        # A vision-and-language backbone's own visual embedding, when saved next to it.
        visual = load_visual_embedding(config.model.checkpoint, cfg, params["visual_embedding"])
        if visual is not None:
            params["visual_embedding"] = visual
    elif cfg.family == "bart":
        # Hugging Face zeroes BART's padding row at initialisation.
        table = params["backbone"]["shared"]["embedding"]
        params["backbone"]["shared"]["embedding"] = table.at[cfg.pad_token_id].set(0)
    return cast_frozen(params, trainability_rules(config), dtype_of(config.model.frozen_dtype))


def is_pet_path(path: str) -> bool:
    """Whether a '/'-joined parameter path lies inside a PET module (a `pet_*` scope)."""
    return any(part.startswith("pet_") for part in path.split("/"))


def _merge_backbone(random: Mapping, loaded: Mapping, source: str) -> dict:
    """`random` with every non-PET leaf replaced by the checkpoint's; the two must agree on
    which leaves exist and on their shapes."""
    flat_random = flatten_dict(dict(random), sep="/")
    flat_loaded = flatten_dict(dict(loaded), sep="/")
    wanted = {p for p in flat_random if not is_pet_path(p)}
    missing, extra = sorted(wanted - flat_loaded.keys()), sorted(flat_loaded.keys() - wanted)
    if missing or extra:
        raise ValueError(
            f"{source}: backbone parameters do not match the model; missing: "
            f"{missing[:10] or 'none'}; unexpected: {extra[:10] or 'none'}"
        )
    for path, value in flat_loaded.items():
        if value.shape != flat_random[path].shape:
            raise ValueError(
                f"{source}: {path} has shape {value.shape}, the model expects "
                f"{flat_random[path].shape}"
            )
    return unflatten_dict({**flat_random, **flat_loaded}, sep="/")


def cast_frozen(params: dict, rules: Rules, frozen_dtype: Any) -> dict:
    """Frozen leaves in `frozen_dtype` (arrays or ShapeDtypeStructs); trainable ones untouched."""
    decision = trainable_paths(params, rules)
    flat = flatten_dict(params, sep="/")
    out = {}
    for path, leaf in flat.items():
        if decision[path] or np.dtype(leaf.dtype) == np.dtype(frozen_dtype):
            out[path] = leaf
        elif isinstance(leaf, jax.ShapeDtypeStruct):
            out[path] = jax.ShapeDtypeStruct(leaf.shape, frozen_dtype, sharding=leaf.sharding)
        else:
            out[path] = leaf.astype(frozen_dtype)
    return unflatten_dict(out, sep="/")
