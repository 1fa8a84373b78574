"""Recipe pieces shared by `configs/image_text.py` and `configs/video_text.py`.

Each function builds one section of the experiment config with the paper's values (SPEC.md §3-§8)
for the chosen backbone family and method. The family files put the sections together and add
what differs between images and videos (tasks, visual input, batch, learning rate).

Types matter here: `--config.a.b=v` converts `v` to the type of the field's default, so every
float default is written as a float and every "unset" is a typed placeholder.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import ml_collections
from ml_collections import config_dict

from vlpet_jax.config_args import parse_arg
from vlpet_jax.models.presets import TINY_PRESET, get_preset, is_tiny
from vlpet_jax.pet.vl_pet import DEFAULT_GATE_POOLING

# Keys accepted after the colon of a config string; see `parse_arg`.
ARG_DEFAULTS: dict[str, Any] = dict(
    backbone="bart_base",
    method="vl_pet_large",
    runlocal=False,
    checkpoint="",
    seed=42,
    tasks=(),
)

# Learning rates of SPEC.md §8 by (modality, backbone family): PET methods, full fine-tuning.
# Rows the paper does not report (T5 on video) reuse its T5 image rate.
LEARNING_RATES = {
    ("image", "bart"): {"pet": 1e-3, "full_ft": 1e-4},
    ("image", "t5"): {"pet": 3e-4, "full_ft": 1e-4},
    ("video", "bart"): {"pet": 7e-4, "full_ft": 1e-4},
    ("video", "t5"): {"pet": 3e-4, "full_ft": 1e-4},
}

# PET sizes: the paper's per family (SPEC.md §3-§5, §8), and CPU sizes for tiny backbones.
# Keys are the names the registered methods read from `config.pet`.
PET_SIZES = {
    "bart": dict(
        rank=96,  # VL-PET encoder modification width r
        num_heads=4,  # N_h heads of the multi-head down projection
        gate_rank=96,  # r_g of the large gate
        value_rank=96,  # r_d of the decoder value adapter
        adapter_reduction=8,  # adapters: r = d / reduction = 96
        compacter_reduction=8,
        compacter_n=2,  # PHM: W = sum_{i=1..n} A_i ⊗ B_i
        hyper_reduction=8,
        hyper_task_dim=512,  # task (and layer) embedding width
        hyper_hidden_dim=128,  # task projector hidden width
        hyper_projected_dim=8,  # projected task embedding fed to the generators
        lora_rank=128,
        lora_alpha=32.0,
        lora_dropout=0.1,
        prompt_length=40,
        prompt_hidden=800,
    ),
    "tiny": dict(
        rank=16,
        num_heads=4,
        gate_rank=16,
        value_rank=16,
        adapter_reduction=4,
        compacter_reduction=4,
        compacter_n=2,
        hyper_reduction=4,
        hyper_task_dim=32,
        hyper_hidden_dim=16,
        hyper_projected_dim=4,
        lora_rank=8,
        lora_alpha=16.0,
        lora_dropout=0.1,
        prompt_length=8,
        prompt_hidden=32,
    ),
}
PET_SIZES["t5"] = {**PET_SIZES["bart"], "rank": 192, "gate_rank": 192}
# s: a property of the backbone family, not of the size (SPEC.md §3).
PET_SCALE = {"bart": 1.0, "t5": 0.3}


def parse(arg: str | None) -> ml_collections.ConfigDict:
    """The config-string arguments with `runlocal` resolved to a tiny backbone, validated."""
    args = parse_arg(arg, **ARG_DEFAULTS)
    try:
        family = get_preset(args.backbone).family
    except KeyError as err:  # a config-string error: say so as a ValueError, listing presets
        raise ValueError(err.args[0]) from None
    if args.runlocal:
        args.backbone = TINY_PRESET[family]
    _check_method(args.method)
    return args


def _check_method(method: str) -> None:
    # Imported here: the registry pulls in jax/flax, which the argument parsing alone does not need.
    from vlpet_jax.pet.registry import known_methods

    known = known_methods()
    if method not in known:
        raise ValueError(f"unknown PET method {method!r}; known methods: {', '.join(known)}")


def family_of(backbone: str) -> str:
    return get_preset(backbone).family


def model_config(
    backbone: str, checkpoint: str, feat_dim: int, num_vis_tokens: int, num_images: int
) -> ml_collections.ConfigDict:
    """The network: backbone architecture (preset, or the checkpoint's), visual input, dtypes."""
    return ml_collections.ConfigDict(
        dict(
            # A preset of vlpet_jax.models.presets; with `checkpoint` set it only names the family.
            backbone=backbone,
            # Hugging Face directory (config.json, weights, tokenizer); '' = random init.
            checkpoint=checkpoint,
            feat_dim=feat_dim,
            num_vis_tokens=num_vis_tokens,
            num_images=num_images,
            dropout=0.1,
            dtype="float32",  # activations / matmuls
            param_dtype="float32",  # trainable parameters
            frozen_dtype="float32",  # frozen parameters ('bfloat16' halves backbone memory)
        )
    )


def pet_config(method: str, backbone: str) -> ml_collections.ConfigDict:
    """`method` with every size of SPEC.md §3-§5 for `backbone`; `rules` overrides trainability."""
    family = family_of(backbone)
    sizes = PET_SIZES["tiny" if is_tiny(backbone) else family]
    pet = ml_collections.ConfigDict(dict(method=method, scale=PET_SCALE[family], **sizes))
    pet.compacter_init_range = 0.01  # std of the PHM A_i (released --phm_init_range)
    pet.hyper_num_tasks = 8  # HyperFormer task-embedding rows: every task id of the data registry
    # BitFit / LoRA train what the released code selects with `"bias" in name`: on T5 that is
    # the relative-position tables.
    pet.train_relative_attention_bias = True
    # What VL-PET's small gate averages over (SPEC.md §3): "released" (positions before the
    # batch's longest real text, then the visual tokens) or "real_tokens" (each example's own).
    pet.gate_pooling = DEFAULT_GATE_POOLING
    # ((regex, trainable), ...) replacing the method's default rules; unset = the method's.
    pet.rules = config_dict.placeholder(tuple)
    return pet


def learning_rate(modality: str, backbone: str, method: str) -> float:
    rates = LEARNING_RATES[(modality, family_of(backbone))]
    return rates["full_ft"] if method == "full_ft" else rates["pet"]


def optim_config(lr: float) -> ml_collections.ConfigDict:
    """AdamW with the released recipe (SPEC.md §8; `vlpet_jax/train/optim.py`)."""
    optim = ml_collections.ConfigDict(
        dict(
            lr=float(lr),
            b1=0.9,
            b2=0.999,
            eps=1e-6,
            # "released": transformers.AdamW 4.2.1 (eps added before the bias correction, decay
            # on the updated weights), as the paper's runs; "optax": optax.adamw.
            adam_eps_style="released",
            weight_decay=0.01,
            warmup_ratio=0.1,  # linear warm-up over this share of the steps
            schedule="linear",  # then linear decay to 0 (the only schedule the recipe uses)
            grad_clip_norm=5.0,
        )
    )
    # ((regex, decay), ...) over parameter paths, first full match wins, replacing the released
    # set (every `bias`, BART's final_logits_bias, T5's relative tables exempt; norms decayed);
    # unset = the released set for the method and backbone family.
    optim.decay_rules = config_dict.placeholder(tuple)
    return optim


def train_config(seed: int, runlocal: bool) -> ml_collections.ConfigDict:
    """Loop lengths and intervals. The paper's runs use seeds 42, 43 and 9595."""
    return ml_collections.ConfigDict(
        dict(
            seed=seed,
            epochs=2 if runlocal else 20,
            log_every_steps=10 if runlocal else 50,
            eval_every_epochs=2 if runlocal else 1,  # runlocal: once, at the end
            checkpoint_every_steps=10 if runlocal else 1000,
            # Tiny CPU runs are compile-bound: XLA's cheapest backend optimisation level cuts
            # compile time ~2x; steps get ~3x slower, a net win for runs of a few hundred steps.
            fast_compile=runlocal,
            # The PRNG behind dropout masks. Threefry (JAX's default) is reproducible across
            # meshes and JAX versions. "unsafe_rbg" (XLA's RngBitGenerator) halves the train
            # step's compile time at full optimisation but is slow under fast_compile, and is
            # reproducible only for a given program and mesh.
            dropout_rng_impl="threefry2x32",
            # Threads compiling the step for batch shapes the prefetcher has already built, so
            # the first steps of each task and length bucket do not wait on one compile at a
            # time (single-process runs; 0 = compile on first call).
            compile_workers=2,
            keep_last=2,
        )
    )


def task_config(
    prompt: str,
    max_input_len: int | None,
    max_target_len: int | None,
    batch_ratio: tuple[int, int],
    splits: tuple[str, str, str],
) -> ml_collections.ConfigDict:
    """One task's reader options and limits (SPEC.md §6). None = no truncation."""
    train, val, test = splits
    cfg = ml_collections.ConfigDict(
        dict(prompt=prompt, batch_ratio=batch_ratio, train_split=train, val_split=val)
    )
    cfg.test_split = test
    cfg.max_input_len = _int_or_placeholder(max_input_len)
    cfg.max_target_len = _int_or_placeholder(max_target_len)
    return cfg


def _int_or_placeholder(value: int | None) -> Any:
    return config_dict.placeholder(int) if value is None else value


def data_config(
    root: str,
    tasks: Sequence[str],
    all_tasks: Mapping[str, ml_collections.ConfigDict],
    batch_size: int,
    vis_dtype: str,
) -> ml_collections.ConfigDict:
    """Dataset root, the task mixture, base batch B, the host dtype of the visual features (their
    stored one: float16 CLIP image grids, float32 video frames; float16 halves what a batch costs
    on the host and on the way to the device, and the model widens it exactly), and one
    sub-config per known task."""
    unknown = [t for t in tasks if t not in all_tasks]
    if unknown:
        raise ValueError(f"unknown tasks {unknown}; this config knows: {', '.join(all_tasks)}")
    data = ml_collections.ConfigDict(
        dict(
            root=root,
            tasks=tuple(tasks),
            batch_size=batch_size,
            drop_remainder=False,
            vis_dtype=vis_dtype,
            prefetch=2,  # batches the host prepares ahead of the device
        )
    )
    for name, cfg in all_tasks.items():
        data[name] = cfg
    return data


def decode_config(mode: str, num_beams: int, max_length: int) -> ml_collections.ConfigDict:
    """`mode` 'generate' (greedy when num_beams is 1, else beam search) or 'score' (NLVR2's
    one-step comparison of the `true`/`false` logits, SPEC.md §7)."""
    return ml_collections.ConfigDict(dict(mode=mode, num_beams=num_beams, max_length=max_length))


def eval_config(
    backbone: str, decode: Mapping[str, ml_collections.ConfigDict], batch_size: int
) -> ml_collections.ConfigDict:
    """Decoding per task (SPEC.md §7); BART generates with no-repeat-3-gram, T5 with none."""
    ev = ml_collections.ConfigDict(
        dict(
            batch_size=batch_size,
            no_repeat_ngram_size=3 if family_of(backbone) == "bart" else 0,
            length_penalty=1.0,
            # METEOR starts a Java process (~8 s); runlocal turns it off.
            use_meteor=True,
            # Tasks decoded on parallel threads (single-process runs): their compiles overlap.
            parallel_tasks=2,
        )
    )
    for name, cfg in decode.items():
        ev[name] = cfg
    return ev


def synthetic_config(runlocal: bool, modality: str) -> ml_collections.ConfigDict:
    """Sizes of the built-in synthetic benchmark (used when `data.root` is 'synthetic').

    Empty = the generator's defaults; runlocal shrinks it so a run takes seconds on a CPU.
    """
    sizes = ml_collections.ConfigDict(dict(seed=0))
    if runlocal and modality == "image":
        sizes.coco_images = (24, 0, 8, 8)
        sizes.gqa_images = (24, 8, 8)
        sizes.nlvr_images = (24, 8, 8)
        sizes.nlvr_groups = (12, 4, 4)
    elif runlocal:
        sizes.tv_videos = (24, 8)
        sizes.how2_videos = (24, 8)
        sizes.yc2_videos = (12, 4)
    return sizes


def mesh_config() -> ml_collections.ConfigDict:
    """Mesh axis sizes; -1 takes every remaining device (all on `data` by default)."""
    return ml_collections.ConfigDict(dict(data=-1, fsdp=1, tensor=1))
