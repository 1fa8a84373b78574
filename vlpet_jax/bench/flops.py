"""Model FLOPs of a train step, and this machine's dense-matmul rate (for MFU).

Three counts of the same step, from independent sources:

* `train_step_flops`: an analytic count of the matmul FLOPs (2·M·K·N each) the step *actually
  computes*. The forward pass runs every matmul. The backward pass of `y = x·W` computes
  `dL/dx` only when `x` depends on a trainable parameter (its gradient has somewhere to go) and
  `dL/dW` only when `W` is trainable (activation × activation products: each operand that depends
  on a trainable parameter). With VL-PET's frozen backbone that drops every frozen weight
  gradient, the input gradient of the visual projection (features are data), and the whole
  backward of decoder layer 0's self-attention and its cross-attention query (they see only the
  frozen decoder embeddings; the encoder output, which carries the trainable modules' gradient,
  enters at the cross-attention keys and values). Full fine-tuning computes everything but the
  input gradients of the visual projections.
* `jaxpr_matmul_flops`: the same quantity read off the differentiated program (every
  `dot_general` in the jaxpr of the step): what JAX's autodiff emitted.
* XLA's `compiled.cost_analysis()["flops"]` (all ops, elementwise included), reported by the
  benchmark as a cross-check.

Elementwise work (softmax, norms, GELU, dropout, AdamW) is not counted: MFU is matmul FLOPs per
second over the machine's matmul rate, measured here with `jnp.dot` on square matrices.
"""

from __future__ import annotations

import dataclasses
import functools
import time
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from vlpet_jax.models.config import BackboneConfig


@dataclasses.dataclass(frozen=True)
class Shapes:
    """One benchmark batch: `text_len` text + `vis_len` visual tokens in, `target_len` out."""

    batch_size: int = 16
    text_len: int = 20
    vis_len: int = 36
    target_len: int = 10
    feat_dim: int = 2048


@dataclasses.dataclass(frozen=True)
class Matmul:
    """`count` products of (M×K)·(K×N); `grad_lhs` / `grad_rhs`: whether the backward pass
    needs the gradient of that operand (see the module docstring)."""

    name: str
    m: int
    k: int
    n: int
    grad_lhs: bool
    grad_rhs: bool
    count: int = 1

    @property
    def forward(self) -> int:
        return 2 * self.m * self.k * self.n * self.count

    @property
    def backward(self) -> int:
        return self.forward * (int(self.grad_lhs) + int(self.grad_rhs))


PET_METHODS = ("vl_pet_large", "full_ft")


def train_step_matmuls(
    cfg: BackboneConfig, method: str, shapes: Shapes, pet: Mapping[str, int] | None = None
) -> list[Matmul]:
    """Every matmul of one train step of `method` (`vl_pet_large` or `full_ft`) on `cfg`.

    `pet` holds VL-PET's `rank`, `gate_rank`, `value_rank` (SPEC.md §3-§4).
    """
    if method not in PET_METHODS:
        raise ValueError(f"train_step_matmuls: method {method!r} not counted; known: {PET_METHODS}")
    full = method == "full_ft"
    b, v, t = shapes.batch_size, shapes.vis_len, shapes.target_len
    n = shapes.text_len + v
    d, h, dk, f = cfg.d_model, cfg.num_heads, cfg.d_kv, cfg.d_ff
    inner = h * dk
    enc_rows, dec_rows = b * n, b * t
    wi = 2 if cfg.ffn_activation == "gated-gelu" else 1
    out: list[Matmul] = [
        # Trainable visual projections of data: weight gradient only.
        Matmul("visual/feat_proj", b * v, shapes.feat_dim, d, False, True),
        Matmul("visual/box_proj", b * v, 5, d, False, True),
    ]
    le, ld = cfg.num_encoder_layers, cfg.num_decoder_layers
    # Encoder: every activation depends on the trainable visual tokens (and, for VL-PET, on the
    # modules of every sub-layer), so every input gradient is needed.
    out += [
        Matmul("enc/qkv", enc_rows, d, inner, True, full, 3 * le),
        Matmul("enc/scores", n, dk, n, True, True, b * h * le),
        Matmul("enc/attn_values", n, n, dk, True, True, b * h * le),
        Matmul("enc/o", enc_rows, inner, d, True, full, le),
        Matmul("enc/ffn_in", enc_rows, d, f, True, full, wi * le),
        Matmul("enc/ffn_out", enc_rows, f, d, True, full, le),
    ]
    if not full:
        pet = pet or {}
        r, rg, rd = pet["rank"], pet["gate_rank"], pet["value_rank"]
        sublayers = 2 * le
        out += [
            Matmul("enc_pet/mod_down", enc_rows, d, r, True, True, sublayers),
            Matmul("enc_pet/mod_up", enc_rows, r, d, True, True, sublayers),
            Matmul("enc_pet/gate_down", enc_rows, d, rg, True, True, sublayers),
            Matmul("enc_pet/gate_up", enc_rows, rg, d, True, True, sublayers),
            Matmul("dec_pet/value_down", enc_rows, d, rd, True, True, ld),
            Matmul("dec_pet/value_up", enc_rows, rd, d, True, True, ld),
        ]
    for layer in range(ld):
        # With a frozen backbone, decoder layer 0's self-attention (and its cross-attention
        # query) see only the frozen decoder embeddings: no gradient flows there.
        seen = full or layer > 0
        p = f"dec{layer}"
        out += [
            Matmul(f"{p}/self_qkv", dec_rows, d, inner, seen, full, 3),
            Matmul(f"{p}/self_scores", t, dk, t, seen, seen, b * h),
            Matmul(f"{p}/self_attn_values", t, t, dk, seen, seen, b * h),
            Matmul(f"{p}/self_o", dec_rows, inner, d, seen, full),
            Matmul(f"{p}/cross_q", dec_rows, d, inner, seen, full),
            Matmul(f"{p}/cross_kv", enc_rows, d, inner, True, full, 2),
            Matmul(f"{p}/cross_scores", t, dk, n, seen, True, b * h),
            Matmul(f"{p}/cross_attn_values", t, n, dk, True, True, b * h),
            Matmul(f"{p}/cross_o", dec_rows, inner, d, True, full),
            Matmul(f"{p}/ffn_in", dec_rows, d, f, True, full, wi),
            Matmul(f"{p}/ffn_out", dec_rows, f, d, True, full),
        ]
    out.append(Matmul("lm_head", dec_rows, d, cfg.vocab_size, True, full))
    return out


def train_step_flops(
    cfg: BackboneConfig, method: str, shapes: Shapes, pet: Mapping[str, int] | None = None
) -> dict[str, int]:
    """{"forward", "backward", "total"} matmul FLOPs of one train step (module docstring)."""
    matmuls = train_step_matmuls(cfg, method, shapes, pet)
    forward = sum(m.forward for m in matmuls)
    backward = sum(m.backward for m in matmuls)
    return {"forward": forward, "backward": backward, "total": forward + backward}


# ---------------------------------------------------------------------------- from the program


def _dot_flops(eqn) -> int:
    lhs, rhs = (v.aval.shape for v in eqn.invars[:2])
    (lhs_contract, _), (lhs_batch, _) = eqn.params["dimension_numbers"]
    contract = int(np.prod([lhs[i] for i in lhs_contract], dtype=np.int64))
    batch = int(np.prod([lhs[i] for i in lhs_batch], dtype=np.int64))
    lhs_free = int(np.prod(lhs, dtype=np.int64)) // (contract * batch)
    rhs_free = int(np.prod(rhs, dtype=np.int64)) // (contract * batch)
    return 2 * batch * lhs_free * rhs_free * contract


def _sub_jaxprs(eqn):
    for value in eqn.params.values():
        for item in value if isinstance(value, tuple | list) else (value,):
            inner = getattr(item, "jaxpr", item)
            if hasattr(inner, "eqns"):
                yield inner


def count_jaxpr_matmul_flops(jaxpr) -> int:
    """FLOPs of every `dot_general` in a (closed) jaxpr, sub-programs included (a `scan` body
    counted `length` times)."""
    jaxpr = getattr(jaxpr, "jaxpr", jaxpr)
    total = 0
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            total += _dot_flops(eqn)
            continue
        repeat = int(eqn.params.get("length", 1)) if eqn.primitive.name == "scan" else 1
        for sub in _sub_jaxprs(eqn):
            total += repeat * count_jaxpr_matmul_flops(sub)
    return total


def jaxpr_matmul_flops(fn: Callable, *args: Any) -> int:
    """Matmul FLOPs of `fn(*args)` as traced by JAX (nothing is run)."""
    import jax

    return count_jaxpr_matmul_flops(jax.make_jaxpr(fn)(*args))


def xla_flops(compiled: Any) -> float | None:
    """XLA's own FLOP estimate of a compiled program (None when the backend gives none)."""
    try:
        analysis = compiled.cost_analysis()
    except Exception:  # some backends do not implement it
        return None
    if isinstance(analysis, list | tuple):
        analysis = analysis[0] if analysis else {}
    flops = (analysis or {}).get("flops")
    return float(flops) if flops is not None else None


# ---------------------------------------------------------------------------- machine rate


def measure_matmul_rate(dtype: str = "float32", n: int = 2048, repeats: int = 10) -> float:
    """Best-of-`repeats` GFLOP/s of a jitted (n×n)·(n×n) `jnp.dot`; `dtype` bfloat16 means bf16
    inputs with f32 accumulation and output (`preferred_element_type`)."""
    import jax
    import jax.numpy as jnp

    rng = np.random.default_rng(0)
    a = jnp.asarray(rng.standard_normal((n, n)), dtype)
    b = jnp.asarray(rng.standard_normal((n, n)), dtype)
    dot = jax.jit(lambda a, b: jnp.dot(a, b, preferred_element_type=jnp.float32))
    dot(a, b).block_until_ready()
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        dot(a, b).block_until_ready()
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


def measure_torch_matmul_rate(n: int = 2048, repeats: int = 10) -> float:
    """The same for PyTorch fp32 (`torch.mm`), for context."""
    import torch

    a, b = torch.randn(n, n), torch.randn(n, n)
    torch.mm(a, b)
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        torch.mm(a, b)
        best = min(best, time.perf_counter() - start)
    return 2 * n**3 / best / 1e9


@functools.cache
def matmul_rates(n: int = 2048, repeats: int = 10) -> dict[str, float]:
    """GFLOP/s of jax fp32, jax bf16-in/f32-accumulate and torch fp32 matmuls, measured once per
    process (the MFU denominators)."""
    return {
        "jax_fp32_gflops": round(measure_matmul_rate("float32", n, repeats), 1),
        "jax_bf16_gflops": round(measure_matmul_rate("bfloat16", n, repeats), 1),
        "torch_fp32_gflops": round(measure_torch_matmul_rate(n, repeats), 1),
    }
