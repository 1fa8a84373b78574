"""Building blocks shared by the T5 and BART backbones.

Every parameter is created through `nn.with_logical_partitioning`, so sharding is one table of
logical-axis rules (see `vlpet_jax.train.sharding`). Parameters keep `param_dtype`; matmuls run in
`dtype` (e.g. bf16 frozen weights with fp32 trainable ones) with fp32 softmax and norms.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from vlpet_jax.models.hooks import PetHooks, Site

Array = jax.Array
DType = Any
Initializer = Callable[..., Array]

# Logical axis names used by every parameter and key activation.
VOCAB, EMBED, JOINED_KV, MLP, HEADS, RELPOS, ABSPOS = (
    "vocab",
    "embed",
    "joined_kv",
    "mlp",
    "heads",
    "relpos_buckets",
    "abspos",
)
BATCH, LENGTH, KV_LENGTH, HEAD_DIM = "batch", "length", "kv_length", "head_dim"


def normal_init(std: float) -> Initializer:
    return nn.initializers.normal(stddev=std)


def normal_init_zero_row(std: float, row: int) -> Initializer:
    """N(0, std) with one row set to zero: a PyTorch `nn.Embedding(padding_idx=row)` as Hugging
    Face's `_init_weights` leaves it (BART's token table)."""
    base = normal_init(std)

    def init(key: Array, shape: tuple[int, ...], dtype: DType = jnp.float32) -> Array:
        return base(key, shape, dtype).at[row].set(0)

    return init


def logical_param(
    module: nn.Module, name: str, init: Initializer, shape: tuple[int, ...], names, dtype: DType
) -> Array:
    """A parameter annotated with logical axis names (one name per dimension)."""
    return module.param(name, nn.with_logical_partitioning(init, names), shape, dtype)


def gelu_tanh(x: Array) -> Array:
    """The tanh approximation (`gelu_new`): used by every adapter and gate (SPEC.md §3)."""
    return jax.nn.gelu(x, approximate=True)


def gelu_exact(x: Array) -> Array:
    """The erf GELU that BART's FFN uses (SPEC.md §1)."""
    return jax.nn.gelu(x, approximate=False)


class Dense(nn.Module):
    """`y = x @ kernel (+ bias)`; kernel (in, out) is the transpose of a PyTorch Linear weight."""

    features: int
    axes: tuple[str, str]
    use_bias: bool = True
    kernel_init: Initializer = normal_init(0.02)
    bias_init: Initializer = nn.initializers.zeros_init()
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        kernel = logical_param(
            self, "kernel", self.kernel_init, (x.shape[-1], self.features), self.axes,
            self.param_dtype,
        )  # fmt: skip
        y = jnp.dot(x.astype(self.dtype), kernel.astype(self.dtype))
        if self.use_bias:
            bias = logical_param(
                self, "bias", self.bias_init, (self.features,), (self.axes[1],), self.param_dtype
            )
            y = y + bias.astype(self.dtype)
        return y


class RMSNorm(nn.Module):
    """T5's norm: scale only, no mean subtraction, no bias; computed in fp32."""

    eps: float = 1e-6
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        scale = logical_param(
            self, "scale", nn.initializers.ones_init(), (x.shape[-1],), (EMBED,), self.param_dtype
        )
        x32 = x.astype(jnp.float32)
        var = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
        y = x32 * jax.lax.rsqrt(var + self.eps)
        return (y * scale.astype(jnp.float32)).astype(self.dtype)


class LayerNorm(nn.Module):
    """BART's norm (scale and bias), computed in fp32."""

    eps: float = 1e-5
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, x: Array) -> Array:
        d = x.shape[-1]
        scale = logical_param(
            self, "scale", nn.initializers.ones_init(), (d,), (EMBED,), self.param_dtype
        )
        bias = logical_param(
            self, "bias", nn.initializers.zeros_init(), (d,), (EMBED,), self.param_dtype
        )
        x32 = x.astype(jnp.float32)
        mean = jnp.mean(x32, axis=-1, keepdims=True)
        var = jnp.mean(jnp.square(x32 - mean), axis=-1, keepdims=True)
        y = (x32 - mean) * jax.lax.rsqrt(var + self.eps)
        return (y * scale.astype(jnp.float32) + bias.astype(jnp.float32)).astype(self.dtype)


class Embed(nn.Module):
    """A lookup table that can also act as the tied output projection."""

    num_embeddings: int
    features: int
    axes: tuple[str, str] = (VOCAB, EMBED)
    embedding_init: Initializer = normal_init(1.0)
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32

    def setup(self) -> None:
        self.embedding = logical_param(
            self, "embedding", self.embedding_init, (self.num_embeddings, self.features),
            self.axes, self.param_dtype,
        )  # fmt: skip

    def __call__(self, ids: Array) -> Array:
        return jnp.take(self.embedding, ids, axis=0).astype(self.dtype)

    def attend(self, x: Array) -> Array:
        """Logits against every row: the tied LM head."""
        return jnp.dot(x.astype(self.dtype), self.embedding.astype(self.dtype).T)


def causal_mask(query_positions: Array, key_length: int) -> Array:
    """(Q, K) boolean: a query at position p sees keys 0..p."""
    return jnp.arange(key_length)[None, :] <= query_positions[:, None]


def mask_to_bias(mask: Array, dtype: DType = jnp.float32) -> Array:
    """Boolean keep-mask -> additive bias (0 where kept, the dtype's minimum elsewhere)."""
    return jnp.where(mask, 0.0, jnp.finfo(dtype).min).astype(dtype)


class Attention(nn.Module):
    """Multi-head attention with PET projection hooks and an optional decode cache.

    T5 does not scale the logits by 1/sqrt(d_kv) and has no biases; BART does both. `bias` is an
    additive (B or 1, H or 1, Q, K) term carrying masks and T5's relative positions.
    """

    num_heads: int
    d_kv: int
    d_model: int
    site: Site
    hooks: PetHooks
    use_bias: bool
    scale_logits: bool
    kernel_init: Initializer
    dropout_rate: float = 0.0
    dtype: DType = jnp.float32
    param_dtype: DType = jnp.float32
    # Per-projection overrides of `kernel_init` (T5 draws q and o at their own scales).
    q_kernel_init: Initializer | None = None
    o_kernel_init: Initializer | None = None

    def setup(self) -> None:
        inner = self.num_heads * self.d_kv
        dense = dict(use_bias=self.use_bias, dtype=self.dtype, param_dtype=self.param_dtype)
        q_init = self.q_kernel_init or self.kernel_init
        o_init = self.o_kernel_init or self.kernel_init
        self.q = Dense(inner, (EMBED, JOINED_KV), kernel_init=q_init, **dense)
        self.k = Dense(inner, (EMBED, JOINED_KV), kernel_init=self.kernel_init, **dense)
        self.v = Dense(inner, (EMBED, JOINED_KV), kernel_init=self.kernel_init, **dense)
        self.o = Dense(self.d_model, (JOINED_KV, EMBED), kernel_init=o_init, **dense)
        self.pet_q = self.hooks.projection(self.site, "q")
        self.pet_k = self.hooks.projection(self.site, "k")
        self.pet_v = self.hooks.projection(self.site, "v")
        self.pet_o = self.hooks.projection(self.site, "o")
        self.attn_dropout = nn.Dropout(self.dropout_rate)

    def _project(self, name: str, x: Array, train: bool) -> Array:
        y = getattr(self, name)(x)
        pet = getattr(self, f"pet_{name}")
        if pet is not None:
            y = y + pet(x, train=train).astype(y.dtype)
        return y

    def _split_heads(self, x: Array) -> Array:
        return x.reshape(*x.shape[:-1], self.num_heads, self.d_kv)

    def project_kv(self, kv_inputs: Array, train: bool = False) -> tuple[Array, Array]:
        """Keys and values (B, H, K, d_kv): computed once per sequence for cross-attention.

        Heads-major, because both attention matmuls batch over (B, H) and read K/V in this layout
        directly; keeping (B, K, H, d_kv) made XLA transpose the whole cached K/V at every decode
        step, which cost more than the matmuls themselves.
        """
        k = self._split_heads(self._project("k", kv_inputs, train))
        v = self._split_heads(self._project("v", kv_inputs, train))
        return jnp.swapaxes(k, 1, 2), jnp.swapaxes(v, 1, 2)

    def attend(
        self, x: Array, k: Array, v: Array, bias: Array | None, train: bool = False
    ) -> Array:
        """Attention of queries from `x` (N, Q, d) over given keys/values (B, H, K, d_kv).

        N may be a multiple G of B: rows b*G .. b*G + G - 1 then share the keys of item b (beam
        search's rows, HF's order), and their queries are attended together as G*Q queries of b
        rather than over G copies of the keys. `bias` broadcasts against (B, H, G*Q, K).
        """
        num_rows, num_queries = x.shape[:2]
        q = self._split_heads(self._project("q", x, train))
        if self.scale_logits:
            q = q * (self.d_kv**-0.5)
        q = q.reshape(k.shape[0], -1, self.num_heads, self.d_kv)
        logits = jnp.einsum("bqhd,bhkd->bhqk", q, k, preferred_element_type=jnp.float32)
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1)
        weights = self.attn_dropout(weights, deterministic=not train)
        out = jnp.einsum("bhqk,bhkd->bqhd", weights.astype(self.dtype), v.astype(self.dtype))
        out = out.reshape(num_rows, num_queries, self.num_heads * self.d_kv)
        return self._project("o", out, train)

    def __call__(
        self, x: Array, kv_inputs: Array, bias: Array | None, train: bool = False
    ) -> Array:
        k, v = self.project_kv(kv_inputs, train)
        return self.attend(x, k, v, bias, train)

    def decode_self(
        self, x: Array, cache: dict[str, Array], index: Array, bias: Array | None
    ) -> tuple[Array, dict[str, Array]]:
        """One decoding step of self-attention: write this step's K/V at `index`, attend to all.

        `x` is (N, 1, d) for N = B*G rows (G beams per item, row b*G + j). `cache` holds keys and
        values (B, H, G*max_len, d_kv), where slot g of item b keeps at g*max_len + t the K/V
        that the row in slot g computed at position t, and `slots` (N, max_len): the slot that
        holds each row's own history at each position (see `EncoderDecoderMixin.init_cache`).
        Each row scores its query against every slot of its item (cheap: G*max_len keys), keeps
        the score of its own ancestor per position, and takes a softmax over max_len positions
        exactly as a per-row cache would. `bias` (B or 1, H or 1, 1, max_len) must mask
        positions > index.
        """
        k_new, v_new = self.project_kv(x)  # (N, H, 1, d_kv)
        slots = cache["slots"]
        num_rows, max_length = slots.shape
        batch, heads, keys, d_kv = cache["k"].shape
        num_slots = num_rows // batch

        def write(buf: Array, new: Array) -> Array:
            new = jnp.swapaxes(new.reshape(batch, num_slots, heads, 1, d_kv), 1, 2)
            buf = buf.reshape(batch, heads, num_slots, max_length, d_kv)
            buf = jax.lax.dynamic_update_slice(buf, new.astype(buf.dtype), (0, 0, 0, index, 0))
            return buf.reshape(batch, heads, keys, d_kv)

        k, v = write(cache["k"], k_new), write(cache["v"], v_new)
        q = self._split_heads(self._project("q", x, False))
        if self.scale_logits:
            q = q * (self.d_kv**-0.5)
        q = q.reshape(batch, num_slots, heads, d_kv)
        logits = jnp.einsum("bjhd,bhsd->bhjs", q, k, preferred_element_type=jnp.float32)
        logits = logits.reshape(batch, heads, num_slots, num_slots, max_length)
        ancestor = slots.reshape(batch, 1, num_slots, 1, max_length)
        logits = jnp.take_along_axis(logits, ancestor, axis=3)[:, :, :, 0]
        if bias is not None:
            logits = logits + bias.astype(jnp.float32)
        weights = jax.nn.softmax(logits, axis=-1)  # (B, H, G, max_len)
        is_ancestor = ancestor == jnp.arange(num_slots)[:, None]
        weights = jnp.where(is_ancestor, weights[:, :, :, None, :], 0.0)
        weights = weights.reshape(batch, heads, num_slots, keys).astype(self.dtype)
        out = jnp.einsum("bhjs,bhsd->bjhd", weights, v.astype(self.dtype))
        out = out.reshape(num_rows, 1, heads * d_kv)
        return self._project("o", out, False), {"k": k, "v": v}


def relative_position_bucket(
    relative_position: Array, bidirectional: bool, num_buckets: int, max_distance: int
) -> Array:
    """T5's bucketing of key-minus-query offsets: exact for small, logarithmic for large ones.

    The logarithmic part depends only on the integer distance and saturates at `max_distance`,
    so it is a small host-side table in float32 (the arithmetic the reference uses) rather than
    a device `log`, whose last-ulp differences could move a distance into the next bucket.
    """
    buckets = jnp.zeros_like(relative_position)
    if bidirectional:
        num_buckets //= 2
        buckets = buckets + (relative_position > 0).astype(jnp.int32) * num_buckets
        distance = jnp.abs(relative_position)
    else:
        distance = -jnp.minimum(relative_position, 0)
    table = jnp.asarray(_distance_to_bucket_table(num_buckets, max_distance))
    return buckets + jnp.take(table, jnp.minimum(distance, max_distance), axis=0)


@functools.cache
def _distance_to_bucket_table(num_buckets: int, max_distance: int) -> np.ndarray:
    """Bucket of every distance 0..max_distance for one direction (num_buckets per direction)."""
    max_exact = num_buckets // 2
    distance = np.arange(max_distance + 1)
    with np.errstate(divide="ignore"):
        ratio = np.log(distance.astype(np.float32) / np.float32(max_exact))
    scaled = ratio / np.float32(math.log(max_distance / max_exact))
    scaled = scaled * np.float32(num_buckets - max_exact)
    large = max_exact + np.where(distance >= max_exact, scaled, 0).astype(np.int32)
    large = np.minimum(large, num_buckets - 1)
    return np.where(distance < max_exact, distance, large).astype(np.int32)


class RelativePositionBias(nn.Module):
    """T5's learned per-head bias over bucketed relative positions (computed in layer 0)."""

    num_buckets: int
    max_distance: int
    num_heads: int
    bidirectional: bool
    embedding_init: Initializer
    param_dtype: DType = jnp.float32

    @nn.compact
    def __call__(self, query_positions: Array, key_positions: Array) -> Array:
        """(1, H, Q, K) float32 bias for the given absolute positions."""
        table = logical_param(
            self, "embedding", self.embedding_init, (self.num_buckets, self.num_heads),
            (RELPOS, HEADS), self.param_dtype,
        )  # fmt: skip
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_bucket(
            relative, self.bidirectional, self.num_buckets, self.max_distance
        )
        values = jnp.take(table.astype(jnp.float32), buckets, axis=0)  # (Q, K, H)
        return jnp.transpose(values, (2, 0, 1))[None]
