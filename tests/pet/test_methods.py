"""Every registered PET method, on tiny T5 and BART: what trains, what moves, what step 0 computes.

The expectations below are written from SPEC.md §3-§5 as data (glob families of parameter paths
and the module layout at each hook site), independently of the methods' regex rules.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from functools import cache

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax.traverse_util import flatten_dict, unflatten_dict

from tests.pet.tiny import (
    BATCH,
    D_MODEL,
    DEC_LEN,
    TEXT_LEN,
    VIS_LEN,
    VOCAB,
    tiny_batch,
    tiny_config,
)
from vlpet_jax.models.hooks import PetHooks, Site
from vlpet_jax.models.vl import VLModel
from vlpet_jax.pet.registry import get_method, known_methods, register
from vlpet_jax.pet.trainability import (
    merge_params,
    split_params,
    trainable_mask,
    trainable_paths,
)

FAMILIES = ("t5", "bart")
LEVELS = ("large", "middle_x", "middle_y", "small")
# Small sizes through the shared `pet` mapping (the keys configs/common.py writes); every
# bottleneck is 8 wide (d_model / 4), so modules share op shapes.
PET = dict(
    rank=8, num_heads=4, gate_rank=8, value_rank=8, adapter_reduction=4, compacter_reduction=4,
    compacter_n=2, hyper_reduction=4, hyper_task_dim=16, hyper_hidden_dim=8,
    hyper_projected_dim=8, lora_rank=8, lora_alpha=16.0, prompt_length=3, prompt_hidden=8,
)  # fmt: skip

# ---------------------------------------------------------------- expected trainable sets

# Families of parameter paths (fnmatch globs over '/'-joined paths), per backbone family.
PATH_FAMILIES = {
    # Every parameter; BART's final_logits_bias is a PyTorch buffer (never trained by the release).
    "everything": {"t5": ["*"], "bart": ["backbone/*/*", "visual_embedding/*"]},
    "visual": {"t5": ["visual_embedding/*"], "bart": ["visual_embedding/*"]},
    "pet": {"t5": ["pet_*", "*/pet_*"], "bart": ["pet_*", "*/pet_*"]},
    "encoder_norms": {
        "t5": [
            "backbone/encoder_layers_*/self_attn_norm/scale",
            "backbone/encoder_layers_*/ff_norm/scale",
            "backbone/encoder_final_norm/scale",
        ],
        "bart": [
            "backbone/encoder_layers_*/self_attn_norm/*",
            "backbone/encoder_layers_*/ff_norm/*",
            "backbone/encoder_layernorm_embedding/*",
        ],
    },
    "decoder_norms": {
        "t5": [
            "backbone/decoder_layers_*/self_attn_norm/scale",
            "backbone/decoder_layers_*/cross_attn_norm/scale",
            "backbone/decoder_layers_*/ff_norm/scale",
            "backbone/decoder_final_norm/scale",
        ],
        "bart": [
            "backbone/decoder_layers_*/self_attn_norm/*",
            "backbone/decoder_layers_*/cross_attn_norm/*",
            "backbone/decoder_layers_*/ff_norm/*",
            "backbone/decoder_layernorm_embedding/*",
        ],
    },
    # Every bias of the backbone, linear and norm (T5 has none).
    "biases": {"t5": [], "bart": ["backbone/*/bias"]},
    # The released code's `"bias" in name` also picks T5's `relative_attention_bias` tables.
    "relative_bias": {
        "t5": [
            "backbone/encoder_relative_bias/embedding",
            "backbone/decoder_relative_bias/embedding",
        ],
        "bart": [],
    },
}

# Leaves under each kind of hook module (path suffixes below the `pet_*` site).
BOTTLENECK = {f"mod/{layer}/{p}" for layer in ("down", "up") for p in ("kernel", "bias")}
PHM = {f"mod/{layer}/{p}" for layer in ("down", "up") for p in ("phm_rule", "phm_kernel", "bias")}
GATE = {
    "large": {f"gate/{layer}/{p}" for layer in ("down", "up") for p in ("kernel", "bias")},
    "middle_x": {"gate/proj/kernel", "gate/proj/bias"},
    "middle_y": {"gate/z"},
    "small": {"gate/proj/kernel", "gate/proj/bias"},
}
LORA = {"down/kernel", "up/kernel"}
PROMPT = {"embedding", "hidden/kernel", "hidden/bias", "out/kernel", "out/bias"}
GENERATORS = {
    f"{kind}_{side}_{what}_gen/{p}"
    for kind in ("self_attn", "cross_attn", "ff")
    for side in ("down", "up")
    for what in ("weight", "bias")
    for p in ("kernel", "bias")
}
PROJECTOR = {
    "layer_embeddings", "task_proj_hidden/kernel", "task_proj_hidden/bias",
    "task_proj_out/kernel", "task_proj_out/bias", "task_norm/scale", "task_norm/bias",
}  # fmt: skip


def _hyper_leaves() -> set[str]:
    leaves = {"task_embeddings"}
    for stack in ("encoder", "decoder"):
        leaves |= {f"{stack}/{leaf}" for leaf in PROJECTOR}
        leaves |= {
            f"{stack}/{g}" for g in GENERATORS if stack == "decoder" or not g.startswith("cross")
        }
    return leaves


def _sublayer_sites(cfg, stacks: dict[str, tuple[str, ...]], leaves) -> dict[str, set[str]]:
    layers = {"encoder": cfg.num_encoder_layers, "decoder": cfg.num_decoder_layers}
    return {
        f"backbone/{stack}_layers_{i}/pet_{kind}": set(leaves(stack))
        for stack, kinds in stacks.items()
        for i in range(layers[stack])
        for kind in kinds
    }


ALL_SUBLAYERS = {"encoder": ("self_attn", "ff"), "decoder": ("self_attn", "cross_attn", "ff")}
ENCODER_AND_CROSS = {"encoder": ("self_attn", "ff"), "decoder": ("cross_attn",)}


def expected_sites(name: str, cfg) -> dict[str, set[str]]:
    """`{site root: leaf suffixes}` of every PET module `name` adds (SPEC.md §4-§5)."""
    if name in ("full_ft", "bitfit"):
        return {}
    if name == "prompt":
        return {"backbone/pet_encoder_prefix": PROMPT}
    if name in ("vl_adapter", "adapter"):
        return _sublayer_sites(cfg, ALL_SUBLAYERS, lambda stack: BOTTLENECK)
    if name == "compacter":
        return _sublayer_sites(cfg, ALL_SUBLAYERS, lambda stack: PHM)
    if name == "hyperformer":  # sites own nothing: the hyper-networks live once, at the top
        return {"pet_shared": _hyper_leaves()}
    if name == "lora":
        attentions = {"encoder": ("self_attn",), "decoder": ("self_attn", "cross_attn")}
        layers = {"encoder": cfg.num_encoder_layers, "decoder": cfg.num_decoder_layers}
        return {
            f"backbone/{stack}_layers_{i}/{attn}/pet_{proj}": LORA
            for stack, attns in attentions.items()
            for i in range(layers[stack])
            for attn in attns
            for proj in ("q", "v")
        }
    if name.startswith("vl_pet_"):
        level = name.removeprefix("vl_pet_")
        sites = _sublayer_sites(cfg, {"encoder": ("self_attn", "ff")}, lambda s: BOTTLENECK)
        sites = {root: leaves | GATE[level] for root, leaves in sites.items()}
        for i in range(cfg.num_decoder_layers):
            sites[f"backbone/decoder_layers_{i}/cross_attn/pet_v"] = BOTTLENECK
        return sites
    base, gate, _ = name.split("+")  # <method>+g_<level>+lw
    body = PHM if base == "compacter" else BOTTLENECK
    level = gate.removeprefix("g_")
    return _sublayer_sites(
        cfg, ENCODER_AND_CROSS, lambda stack: body | GATE[level] if stack == "encoder" else body
    )


FULL = ("everything",)
WITH_ALL_NORMS = ("visual", "pet", "encoder_norms", "decoder_norms")
VL_PET_DESIGN = ("visual", "pet", "encoder_norms")
EXPECTED_TRAINABLE = {
    "full_ft": FULL,
    "bitfit": ("visual", "biases", "relative_bias"),
    "prompt": ("visual", "pet"),
    "vl_adapter": WITH_ALL_NORMS,
    "adapter": WITH_ALL_NORMS,
    "compacter": WITH_ALL_NORMS,
    "hyperformer": WITH_ALL_NORMS,
    "lora": ("visual", "pet", "biases", "relative_bias"),
    **{f"vl_pet_{level}": VL_PET_DESIGN for level in LEVELS},
    **{f"{b}+g_{level}+lw": VL_PET_DESIGN for b in ("vl_adapter", "compacter") for level in LEVELS},
}
# Other names of a method: the same hooks and rules (tested once, trained under the canonical name).
ALIASES = {"adapter": "vl_adapter"}
GATED_DESIGNS = [f"{b}+g_{level}+lw" for b in ("vl_adapter", "compacter") for level in LEVELS]
# (method, family) pairs that are trained. The `+g` designs train on T5 only: on BART their gate,
# adapter bodies and rules run the code that vl_pet_* / vl_adapter / compacter already train on
# BART, while T5 is the family whose zero-initialised gates must first pass gradient through.
# (The tests run eagerly; every trained pair costs about a second.)
TRAINED = [
    (name, family)
    for name in sorted(set(EXPECTED_TRAINABLE) - set(ALIASES))
    for family in FAMILIES
    if family == "t5" or name not in GATED_DESIGNS
]
# BART's attention key bias shifts every logit of a query equally, so softmax removes it: its
# gradient is zero (up to rounding) and it need not move.
NO_GRADIENT = {"t5": [], "bart": ["*attn/k/bias"]}


def _matches(path: str, family: str, groups) -> bool:
    return any(fnmatch.fnmatchcase(path, glob) for g in groups for glob in PATH_FAMILIES[g][family])


def _site_layout(paths) -> dict[str, set[str]]:
    """`{path up to the first pet_* component: leaf suffixes below it}`."""
    layout: dict[str, set[str]] = {}
    for path in paths:
        parts = path.split("/")
        index = next((i for i, p in enumerate(parts) if p.startswith("pet_")), None)
        if index is not None:
            root = "/".join(parts[: index + 1])
            layout.setdefault(root, set()).add("/".join(parts[index + 1 :]))
    return layout


def _flat(tree) -> dict[str, np.ndarray]:
    return {"/".join(k): np.asarray(v) for k, v in flatten_dict(tree).items()}


@cache
def _built(name: str, family: str):
    """Method, model and initial (unboxed) parameters on the one-layer tiny backbone."""
    cfg = tiny_config(family)
    method = get_method(name, cfg, PET)
    model = VLModel(cfg, method.hooks)
    params = nn.meta.unbox(model.init(jax.random.key(0), tiny_batch())["params"])
    return cfg, method, model, params


def test_the_table_covers_every_registered_method():
    assert set(EXPECTED_TRAINABLE) == set(known_methods())


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(EXPECTED_TRAINABLE))
def test_trainable_set_and_module_layout(name, family):
    cfg, method, _, params = _built(name, family)
    decision = trainable_paths(params, method.rules)
    expected = {p for p in decision if _matches(p, family, EXPECTED_TRAINABLE[name])}
    assert {p for p, train in decision.items() if train} == expected
    assert _site_layout(decision) == expected_sites(name, cfg)


@dataclasses.dataclass
class Trained:
    before: dict[str, np.ndarray]  # every leaf at init
    after: dict[str, np.ndarray]  # every leaf after the 3 steps
    last_params: dict  # the parameters the third step's forward pass saw
    gates: dict[str, np.ndarray]  # gate values sown in that forward pass, by hook site


@cache
def _trained(name: str, family: str) -> Trained:
    """Three AdamW steps (lr 1e-2, no weight decay: a leaf then moves only if it received a
    non-zero gradient), masked to the trainable leaves, with gradients taken w.r.t. the trainable
    subtree of `split_params` only and the model called on `merge_params(trainable, frozen)`."""
    cfg, method, model, params = _built(name, family)
    batch = _same_encoder_length(tiny_batch(seed=1), cfg, method)
    labels = jax.random.randint(jax.random.key(1), (BATCH, DEC_LEN), 3, VOCAB)

    def loss(trainable, frozen, rng):
        variables = {"params": merge_params(trainable, frozen)}
        logits, state = model.apply(
            variables, batch, train=True, rngs={"dropout": rng}, mutable=["intermediates"]
        )
        value = optax.softmax_cross_entropy_with_integer_labels(logits, labels).mean()
        return value, state.get("intermediates", {})

    grad_fn = jax.value_and_grad(loss, has_aux=True)
    tx = optax.masked(optax.adamw(1e-2, weight_decay=0.0), trainable_mask(params, method.rules))
    state = tx.init(params)
    current = params
    # Frozen leaves get a zero gradient; the mask alone must keep them where they are.
    frozen_grads = jax.tree.map(jnp.zeros_like, split_params(params, method.rules)[1])
    for step in range(3):
        last_params = current
        trainable, frozen = split_params(current, method.rules)
        (value, sown), grads = grad_fn(trainable, frozen, jax.random.key(10 + step))
        assert np.isfinite(value)
        updates, state = tx.update(merge_params(grads, frozen_grads), state, current)
        current = optax.apply_updates(current, updates)
    gates = {
        "/".join(k[:-1]): np.asarray(v[0])
        for k, v in flatten_dict(sown).items()
        if k[-1] == "gate_values"
    }
    return Trained(_flat(params), _flat(current), last_params, gates)


def _same_encoder_length(batch: dict, cfg, method) -> dict:
    """Prompt tuning lengthens the encoder input; dropping as many text tokens keeps every
    encoder shape of the other methods, so the eagerly run ops need no new compilation."""
    prefix = method.hooks.encoder_prefix()
    if prefix is None:
        return batch
    keep = TEXT_LEN - prefix.length
    return {**batch, "input_ids": batch["input_ids"][:, :keep],
            "attention_mask": batch["attention_mask"][:, :keep]}  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("alias", sorted(ALIASES))
def test_an_alias_is_the_same_method(alias, family):
    cfg = tiny_config(family)
    got, want = get_method(alias, cfg, PET), get_method(ALIASES[alias], cfg, PET)
    assert got.name == alias
    assert (got.hooks, list(got.rules)) == (want.hooks, list(want.rules))


@pytest.mark.parametrize("name,family", TRAINED)
def test_adamw_moves_exactly_the_trainable_leaves(name, family):
    _, method, _, params = _built(name, family)
    result = _trained(name, family)
    decision = trainable_paths(params, method.rules)
    moved = {p for p in result.before if not np.array_equal(result.before[p], result.after[p])}
    assert moved <= {p for p, train in decision.items() if train}
    must_move = {
        p
        for p, train in decision.items()
        if train and not any(fnmatch.fnmatchcase(p, g) for g in NO_GRADIENT[family])
    }
    assert must_move <= moved, sorted(must_move - moved)


# ---------------------------------------------------------------- VL-PET on T5 at step 0


class _Scale(nn.Module):
    factor: float

    def __call__(self, x, h, train: bool = False):
        del x, train
        return self.factor * h


@dataclasses.dataclass(frozen=True)
class ScaledEncoderHooks(PetHooks):
    """The reference: every encoder sub-layer output times `factor`, nothing else."""

    factor: float = 1.0

    def sublayer(self, site: Site):
        return _Scale(self.factor) if site.stack == "encoder" else None


def _without_pet(params) -> dict:
    flat = flatten_dict(params)
    return {"/".join(k): v for k, v in flat.items() if not any(p.startswith("pet_") for p in k)}


@pytest.mark.parametrize(
    "level,factor", [("large", 0.15), ("middle_x", 0.15), ("middle_y", 0.3), ("small", 0.15)]
)
def test_vl_pet_on_t5_starts_as_the_scaled_backbone(level, factor):
    """SPEC.md §3: T5's zero-inits give G = 0.5 (sigmoid(0)) or 1 (1 + 0), ΔH = 0, and a zero
    decoder value adapter, so each encoder sub-layer is s·G·H with s = 0.3."""
    cfg, _, model, params = _built(f"vl_pet_{level}", "t5")
    batch = tiny_batch(seed=2)
    got = model.apply({"params": params}, batch)
    reference = VLModel(cfg, ScaledEncoderHooks(factor))
    ref_params = {tuple(p.split("/")): v for p, v in _without_pet(params).items()}

    want = reference.apply({"params": unflatten_dict(ref_params)}, batch)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
    # The scaling matters: the plain backbone is far from it.
    plain = VLModel(cfg).apply({"params": unflatten_dict(ref_params)}, batch)
    assert np.max(np.abs(np.asarray(plain) - np.asarray(want))) > 1e-2


# ---------------------------------------------------------------- gates

GATED = [(n, f) for n, f in TRAINED if n.startswith("vl_pet_") or n in GATED_DESIGNS]
GATE_SHAPES = {  # SPEC.md §3, with N = text + visual tokens
    "large": (BATCH, TEXT_LEN + VIS_LEN, D_MODEL),
    "middle_x": (BATCH, TEXT_LEN + VIS_LEN, 1),
    "middle_y": (1, 1, D_MODEL),
    "small": (BATCH, 1, 1),
}


def _randomised_pet(params, seed: int):
    """PET leaves replaced by N(0, 0.5) draws, so no module sits at its initial value."""
    rng = np.random.default_rng(seed)
    out = {
        k: jnp.asarray(rng.normal(0, 0.5, v.shape), v.dtype)
        if any(p.startswith("pet_") for p in k) else v
        for k, v in flatten_dict(params).items()
    }  # fmt: skip
    return unflatten_dict(out)


@pytest.mark.parametrize("name,family", GATED)
def test_gates_have_the_documented_shape_and_range(name, family):
    """The gate values sown during the third training step (`mutable=["intermediates"]`), when
    the gates have left their initial values (on T5 exactly 0.5 or 1 everywhere)."""
    cfg, _, _, _ = _built(name, family)
    level = next(level for level in LEVELS if level in name)
    result = _trained(name, family)
    sites = {
        f"backbone/encoder_layers_{i}/pet_{kind}"
        for i in range(cfg.num_encoder_layers)
        for kind in ("self_attn", "ff")
    }
    assert set(result.gates) == sites
    seen = _flat(result.last_params)
    for site, gate in result.gates.items():
        assert gate.shape == GATE_SHAPES[level]
        if level == "middle_y":  # 1 + z, no squashing
            np.testing.assert_allclose(gate[0, 0], 1.0 + seen[f"{site}/gate/z"], rtol=1e-6)
        else:
            assert np.all((gate >= 0) & (gate <= 1))  # a sigmoid (saturating in float32)
            assert np.ptp(gate) > 0  # depends on the tokens / examples, unlike at init on T5


# ---------------------------------------------------------------- decoding with the hooks


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("method", ["hyperformer", "vl_pet_large", "lora", "vl_adapter"])
def test_incremental_decoding_is_the_full_forward(method, family):
    """Generation's cached path computes what training computes, for every kind of hook: the
    decoder value adapter (VL-PET) and the cross-attention LoRA read the cached encoder states,
    the adapters sit on every decoder sub-layer, and HyperFormer's cache carries the rows' task
    ids, from which every step rebuilds the hyper-network's context."""
    _, _, model, params = _built(method, family)
    variables = {"params": _randomised_pet(params, seed=5)}
    batch = tiny_batch(seed=6)
    full = model.apply(variables, batch)
    enc, enc_mask = model.apply(variables, batch, method=VLModel.encode)
    cache = model.apply(
        variables, enc, enc_mask, DEC_LEN, batch["task_ids"], method=VLModel.init_cache
    )
    steps = DEC_LEN  # causal: position i of the full forward is step i's computation
    stepped = []
    for i in range(steps):
        tokens = batch["decoder_input_ids"][:, i]
        logits, cache = model.apply(
            variables, tokens, cache, jnp.int32(i), method=VLModel.decode_step
        )
        stepped.append(logits)
    np.testing.assert_allclose(
        np.stack(stepped, 1), np.asarray(full[:, :steps]), rtol=1e-5, atol=1e-5
    )


def test_hyperformer_depends_on_the_task_and_needs_it():
    _, _, model, params = _built("hyperformer", "bart")
    params = _randomised_pet(params, seed=7)
    first = model.apply({"params": params}, tiny_batch(seed=8, task_id=0))
    second = model.apply({"params": params}, tiny_batch(seed=8, task_id=3))
    assert np.max(np.abs(np.asarray(first) - np.asarray(second))) > 1e-3
    no_task = {k: v for k, v in tiny_batch(seed=8).items() if k != "task_ids"}
    with pytest.raises(ValueError, match="task_ids"):
        model.apply({"params": params}, no_task)
    enc, enc_mask = model.apply({"params": params}, tiny_batch(), method=VLModel.encode)
    with pytest.raises(ValueError, match="task_ids"):
        model.apply({"params": params}, enc, enc_mask, DEC_LEN, method=VLModel.init_cache)


# ---------------------------------------------------------------- defaults and registry

BASE = {"t5": tiny_config("t5").replace(d_model=768, num_heads=12, d_kv=64, d_ff=3072,
                                         num_encoder_layers=12, num_decoder_layers=12),
        "bart": tiny_config("bart").replace(d_model=768, num_heads=12, d_kv=64, d_ff=3072,
                                             num_encoder_layers=6, num_decoder_layers=6)}  # fmt: skip
# The paper's sizes (SPEC.md §5, §8) with an empty `pet` mapping, as hook fields.
PAPER_DEFAULTS = {
    "vl_adapter": {"rank": 96},
    "compacter": {"rank": 96, "phm_dim": 2, "init_range": 0.01},
    "hyperformer": {"rank": 96, "task_dim": 512, "hidden_dim": 128, "projected_dim": 8},
    "lora": {"rank": 128, "alpha": 32.0, "dropout_rate": 0.1, "features": 768},
    "prompt": {"length": 40, "hidden": 800},
    "vl_adapter+g_large+lw": {"rank": 96, "gate_rank": {"bart": 96, "t5": 192},
                              "scale": {"bart": 1.0, "t5": 0.3}},
    "compacter+g_small+lw": {"rank": 96, "phm_dim": 2, "scale": {"bart": 1.0, "t5": 0.3}},
}  # fmt: skip


@pytest.mark.parametrize("family", FAMILIES)
@pytest.mark.parametrize("name", sorted(PAPER_DEFAULTS))
def test_paper_defaults(name, family):
    hooks = get_method(name, BASE[family], {}).hooks
    for field, want in PAPER_DEFAULTS[name].items():
        want = want[family] if isinstance(want, dict) else want
        assert getattr(hooks, field) == want, field


def test_unknown_method_lists_the_known_ones():
    with pytest.raises(KeyError) as err:
        get_method("adapterr", tiny_config("bart"))
    for name in ("bitfit", "compacter", "hyperformer", "lora", "prompt", "vl_adapter"):
        assert name in str(err.value)


def test_duplicate_registration_fails():
    with pytest.raises(ValueError, match="twice"):
        register("lora")(lambda backbone, pet: None)
    assert "lora" in known_methods()
