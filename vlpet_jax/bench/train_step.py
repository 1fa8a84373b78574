"""Train-step benchmark: our jitted VL-PET step vs a PyTorch VL-PET reference and PEFT LoRA,
plus optimiser-state sizes and scaling curves (suites `train`, `optstate`, `scaling`).

Every measurement uses the same random backbone: a Hugging Face PyTorch model of the preset's
architecture (`bart_base` / `t5_base`, or the tiny presets), saved with `save_pretrained` and
read back by our normal loader (`vlpet_jax.checkpoints.hf.load_backbone`). Batch: `text_len` text
tokens + `vis_len` visual tokens (2048-d features and 4 box coordinates, as `configs/image_text.py`
feeds) in, `target_len` target tokens out, dropout 0.1 on.

Variants of the `train` suite (examples/s, peak memory):
  ours_bf16      our trainer's jitted step (`partition.jit_train_step` over `step.make_train_step`
                 with `optim.make_optimizer`), VL-PET-large, frozen backbone in bf16
                 (`model.frozen_dtype='bfloat16'`), trainable params and AdamW in fp32
  ours_fp32      the same with the frozen backbone in fp32
  ours_full_ft   our full fine-tuning step (everything trainable, fp32)
  torch_vl_pet   `torch_reference.TorchVLModel`: HF PyTorch BART/T5 with VL-PET-large added in
                 PyTorch, eager fp32, AdamW over the trainable set, clip 5
  peft_lora      HF PEFT LoRA (r 128, alpha 32, q and v) on the same PyTorch backbone and the same
                 visual embedding

Step times: each variant runs `repeats` timed steps after a warm-up (compilation) step; the
records give the fastest (examples/s, ratios, MFU: on a machine shared with other jobs the least
disturbed step) and the median. Peak memory: the resident-set peak during the steps minus the
resident set once the framework was imported (weights, optimiser state, activations, compiled
code); for ours also XLA's own estimate of the step's buffers (arguments + outputs - donated +
temporaries).

Before any timing, `check_parity` copies our trainable params into the PyTorch reference and
asserts that both compute the same loss (dropout off) on the same batch: within `FP32_RTOL`
for our fp32 model, within `BF16_RTOL` of that for the bf16-frozen one.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from vlpet_jax.bench import timing
from vlpet_jax.bench.flops import Shapes, jaxpr_matmul_flops, matmul_rates, train_step_flops
from vlpet_jax.bench.flops import xla_flops as compiled_flops

# XLA's cheapest backend optimisation: tiny programs compile ~3x faster (tests, smoke runs).
FAST_COMPILE = {"xla_backend_optimization_level": 0}
FP32_RTOL = 1e-4  # ours (fp32) vs the PyTorch reference, same weights, dropout off
BF16_RTOL = 2e-2  # ours with a bf16 frozen backbone vs ours in fp32
VARIANTS = ("ours_bf16", "ours_fp32", "ours_full_ft", "torch_vl_pet", "peft_lora")
METHOD = "vl_pet_large"
DEFAULT_SHAPES = Shapes()  # batch 16: 20 text + 36 visual tokens in, 10 out


def preset_name(family: str, size: str) -> str:
    if family not in ("bart", "t5") or size not in ("base", "tiny"):
        raise ValueError(
            f"train benchmark: family {family!r} / size {size!r}; expected bart|t5 and base|tiny"
        )
    return f"{family}_{size}"


def load_config(family: str, size: str, method: str = METHOD, frozen_dtype: str = "float32"):
    """The image-text recipe (configs/image_text.py) for the preset, with `frozen_dtype`."""
    from vlpet_jax import api

    config = api.load_config(
        f"configs/image_text.py:backbone={preset_name(family, size)},method={method}"
    )
    config.model.frozen_dtype = frozen_dtype
    return config


def pet_sizes(config) -> dict[str, Any]:
    return {k: config.pet[k] for k in ("rank", "gate_rank", "value_rank", "scale")}


# ---------------------------------------------------------------------------------- weights


def save_hf_checkpoint(config, path: str, seed: int = 0):
    """A random Hugging Face PyTorch model of the config's architecture (dropout included),
    saved at `path` with `save_pretrained`; returns the model (train mode off)."""
    import torch
    from transformers import (
        BartConfig,
        BartForConditionalGeneration,
        T5Config,
        T5ForConditionalGeneration,
    )

    from vlpet_jax import api

    cfg = api.backbone_config(config)
    torch.manual_seed(seed)
    ids = dict(
        pad_token_id=cfg.pad_token_id, eos_token_id=cfg.eos_token_id,
        decoder_start_token_id=cfg.decoder_start_token_id,
    )  # fmt: skip
    if cfg.family == "bart":
        hf_config = BartConfig(
            vocab_size=cfg.vocab_size, d_model=cfg.d_model, encoder_layers=cfg.num_encoder_layers,
            decoder_layers=cfg.num_decoder_layers, encoder_attention_heads=cfg.num_heads,
            decoder_attention_heads=cfg.num_heads, encoder_ffn_dim=cfg.d_ff,
            decoder_ffn_dim=cfg.d_ff, max_position_embeddings=cfg.max_position_embeddings,
            dropout=cfg.dropout_rate, attention_dropout=cfg.attention_dropout_rate,
            activation_dropout=cfg.activation_dropout_rate, scale_embedding=cfg.scale_embedding,
            bos_token_id=cfg.bos_token_id, forced_eos_token_id=None, **ids,
        )  # fmt: skip
        model = BartForConditionalGeneration(hf_config)
    else:
        hf_config = T5Config(
            vocab_size=cfg.vocab_size, d_model=cfg.d_model, d_kv=cfg.d_kv, d_ff=cfg.d_ff,
            num_layers=cfg.num_encoder_layers, num_decoder_layers=cfg.num_decoder_layers,
            num_heads=cfg.num_heads, relative_attention_num_buckets=cfg.relative_attention_num_buckets,
            relative_attention_max_distance=cfg.relative_attention_max_distance,
            dropout_rate=cfg.dropout_rate, layer_norm_epsilon=cfg.layer_norm_eps,
            feed_forward_proj="relu" if cfg.ffn_activation == "relu" else "gated-gelu",
            tie_word_embeddings=cfg.tie_word_embeddings, **ids,
        )  # fmt: skip
        model = T5ForConditionalGeneration(hf_config)
    model.eval().save_pretrained(path)
    return model


def ours_params(
    config, checkpoint: str, seed: int = 0, fast_compile: bool = False
) -> dict[str, Any]:
    """PET modules and visual embedding initialised as `init_params` does, the backbone read
    from `checkpoint` by `load_backbone` (architecture checked against the preset), frozen
    leaves cast to `config.model.frozen_dtype`. `fast_compile`: initialise with one cheaply
    compiled program instead of `init_params`' op-by-op run (tiny models: faster)."""
    import flax.linen as nn
    import jax

    from vlpet_jax import api
    from vlpet_jax.checkpoints.hf import load_backbone

    cfg = api.backbone_config(config)
    loaded_cfg, loaded = load_backbone(checkpoint)
    arch = lambda c: c.replace(  # noqa: E731
        dropout_rate=0.0, attention_dropout_rate=0.0, activation_dropout_rate=0.0
    )
    if arch(loaded_cfg) != arch(cfg):
        raise ValueError(f"{checkpoint}: architecture {loaded_cfg} differs from the preset's {cfg}")
    if fast_compile:
        init = jax.jit(api.build_model(config).init)
        args = (jax.random.key(seed), api.dummy_batch(config))
        params = nn.unbox(init.lower(*args).compile(FAST_COMPILE)(*args)["params"])
    else:
        params = api.init_params(config, jax.random.key(seed))
    params["backbone"] = api._merge_backbone(params["backbone"], loaded, checkpoint)
    rules = api.trainability_rules(config)
    return api.cast_frozen(params, rules, api.dtype_of(config.model.frozen_dtype))


def perturb_trainable(params: dict, config, scale: float = 0.05, seed: int = 1) -> dict:
    """Trainable leaves plus N(0, scale) noise, so that zero-initialised layers (T5's up
    projections) take part in a parity check."""
    from flax.traverse_util import flatten_dict, unflatten_dict

    from vlpet_jax import api
    from vlpet_jax.pet.trainability import trainable_paths

    rng = np.random.default_rng(seed)
    decision = trainable_paths(params, api.trainability_rules(config))
    flat = flatten_dict(params, sep="/")
    for path, leaf in flat.items():
        if decision[path]:
            noise = rng.normal(0.0, scale, leaf.shape).astype(np.float32)
            flat[path] = leaf + noise
    return unflatten_dict(flat, sep="/")


def make_batch(
    config, shapes: Shapes, seed: int = 0, pad_text: bool = False
) -> dict[str, np.ndarray]:
    """A host batch in the trainer's format (labels, loss weights, example mask included)."""
    from vlpet_jax import api

    cfg = api.backbone_config(config)
    rng = np.random.default_rng(seed)
    b, n_text, v, t = shapes.batch_size, shapes.text_len, shapes.vis_len, shapes.target_len
    high = cfg.vocab_size - 200  # ordinary tokens, not the VL-T5 special rows
    mask = np.ones((b, n_text), np.int32)
    if pad_text and n_text > 2:
        mask[1, -2:] = 0
    boxes = np.sort(rng.uniform(size=(b, v, 4)), axis=-1)[..., [0, 2, 1, 3]]
    decoder_ids = rng.integers(4, high, (b, t)).astype(np.int32)
    decoder_ids[:, 0] = cfg.decoder_start_token_id
    return {
        "input_ids": rng.integers(4, high, (b, n_text)).astype(np.int32),
        "attention_mask": mask,
        "vis_feats": rng.standard_normal((b, v, shapes.feat_dim)).astype(np.float32),
        "vis_pos": boxes.astype(np.float32),
        "img_order_ids": np.zeros((b, v), np.int32),
        "obj_order_ids": np.broadcast_to(np.arange(v, dtype=np.int32), (b, v)).copy(),
        "decoder_input_ids": decoder_ids,
        "labels": rng.integers(4, high, (b, t)).astype(np.int32),
        "loss_weights": np.ones((b,), np.float32),
        "example_mask": np.ones((b,), np.float32),
        "token_level": np.float32(0.0),
    }


# ---------------------------------------------------------------------------------- ours


class OursTrainStep:
    """The trainer's code path on one device: split params by the method's rules, AdamW over
    the trainable tree, placement from abstract shapes, one jit with donated state."""

    def __init__(
        self,
        config,
        params: dict,
        batch: Mapping[str, np.ndarray],
        compiler_options: Mapping[str, Any] | None = None,
    ):
        import jax

        from vlpet_jax import api
        from vlpet_jax.pet.trainability import param_paths, split_params
        from vlpet_jax.train import device_data, partition, sharding
        from vlpet_jax.train.optim import make_optimizer
        from vlpet_jax.train.step import make_train_step

        rules = api.trainability_rules(config)
        model = api.build_model(config)
        trainable, _ = split_params(params, rules)
        tx, schedule = make_optimizer(
            config.optim, 1000, trainable, api.decay_rules(config), param_paths(params)
        )
        mesh = sharding.make_mesh({"data": 1, "fsdp": 1, "tensor": 1}, jax.devices()[:1])
        placement = partition.plan_placement(
            api.abstract_variables(config)["params"], rules, tx, mesh
        )
        self.state, self.frozen = partition.init_train_state(params, rules, tx, placement)
        self.step_fn = make_train_step(model, tx, schedule)
        self.batch = device_data.from_host_shards(batch, mesh)
        # The trainer's dropout key, in the PRNG implementation the config asks for.
        self.rng = jax.random.key(0, impl=config.train.dropout_rng_impl)
        jitted = partition.jit_train_step(self.step_fn, placement, batch)
        lowered = jitted.lower(self.state, self.frozen, self.batch, self.rng)
        self.compiled = lowered.compile(dict(compiler_options or {}))

    def __call__(self):
        self.state, metrics = self.compiled(self.state, self.frozen, self.batch, self.rng)
        return metrics["loss"]

    def jaxpr_flops(self) -> int:
        return jaxpr_matmul_flops(self.step_fn, self.state, self.frozen, self.batch, self.rng)

    def xla_memory_mib(self) -> float | None:
        """Arguments + outputs - donated aliases + temporaries of the compiled step."""
        try:
            m = self.compiled.memory_analysis()
        except Exception:
            return None
        if m is None:
            return None
        total = (
            m.argument_size_in_bytes + m.output_size_in_bytes - m.alias_size_in_bytes
            + m.temp_size_in_bytes
        )  # fmt: skip
        return total / 2**20


def _options(fast_compile: bool) -> dict[str, Any]:
    return dict(FAST_COMPILE) if fast_compile else {}


def step_jaxpr_flops(config, shapes: Shapes) -> int:
    """Matmul FLOPs of our train step as JAX's autodiff emits it (the jaxpr), from abstract
    shapes: nothing is allocated or compiled."""
    import jax
    import jax.numpy as jnp

    from vlpet_jax import api
    from vlpet_jax.pet.trainability import param_paths, split_params
    from vlpet_jax.train.optim import make_optimizer
    from vlpet_jax.train.step import TrainState, make_train_step

    abstract = api.abstract_params(config)
    trainable, frozen = split_params(abstract, api.trainability_rules(config))
    tx, schedule = make_optimizer(
        config.optim, 1000, trainable, api.decay_rules(config), param_paths(abstract)
    )
    state = jax.eval_shape(
        lambda tree: TrainState(jnp.zeros((), jnp.int32), tree, tx.init(tree)), trainable
    )
    step = make_train_step(api.build_model(config), tx, schedule)
    batch = make_batch(config, shapes)
    return jaxpr_matmul_flops(step, state, frozen, batch, jax.random.key(0))


def ours_eval_loss(
    config, params: dict, batch: Mapping[str, np.ndarray], fast_compile: bool = False
) -> float:
    """Our loss with dropout off (the trainer's eval-loss function), fp32 logits."""
    import jax

    from vlpet_jax import api
    from vlpet_jax.pet.trainability import split_params
    from vlpet_jax.train.step import make_eval_loss

    trainable, frozen = split_params(params, api.trainability_rules(config))
    eval_loss = jax.jit(make_eval_loss(api.build_model(config)))
    batch = {k: np.asarray(v) for k, v in batch.items()}
    compiled = eval_loss.lower(trainable, frozen, batch).compile(_options(fast_compile))
    return float(compiled(trainable, frozen, batch)["loss"])


# ---------------------------------------------------------------------------------- torch


def torch_model(variant: str, config, checkpoint: str, train: bool = True):
    """(model, step) of a PyTorch variant: `torch_vl_pet` or `peft_lora`."""
    from transformers import AutoModelForSeq2SeqLM

    from vlpet_jax.bench import torch_reference as ref

    hf = AutoModelForSeq2SeqLM.from_pretrained(checkpoint)
    family = hf.config.model_type
    feat_dim = int(config.model.feat_dim)
    if variant == "torch_vl_pet":
        model = ref.TorchVLModel(hf, family, feat_dim, pet=pet_sizes(config))
        ref.mark_vl_pet_trainable(model)
    elif variant == "peft_lora":
        p = config.pet
        model = ref.lora_model(
            hf, family, feat_dim, rank=p.lora_rank, alpha=p.lora_alpha, dropout=p.lora_dropout
        )
    else:
        raise ValueError(f"unknown PyTorch variant {variant!r}")
    model.train(train)
    return model, ref.make_train_step(model, ref.adamw(model))


def torch_eval_loss(model, batch: Mapping[str, np.ndarray]) -> float:
    import torch

    from vlpet_jax.bench import torch_reference as ref

    model.eval()
    with torch.no_grad():
        tb = ref.torch_batch(batch)
        return float(ref.sequence_loss(model(tb), tb))


# ---------------------------------------------------------------------------------- parity


def check_parity(
    family: str, size: str, checkpoint: str, shapes: Shapes, fast_compile: bool = False
) -> dict[str, Any]:
    """Same weights (backbone from the checkpoint, our trainable params copied into PyTorch),
    same batch, dropout off: ours fp32 vs the PyTorch reference within FP32_RTOL, ours with a
    bf16 frozen backbone vs ours fp32 within BF16_RTOL. Raises AssertionError otherwise."""
    import jax

    from vlpet_jax import api
    from vlpet_jax.bench import torch_reference as ref

    config = load_config(family, size)
    params = perturb_trainable(ours_params(config, checkpoint, fast_compile=fast_compile), config)
    batch = make_batch(config, shapes, seed=1, pad_text=True)
    with jax.default_matmul_precision("highest"):
        loss_fp32 = ours_eval_loss(config, params, batch, fast_compile)
    bf16_config = load_config(family, size, frozen_dtype="bfloat16")
    bf16_params = api.cast_frozen(
        params, api.trainability_rules(bf16_config), api.dtype_of("bfloat16")
    )
    loss_bf16 = ours_eval_loss(bf16_config, bf16_params, batch, fast_compile)
    model, _ = torch_model("torch_vl_pet", config, checkpoint, train=False)
    ref.load_trainable_from_flax(model, jax.device_get(params))
    loss_torch = torch_eval_loss(model, batch)
    rel = abs(loss_fp32 - loss_torch) / abs(loss_torch)
    rel_bf16 = abs(loss_bf16 - loss_fp32) / abs(loss_fp32)
    if not rel <= FP32_RTOL:
        raise AssertionError(
            f"{family}/{size}: our fp32 loss {loss_fp32:.6f} vs PyTorch reference "
            f"{loss_torch:.6f}: relative difference {rel:.2e} > {FP32_RTOL}"
        )
    if not rel_bf16 <= BF16_RTOL:
        raise AssertionError(
            f"{family}/{size}: bf16-frozen loss {loss_bf16:.6f} vs fp32 {loss_fp32:.6f}: "
            f"relative difference {rel_bf16:.2e} > {BF16_RTOL}"
        )
    return {
        "loss_ours_fp32": round(loss_fp32, 6),
        "loss_torch": round(loss_torch, 6),
        "loss_rel_diff": float(f"{rel:.2e}"),
        "loss_ours_bf16": round(loss_bf16, 6),
        "loss_bf16_rel_diff": float(f"{rel_bf16:.2e}"),
        "tolerances": f"fp32 {FP32_RTOL:g}, bf16 {BF16_RTOL:g} (relative)",
    }


# ---------------------------------------------------------------------------------- timing


def measure(variant: str, family: str, size: str, checkpoint: str, shapes: Shapes,
            repeats: int, warmup: int = 1, fast_compile: bool = False) -> dict[str, Any]:  # fmt: skip
    """Time one variant in this process: median step seconds; peak memory while training: the
    highest resident set during the timed steps (warm-up included) minus the process's resident
    set before the model was built (so it counts weights, optimiser state, activations and
    compiled code, not the interpreter and libraries, nor set-up garbage); and (ours) XLA's own
    memory and FLOP estimates of the compiled step."""
    import gc

    _import_frameworks(variant)
    baseline = timing.current_rss_mib()
    out: dict[str, Any] = {}
    if variant.startswith("ours_"):
        method = "full_ft" if variant == "ours_full_ft" else METHOD
        frozen = "bfloat16" if variant == "ours_bf16" else "float32"
        config = load_config(family, size, method, frozen)
        params = ours_params(config, checkpoint, fast_compile=fast_compile)
        batch = make_batch(config, shapes)
        step = OursTrainStep(config, params, batch, _options(fast_compile))
        del params
        gc.collect()
        timing.reset_peak_rss()
        result = timing.time_call(step, repeats=repeats, warmup=warmup)
        peak = timing.peak_rss_since_reset_mib()
        out["xla_memory_mib"] = _round(step.xla_memory_mib())
        out["xla_flops"] = compiled_flops(step.compiled)
        out["jaxpr_matmul_flops"] = step.jaxpr_flops()
    else:
        import torch

        config = load_config(family, size)
        model, step = torch_model(variant, config, checkpoint)
        tb = _torch_batch(make_batch(config, shapes))
        torch.manual_seed(0)
        gc.collect()
        timing.reset_peak_rss()
        result = timing.time_call(lambda: float(step(tb)), repeats=repeats, warmup=warmup)
        peak = timing.peak_rss_since_reset_mib()
        out["trainable_params"] = sum(p.numel() for p in model.parameters() if p.requires_grad)
    out.update(
        step_s=result["median_s"],
        min_step_s=result["min_s"],
        peak_rss_growth_mib=round(peak - baseline, 1),
    )
    return out


def _import_frameworks(variant: str) -> None:
    """Load (and start) what a variant runs on before its memory baseline is taken."""
    if variant.startswith("ours_"):
        import jax
        import jax.numpy as jnp

        import vlpet_jax.api
        import vlpet_jax.checkpoints.hf
        import vlpet_jax.train.partition  # noqa: F401

        jnp.zeros(1).block_until_ready()
        del jax
    else:
        import torch  # noqa: F401
        import transformers  # noqa: F401

        if variant == "peft_lora":
            import peft  # noqa: F401


def _torch_batch(batch):
    from vlpet_jax.bench import torch_reference as ref

    return ref.torch_batch(batch)


def _round(x: float | None, digits: int = 1) -> float | None:
    return None if x is None else round(x, digits)


def measure_isolated(variant: str, family: str, size: str, checkpoint: str, shapes: Shapes,
                     repeats: int, fast_compile: bool = False) -> dict[str, Any]:  # fmt: skip
    """`measure` in a fresh Python process, so its peak memory is its own and no other
    framework's threads or caches share the process."""
    spec = dict(variant=variant, family=family, size=size, checkpoint=checkpoint,
                shapes=dataclasses.asdict(shapes), repeats=repeats,
                fast_compile=fast_compile)  # fmt: skip
    env = {**os.environ, "JAX_PLATFORMS": os.environ.get("JAX_PLATFORMS", "cpu")}
    proc = subprocess.run(
        [sys.executable, "-m", "vlpet_jax.bench.train_step", json.dumps(spec)],
        capture_output=True, text=True, env=env,
    )  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"{variant} ({family}/{size}) failed:\n{proc.stderr[-4000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ---------------------------------------------------------------------------------- suites


def run_train(family: str, size: str = "base", shapes: Shapes = DEFAULT_SHAPES, repeats: int = 3,
              variants: Sequence[str] = VARIANTS, isolate: bool = True,
              fast_compile: bool = False, matmul_size: int = 2048) -> list[dict[str, Any]]:  # fmt: skip
    """The `train` suite for one family: parity check, then every variant; one record per
    variant and a `train_summary` record with the ratios, FLOP counts and MFU."""
    from vlpet_jax import api

    unknown = [v for v in variants if v not in VARIANTS]
    if unknown:
        raise ValueError(f"unknown train variants {unknown}; known: {VARIANTS}")
    rates = matmul_rates(matmul_size)
    records = []
    with tempfile.TemporaryDirectory() as checkpoint:
        config = load_config(family, size)
        save_hf_checkpoint(config, checkpoint)
        parity = check_parity(family, size, checkpoint, shapes, fast_compile)
        print(f"[train] {family}/{size} parity: {parity}", flush=True)
        run = measure_isolated if isolate else measure
        results = {}
        for variant in variants:
            results[variant] = run(
                variant, family, size, checkpoint, shapes, repeats, fast_compile=fast_compile
            )
            print(f"[train] {family}/{size} {variant}: {results[variant]}", flush=True)
    cfg = api.backbone_config(config)
    analytic = {
        m: train_step_flops(cfg, m, shapes, pet_sizes(config))["total"]
        for m in ("vl_pet_large", "full_ft")
    }
    for variant, r in results.items():
        method = "full_ft" if variant == "ours_full_ft" else METHOD
        records.append(
            {
                "benchmark": "train",
                "family": family,
                "size": size,
                "variant": variant,
                "batch_size": shapes.batch_size,
                "tokens_in_out": f"{shapes.text_len}+{shapes.vis_len}/{shapes.target_len}",
                "examples_per_s": round(shapes.batch_size / r["min_step_s"], 2),
                "step_ms": round(1e3 * r["min_step_s"], 1),
                "median_step_ms": round(1e3 * r["step_s"], 1),
                "peak_rss_growth_mib": r["peak_rss_growth_mib"],
                "xla_memory_mib": r.get("xla_memory_mib"),
                "model_gflop": round(analytic[method] / 1e9, 2),
                "achieved_gflop_s": round(analytic[method] / r["min_step_s"] / 1e9, 1),
            }
        )
    records.append(_summary(family, size, shapes, results, analytic, parity, rates))
    return records


def _ratio(a: float | None, b: float | None, digits: int = 2) -> float | None:
    return None if a is None or b is None else round(a / b, digits)


def _summary(family, size, shapes, results, analytic, parity, rates) -> dict[str, Any]:
    """Ratios and MFU from each variant's fastest timed step: on a shared machine the minimum is
    the least disturbed measurement (the medians are in the per-variant records). Our bf16
    variant upcasts its frozen weights and multiplies in fp32 (`layers.Dense`), so its MFU is
    taken against the fp32 matmul rate as well."""
    ex = {v: shapes.batch_size / r["min_step_s"] for v, r in results.items()}
    step = {v: r["min_step_s"] for v, r in results.items()}
    fp32 = results.get("ours_fp32", {})
    summary = {
        "benchmark": "train_summary",
        "family": family,
        "size": size,
        "bf16_over_torch": _ratio(ex.get("ours_bf16"), ex.get("torch_vl_pet")),
        "fp32_over_torch": _ratio(ex.get("ours_fp32"), ex.get("torch_vl_pet")),
        "bf16_over_peft": _ratio(ex.get("ours_bf16"), ex.get("peft_lora")),
        "fp32_over_peft": _ratio(ex.get("ours_fp32"), ex.get("peft_lora")),
        "pet_fp32_over_full_ft_time": _ratio(step.get("ours_fp32"), step.get("ours_full_ft")),
        "pet_bf16_over_full_ft_time": _ratio(step.get("ours_bf16"), step.get("ours_full_ft")),
        "mfu_fp32": _mfu(analytic[METHOD], step.get("ours_fp32"), rates["jax_fp32_gflops"]),
        "mfu_bf16": _mfu(analytic[METHOD], step.get("ours_bf16"), rates["jax_fp32_gflops"]),
        "pet_gflop_analytic": round(analytic[METHOD] / 1e9, 2),
        "pet_gflop_jaxpr": _gflop(fp32.get("jaxpr_matmul_flops")),
        "pet_gflop_xla": _gflop(fp32.get("xla_flops")),
        "full_ft_gflop_analytic": round(analytic["full_ft"] / 1e9, 2),
        "full_ft_gflop_jaxpr": _gflop(results.get("ours_full_ft", {}).get("jaxpr_matmul_flops")),
        **parity,
    }
    return summary


def _gflop(flops: float | None) -> float | None:
    return None if flops is None else round(flops / 1e9, 2)


def _mfu(flops: float, step_s: float | None, rate_gflops: float) -> float | None:
    if step_s is None:
        return None
    return round(flops / step_s / 1e9 / rate_gflops, 3)


def run_optstate(
    families: Sequence[str], size: str = "base", methods: Sequence[str] | None = None
) -> list[dict[str, Any]]:
    """Optimiser-state bytes of every registered method (or `methods`; full fine-tuning always)
    over trainable leaves only, and their share of full fine-tuning's, from abstract shapes
    (nothing allocated)."""
    import jax

    from vlpet_jax import api
    from vlpet_jax.pet.registry import known_methods
    from vlpet_jax.pet.trainability import param_paths, split_params
    from vlpet_jax.train.optim import make_optimizer, optimizer_state_bytes

    records = []
    for family in families:
        sizes = {}
        wanted = list(methods) if methods is not None else known_methods()
        for method in dict.fromkeys([*wanted, "full_ft"]):
            config = load_config(family, size, method)
            abstract = api.abstract_params(config)
            trainable, _ = split_params(abstract, api.trainability_rules(config))
            tx, _ = make_optimizer(
                config.optim, 1000, trainable, api.decay_rules(config), param_paths(abstract)
            )
            state = jax.eval_shape(tx.init, trainable)
            count = sum(int(np.prod(x.shape)) for x in jax.tree.leaves(trainable))
            sizes[method] = (count, optimizer_state_bytes(state))
        full = sizes["full_ft"][1]
        for method, (count, nbytes) in sizes.items():
            records.append(
                {
                    "benchmark": "optstate",
                    "family": family,
                    "size": size,
                    "method": method,
                    "trainable_params": count,
                    "opt_state_mib": round(nbytes / 2**20, 2),
                    "pct_of_full_ft": round(100 * nbytes / full, 2),
                }
            )
    return records


def run_scaling(family: str, size: str = "base", batch_sizes: Sequence[int] = (4, 8, 16, 32),
                text_lengths: Sequence[int] = (20, 40, 80, 160), variants: Sequence[str] = ("ours_fp32",),
                repeats: int = 3, base: Shapes = DEFAULT_SHAPES, fast_compile: bool = False,
                matmul_size: int = 2048) -> list[dict[str, Any]]:  # fmt: skip
    """Our step time vs batch size (text `base.text_len`) and vs text length (batch
    `base.batch_size`), with the analytic model FLOPs and MFU of each point."""
    from vlpet_jax import api

    rates = matmul_rates(matmul_size)
    points = [dataclasses.replace(base, batch_size=b) for b in batch_sizes]
    points += [dataclasses.replace(base, text_len=t) for t in text_lengths]
    points = list(dict.fromkeys(points))
    records = []
    with tempfile.TemporaryDirectory() as checkpoint:
        for variant in variants:
            if not variant.startswith("ours_") or variant == "ours_full_ft":
                raise ValueError(f"scaling variants: ours_fp32 / ours_bf16, found {variant!r}")
            frozen = "bfloat16" if variant == "ours_bf16" else "float32"
            config = load_config(family, size, METHOD, frozen)
            if not os.path.exists(os.path.join(checkpoint, "config.json")):
                save_hf_checkpoint(config, checkpoint)
            params = ours_params(config, checkpoint, fast_compile=fast_compile)
            cfg = api.backbone_config(config)
            rate = rates["jax_fp32_gflops"]  # both variants multiply in fp32 (see `_summary`)
            for shapes in points:
                step = OursTrainStep(
                    config, params, make_batch(config, shapes), _options(fast_compile)
                )
                result = timing.time_call(step, repeats=repeats)
                flops = train_step_flops(cfg, METHOD, shapes, pet_sizes(config))["total"]
                seconds = result["min_s"]  # least disturbed step (see `_summary`)
                records.append(
                    {
                        "benchmark": "scaling",
                        "family": family,
                        "size": size,
                        "variant": variant,
                        "sweep": "batch" if shapes.text_len == base.text_len else "text_len",
                        "batch_size": shapes.batch_size,
                        "text_len": shapes.text_len,
                        "step_ms": round(1e3 * seconds, 1),
                        "examples_per_s": round(shapes.batch_size / seconds, 2),
                        "model_gflop": round(flops / 1e9, 2),
                        "achieved_gflop_s": round(flops / seconds / 1e9, 1),
                        "mfu": round(flops / seconds / 1e9 / rate, 3),
                    }
                )
                print(f"[scaling] {records[-1]}", flush=True)
                del step
    return records


def matmul_records(n: int = 2048) -> list[dict[str, Any]]:
    """The machine's measured matmul rates (the MFU denominators) as one record."""
    return [{"benchmark": "matmul", "n": n, **matmul_rates(n)}]


def _child_main(argv: list[str]) -> None:
    spec = json.loads(argv[1])
    shapes = Shapes(**spec.pop("shapes"))
    result = measure(shapes=shapes, **spec)
    print(json.dumps(result))


if __name__ == "__main__":
    os.environ.setdefault("JAX_PLATFORMS", "cpu")
    _child_main(sys.argv)
