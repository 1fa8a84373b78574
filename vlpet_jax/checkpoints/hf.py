"""Hugging Face T5/BART checkpoint directory -> our backbone parameter tree.

Reads `config.json` and the weights tensor by tensor (no second copy of the model in memory),
transposes Linear weights into Dense kernels, handles tied token tables, and optionally grows the
vocabulary the way the VL-T5 code base does (SPEC.md §1): new rows drawn from the backbone's own
initialiser (BART N(0, 0.02), T5 N(0, 1)), `final_logits_bias` padded with zeros.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from flax.traverse_util import flatten_dict, unflatten_dict

from vlpet_jax.checkpoints.hf_names import hf_name_map, tied_aliases
from vlpet_jax.checkpoints.weight_files import WeightFiles
from vlpet_jax.models.backbone import build_backbone
from vlpet_jax.models.config import BackboneConfig

# Leaves whose axis holds the vocabulary, and which axis.
VOCAB_AXIS = {"shared/embedding": 0, "lm_head/kernel": 1, "final_logits_bias": 0}
NEW_ROW_STD = {"t5": 1.0, "bart": 0.02}


def abstract_backbone_params(cfg: BackboneConfig, hooks=None) -> dict[str, Any]:
    """Shapes and dtypes of the backbone's parameters, without allocating them."""
    model = build_backbone(cfg, hooks)
    ids = jnp.ones((1, 2), jnp.int32)
    variables = jax.eval_shape(model.init, jax.random.key(0), ids, ids, ids)
    return nn.unbox(variables["params"])


def _bart_key_normaliser(keys: set[str]) -> Callable[[str], str]:
    """Checkpoints saved from `BartModel` lack the `model.` prefix; map ours onto theirs."""
    if any(k.startswith("model.") for k in keys):
        return lambda k: k
    return lambda k: k.removeprefix("model.")


def resolve_head(cfg: BackboneConfig, weights: WeightFiles) -> BackboneConfig:
    """Decide whether T5's LM head is tied from the weights, as Hugging Face does.

    transformers 5 writes `tie_word_embeddings: true` for every T5; a checkpoint that carries an
    `lm_head.weight` different from `shared.weight` (flan-T5, T5 v1.1) is loaded untied.
    """
    if cfg.family != "t5" or "lm_head.weight" not in weights:
        return cfg
    same = np.array_equal(weights.get("lm_head.weight"), weights.get("shared.weight"))
    return cfg.replace(tie_word_embeddings=same)


def load_backbone(
    checkpoint_dir: str | os.PathLike,
    *,
    vocab_size: int | None = None,
    param_dtype: Any = jnp.float32,
    rng: jax.Array | None = None,
    place: Callable[[str, np.ndarray], jax.Array] | None = None,
) -> tuple[BackboneConfig, dict[str, Any]]:
    """Load a Hugging Face T5/BART directory into (config, params).

    Args:
      checkpoint_dir: holds `config.json` and the weights (see `WeightFiles`).
      vocab_size: grow the token table to this many rows (SPEC.md §1); None keeps it.
      param_dtype: dtype of the returned leaves (e.g. bf16 for a frozen backbone).
      rng: key for the new vocabulary rows (required when the vocabulary grows).
      place: `place(path, array) -> jax.Array` puts each leaf on devices (e.g. with its
        sharding) as soon as it is read; default `jnp.asarray`.
    """
    checkpoint_dir = os.fspath(checkpoint_dir)
    cfg = BackboneConfig.from_pretrained(checkpoint_dir)
    weights = WeightFiles(checkpoint_dir)
    cfg = resolve_head(cfg, weights)
    source_vocab = cfg.vocab_size
    if vocab_size is not None and vocab_size < source_vocab:
        raise ValueError(
            f"{checkpoint_dir}: vocab_size {vocab_size} is smaller than the checkpoint's "
            f"{source_vocab}; only growing the vocabulary is supported"
        )
    target_cfg = cfg.replace(vocab_size=vocab_size or source_vocab)
    grows = target_cfg.vocab_size > source_vocab
    if grows and rng is None:
        raise ValueError("load_backbone: growing the vocabulary needs an `rng` for the new rows")

    names = hf_name_map(cfg)
    to_file_key = _bart_key_normaliser(weights.keys()) if cfg.family == "bart" else (lambda k: k)
    file_keys = weights.keys()
    missing = sorted(
        f"{to_file_key(hf)} (for {ours})"
        for ours, (hf, _) in names.items()
        if to_file_key(hf) not in file_keys
    )
    used = {to_file_key(hf) for hf, _ in names.values()}
    allowed = {to_file_key(a) for a in tied_aliases(cfg)}
    unexpected = sorted(file_keys - used - allowed)
    if missing or unexpected:
        raise KeyError(
            f"{checkpoint_dir}: checkpoint does not match a {cfg.family} backbone; "
            f"missing keys: {missing or 'none'}; unexpected keys: {unexpected or 'none'}"
        )

    abstract = flatten_dict(abstract_backbone_params(target_cfg), sep="/")
    place = place or (lambda _path, array: jnp.asarray(array))
    new_row_keys = dict(zip(VOCAB_AXIS, jax.random.split(rng, len(VOCAB_AXIS)))) if grows else {}
    flat: dict[str, jax.Array] = {}
    for path, (hf_key, transpose) in names.items():
        file_key = to_file_key(hf_key)
        array = weights.get(file_key)
        if path == "final_logits_bias":
            array = array.reshape(-1)
        if transpose:
            array = array.T
        if path in VOCAB_AXIS and grows:
            array = _grow_vocab(path, array, target_cfg, new_row_keys[path])
        expected = tuple(abstract[path].shape)
        if array.shape != expected:
            found = array.T.shape if transpose else array.shape
            raise ValueError(
                f"{weights.file_of(file_key)}: tensor {file_key!r} has shape {found}, expected "
                f"{expected[::-1] if transpose else expected} (our parameter {path})"
            )
        flat[path] = place(path, np.ascontiguousarray(array, dtype=param_dtype))
        del array
    return target_cfg, unflatten_dict(flat, sep="/")


def _grow_vocab(path: str, array: np.ndarray, cfg: BackboneConfig, key: jax.Array) -> np.ndarray:
    axis = VOCAB_AXIS[path]
    extra = cfg.vocab_size - array.shape[axis]
    if path == "final_logits_bias":
        new_rows = np.zeros((extra,), array.dtype)
    else:
        shape = list(array.shape)
        shape[axis] = extra
        std = NEW_ROW_STD[cfg.family]
        new_rows = np.asarray(jax.random.normal(key, shape, jnp.float32) * std, array.dtype)
    return np.concatenate([array, new_rows], axis=axis)


def init_backbone_params(
    cfg: BackboneConfig, rng: jax.Array, param_dtype: Any = jnp.float32
) -> dict[str, Any]:
    """Randomly initialised backbone parameters (the Hugging Face initialisers' scales)."""
    model = build_backbone(cfg, param_dtype=param_dtype)
    ids = jnp.ones((1, 2), jnp.int32)
    params = nn.unbox(model.init(rng, ids, ids, ids)["params"])
    if cfg.family == "bart":
        # HF zeroes the padding row of BART's token table.
        table = params["shared"]["embedding"]
        params["shared"]["embedding"] = table.at[cfg.pad_token_id].set(0)
    return params
