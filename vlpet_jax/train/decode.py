"""Greedy and beam search over a KV cache, token-for-token what Hugging Face `generate` returns.

The released VL-PET numbers were decoded with `transformers.generate` (SPEC.md §7: greedy for VQA/GQA,
beam 5 for captioning, BART's no-repeat-3-gram), so reproducing them needs the same search, not just a
search: the same candidate pool (top 2·num_beams over all beams, so that EOS candidates never starve
the running beams), the same float32 score bookkeeping (log-softmax *before* the logits processors,
HF's -1e9 "impossible" offsets added in HF's order, length penalty divided in float32 by a
double-precision `len ** length_penalty`), and HF's three stopping rules (`early_stopping` True /
False / "never").

The searches are model-agnostic: a model supplies a `step_fn` that maps the token at one decoder
position to next-token logits while updating its own cache, and (for beam search) a `reorder_cache`
that makes the parts of that cache which depend on the decoded prefix follow the surviving beams.
Each search is one `lax.while_loop` over static-shaped buffers that exits as soon as HF's loop would.

Differences from HF, all confined to what the loop *returns*, not to which tokens it picks:
- Outputs are always `(batch, max_length)`, padded with `pad_token_id` after the end of each
  sequence. HF crops beam-search output to the longest returned sequence and greedy output to the
  number of steps taken, and fills finished beams with `pad_token_id or eos_token_id` (so T5, whose
  pad id 0 is falsy, gets EOS-filled beams). Strip everything after the first EOS to compare.
- Ties between bit-identical candidate scores go to the lowest flat index (`lax.top_k`);
  `torch.topk` on CPU orders ties arbitrarily. Exact ties only arise between candidates that are
  both -inf or both pushed down by -1e9, which never become the returned sequence.
- `log_softmax` is XLA's, so scores can differ from PyTorch's in the last bit; token ids change only
  where two candidates are within one float32 ulp.
- `num_beams == 1` runs greedy search, as `generate` does.
"""

import functools
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any
StepFn = Callable[[jax.Array, PyTree, jax.Array], tuple[jax.Array, PyTree]]
"""step_fn(tokens (N,) int32, cache, index scalar int32) -> (next-token logits (N, V), new cache)."""
ReorderFn = Callable[[PyTree, jax.Array], PyTree]
"""reorder_cache(cache, row_indices (N,) int32) -> cache whose row r comes from row row_indices[r]."""

# HF's stand-in for "impossible" in beam bookkeeping. Exactly representable in float32; adding it
# (rather than masking with -inf) is what HF does, and the rounding it causes is part of the result.
_NEG = -1.0e9

_STATIC = (
    "step_fn",
    "batch_size",
    "max_length",
    "decoder_start_token_id",
    "eos_token_id",
    "pad_token_id",
    "no_repeat_ngram_size",
    "min_length",
    "forced_bos_token_id",
    "forced_eos_token_id",
)


def _take_rows(cache: PyTree, row_indices: jax.Array) -> PyTree:
    """Default `reorder_cache`: every leaf follows the beams (correct, if wasteful for encoder K/V)."""
    return jax.tree.map(lambda leaf: jnp.take(leaf, row_indices, axis=0), cache)


def _ban_repeated_ngrams(
    scores: jax.Array, seqs: jax.Array, cur_len: jax.Array, n: int
) -> jax.Array:
    """HF `NoRepeatNGramLogitsProcessor` on static buffers.

    `seqs` (N, L) holds `cur_len` valid tokens (decoder start included, as in HF's `input_ids`). A
    window of n tokens that lies wholly inside the prefix and whose first n-1 tokens equal the last
    n-1 tokens bans its own last token. The window starting at the suffix itself is not yet complete,
    so a suffix never bans its own successor.
    """
    num_rows, buf_len = seqs.shape
    vocab = scores.shape[-1]
    num_windows = buf_len - n + 1
    window_pos = np.arange(num_windows)[:, None] + np.arange(n)[None, :]  # (W, n), static
    windows = seqs[:, window_pos]  # (N, W, n)
    suffix = jax.lax.dynamic_slice_in_dim(seqs, jnp.maximum(cur_len - (n - 1), 0), n - 1, axis=1)
    complete = jnp.arange(num_windows) + n <= cur_len
    matches = jnp.all(windows[:, :, :-1] == suffix[:, None, :], axis=-1) & complete[None, :]
    matches &= cur_len >= n
    # Non-matching windows scatter into a spare column past the vocab so they cannot un-ban anything.
    target = jnp.where(matches, jnp.minimum(windows[:, :, -1], vocab), vocab)
    rows = jnp.broadcast_to(jnp.arange(num_rows)[:, None], target.shape)
    banned = jnp.zeros((num_rows, vocab + 1), bool).at[rows, target].set(True)[:, :vocab]
    return jnp.where(banned, -jnp.inf, scores)


def _force_token(scores: jax.Array, token_id: int, when: jax.Array) -> jax.Array:
    """HF's forced-BOS/EOS processors: every score -inf except `token_id`, which becomes 0."""
    forced = jnp.where(jnp.arange(scores.shape[-1]) == token_id, 0.0, -jnp.inf).astype(scores.dtype)
    return jnp.where(when, forced[None, :], scores)


def _process_scores(
    scores: jax.Array,
    seqs: jax.Array,
    cur_len: jax.Array,
    *,
    max_length: int,
    eos_token_id: int,
    no_repeat_ngram_size: int,
    min_length: int,
    forced_bos_token_id: int | None,
    forced_eos_token_id: int | None,
) -> jax.Array:
    """The logits processors `generate` builds for these options, in `_get_logits_processor` order.

    `cur_len` is HF's `input_ids.shape[-1]`: the number of tokens already decoded, start included.
    """
    if no_repeat_ngram_size > 0:
        scores = _ban_repeated_ngrams(scores, seqs, cur_len, no_repeat_ngram_size)
    if min_length > 0:
        is_eos = jnp.arange(scores.shape[-1]) == eos_token_id
        scores = jnp.where(is_eos[None, :] & (cur_len < min_length), -jnp.inf, scores)
    if forced_bos_token_id is not None:
        scores = _force_token(scores, forced_bos_token_id, cur_len == 1)
    if forced_eos_token_id is not None:
        scores = _force_token(scores, forced_eos_token_id, cur_len == max_length - 1)
    return scores


def _check_args(max_length: int, min_length: int, no_repeat_ngram_size: int) -> None:
    if max_length < 2:
        raise ValueError(
            f"decode: max_length={max_length}, expected >= 2 (it counts the decoder start token)"
        )
    if min_length < 0 or no_repeat_ngram_size < 0:
        raise ValueError(
            f"decode: min_length={min_length} and no_repeat_ngram_size={no_repeat_ngram_size} "
            "must be >= 0 (0 disables them)"
        )


@functools.partial(jax.jit, static_argnames=_STATIC)
def greedy_search(
    step_fn: StepFn,
    cache: PyTree,
    *,
    batch_size: int,
    max_length: int,
    decoder_start_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    no_repeat_ngram_size: int = 0,
    min_length: int = 0,
    forced_bos_token_id: int | None = None,
    forced_eos_token_id: int | None = None,
) -> jax.Array:
    """Greedy decoding as HF `_sample` with `do_sample=False`; returns (batch, max_length) int32.

    Processors act on the raw logits (no softmax), then argmax. A row that has emitted EOS gets
    `pad_token_id` from then on; the loop stops when every row has finished or the buffer is full.
    `step_fn` is a static argument: pass a stable callable, or call this inside your own `jax.jit`
    with a closure over traced params (then the closure costs nothing).
    """
    _check_args(max_length, min_length, no_repeat_ngram_size)
    process = functools.partial(
        _process_scores,
        max_length=max_length,
        eos_token_id=eos_token_id,
        no_repeat_ngram_size=no_repeat_ngram_size,
        min_length=min_length,
        forced_bos_token_id=forced_bos_token_id,
        forced_eos_token_id=forced_eos_token_id,
    )
    seqs = jnp.full((batch_size, max_length), pad_token_id, jnp.int32)
    seqs = seqs.at[:, 0].set(decoder_start_token_id)
    unfinished = jnp.ones((batch_size,), bool)

    def cond(state):
        cur_len, _, unfinished, _ = state
        return (cur_len < max_length) & jnp.any(unfinished)

    def body(state):
        cur_len, seqs, unfinished, cache = state
        logits, cache = step_fn(seqs[:, cur_len - 1], cache, cur_len - 1)
        scores = process(logits.astype(jnp.float32), seqs, cur_len)
        next_tokens = jnp.argmax(scores, axis=-1).astype(jnp.int32)
        next_tokens = jnp.where(unfinished, next_tokens, pad_token_id)
        seqs = seqs.at[:, cur_len].set(next_tokens)
        return cur_len + 1, seqs, unfinished & (next_tokens != eos_token_id), cache

    state = (jnp.asarray(1, jnp.int32), seqs, unfinished, cache)
    return jax.lax.while_loop(cond, body, state)[1]


@functools.partial(
    jax.jit,
    static_argnames=(*_STATIC, "num_beams", "length_penalty", "early_stopping", "reorder_cache"),
)
def beam_search(
    step_fn: StepFn,
    cache: PyTree,
    *,
    batch_size: int,
    num_beams: int,
    max_length: int,
    decoder_start_token_id: int,
    eos_token_id: int,
    pad_token_id: int,
    length_penalty: float = 1.0,
    early_stopping: bool | str = False,
    no_repeat_ngram_size: int = 0,
    min_length: int = 0,
    reorder_cache: ReorderFn | None = None,
    forced_bos_token_id: int | None = None,
    forced_eos_token_id: int | None = None,
) -> jax.Array:
    """Beam search as HF `_beam_search`; returns the best beam per item, (batch, max_length) int32.

    Row b*num_beams + k of the search is beam k of item b (all beams equal at the start). After
    each step the cache follows the surviving beams through `reorder_cache(cache, rows)`, row i
    continuing from row `rows[i]`. The default takes rows of every leaf, for caches with one row
    per beam in every leaf; our backbones' caches keep encoder K/V per item and self-attention
    K/V per slot, and move only a small slot table (`models.encdec.reorder_self_cache`).

    Per step, as HF does: log-softmax, processors, add each beam's running score, keep the top
    2·num_beams (beam, token) candidates; the best num_beams that did not just end (EOS or max length)
    keep running, and the ones among the top num_beams that did end compete, scored
    `sum_logprobs / gen_len ** length_penalty`, for the num_beams finished slots. The loop ends when
    no item can still improve (`early_stopping`: True = once num_beams are finished; False = once the
    best running score, at the current length, cannot beat the worst finished one; "never" = the same
    at the best reachable length), or when every candidate has ended.
    """
    if num_beams < 1:
        raise ValueError(f"beam_search: num_beams={num_beams}, expected >= 1")
    if early_stopping not in (True, False, "never"):
        raise ValueError(
            f"beam_search: early_stopping={early_stopping!r}, expected True, False or 'never'"
        )
    if num_beams == 1:
        return greedy_search(
            step_fn,
            cache,
            batch_size=batch_size,
            max_length=max_length,
            decoder_start_token_id=decoder_start_token_id,
            eos_token_id=eos_token_id,
            pad_token_id=pad_token_id,
            no_repeat_ngram_size=no_repeat_ngram_size,
            min_length=min_length,
            forced_bos_token_id=forced_bos_token_id,
            forced_eos_token_id=forced_eos_token_id,
        )
    _check_args(max_length, min_length, no_repeat_ngram_size)
    reorder_cache = reorder_cache or _take_rows
    process = functools.partial(
        _process_scores,
        max_length=max_length,
        eos_token_id=eos_token_id,
        no_repeat_ngram_size=no_repeat_ngram_size,
        min_length=min_length,
        forced_bos_token_id=forced_bos_token_id,
        forced_eos_token_id=forced_eos_token_id,
    )
    stop_when_full = early_stopping is True
    # HF divides a float32 tensor by the Python double `gen_len ** length_penalty`, which torch casts
    # to float32; computing the power on device in float32 would round differently.
    penalty = np.ones(max_length + 1, np.float32)
    penalty[1:] = [float(n) ** float(length_penalty) for n in range(1, max_length + 1)]
    penalty = jnp.asarray(penalty)
    num_rows = batch_size * num_beams
    num_cands = 2 * num_beams  # one EOS id: enough candidates that num_beams never end at once
    in_top_beams = jnp.arange(num_cands) < num_beams

    def gather(x, idx):
        """x[b, idx[b, j], ...] — pick beams (axis 1) per item."""
        idx = idx.reshape(idx.shape + (1,) * (x.ndim - 2))
        return jnp.take_along_axis(x, idx, axis=1)

    def add_neg(x, mask):
        return x + mask.astype(jnp.float32) * _NEG

    running_seqs = jnp.full((batch_size, num_beams, max_length), pad_token_id, jnp.int32)
    running_seqs = running_seqs.at[:, :, 0].set(decoder_start_token_id)
    # Only beam 0 may expand at the first step; the others are copies of it.
    running_scores = jnp.zeros((batch_size, num_beams), jnp.float32).at[:, 1:].set(_NEG)
    state = dict(
        cur_len=jnp.asarray(1, jnp.int32),
        keep_going=jnp.asarray(True),
        running_seqs=running_seqs,
        running_scores=running_scores,
        seqs=running_seqs,
        scores=jnp.full((batch_size, num_beams), _NEG, jnp.float32),
        finished=jnp.zeros((batch_size, num_beams), bool),
        can_improve=jnp.ones((batch_size, 1), bool),
        cache=cache,
    )

    def cond(s):
        return s["keep_going"] & (s["cur_len"] < max_length)

    def body(s):
        cur_len = s["cur_len"]
        flat_seqs = s["running_seqs"].reshape(num_rows, max_length)
        logits, cache = step_fn(flat_seqs[:, cur_len - 1], s["cache"], cur_len - 1)
        log_probs = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
        log_probs = process(log_probs, flat_seqs, cur_len)
        vocab = log_probs.shape[-1]
        log_probs = log_probs.reshape(batch_size, num_beams, vocab) + s["running_scores"][..., None]

        # Top 2·num_beams continuations over all beams of an item (HF `_get_top_k_continuations`).
        cand_scores, flat_idx = jax.lax.top_k(log_probs.reshape(batch_size, -1), num_cands)
        cand_parent = flat_idx // vocab
        cand_tokens = (flat_idx % vocab).astype(jnp.int32)
        cand_seqs = gather(s["running_seqs"], cand_parent).at[:, :, cur_len].set(cand_tokens)
        cand_rows = cand_parent + jnp.arange(batch_size)[:, None] * num_beams
        ended = (cand_tokens == eos_token_id) | (cur_len + 1 >= max_length)

        # Running beams: the best num_beams candidates that did not end.
        cand_running = add_neg(cand_scores, ended)
        keep = jax.lax.top_k(cand_running, num_beams)[1]
        running_seqs = gather(cand_seqs, keep)
        running_scores = gather(cand_running, keep)
        parent_rows = gather(cand_rows, keep)

        # Finished beams (HF `_update_finished_beams`): the offsets are added one at a time, as HF
        # does, because each float32 addition of -1e9 rounds.
        just_ended = ended & in_top_beams[None, :]
        new_scores = cand_scores / penalty[cur_len]
        new_scores = add_neg(new_scores, jnp.all(s["finished"], -1, keepdims=True) & stop_when_full)
        new_scores = add_neg(new_scores, ~s["can_improve"])
        new_scores = add_neg(new_scores, ~just_ended)
        merged_scores = jnp.concatenate([s["scores"], new_scores], axis=1)
        best = jax.lax.top_k(merged_scores, num_beams)[1]
        seqs = gather(jnp.concatenate([s["seqs"], cand_seqs], axis=1), best)
        scores = gather(merged_scores, best)
        finished = gather(jnp.concatenate([s["finished"], just_ended], axis=1), best)

        cache = reorder_cache(cache, parent_rows.reshape(num_rows))

        # HF `_check_early_stop_heuristic`, evaluated at the new length.
        cur_len = cur_len + 1
        if early_stopping == "never" and length_penalty > 0.0:
            best_len = max_length - 1
        else:
            best_len = cur_len - 1
        best_running = running_scores[:, :1] / penalty[best_len]
        worst_finished = jnp.where(finished, jnp.min(scores, axis=1, keepdims=True), _NEG)
        can_improve = s["can_improve"] & jnp.any(best_running > worst_finished, -1, keepdims=True)

        keep_going = jnp.any(can_improve) & ~(jnp.all(finished) & stop_when_full) & ~jnp.all(ended)
        return dict(
            cur_len=cur_len,
            keep_going=keep_going,
            running_seqs=running_seqs,
            running_scores=running_scores,
            seqs=seqs,
            scores=scores,
            finished=finished,
            can_improve=can_improve,
            cache=cache,
        )

    return jax.lax.while_loop(cond, body, state)["seqs"][:, 0]
