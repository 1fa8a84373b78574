"""Greedy and beam search against Hugging Face `generate` and against a plain-Python reference.

The toy decoder is a "trigram" table model: the next-token logits depend on the item, the last
token, the position and the token before the last. The JAX step function reads that earlier token
from its cache, not from the sequence, so a beam whose cache rows were not reordered with it reads
another beam's history and decodes differently: every comparison below is also a cache-reorder test.
The PyTorch twin reads the same tables from the full `input_ids` (no cache), which is exactly what
HF's `generate` feeds it, so its output is HF's search applied to the same distribution.
"""

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from transformers import GenerationConfig, GenerationMixin, PretrainedConfig, PreTrainedModel
from transformers.generation.logits_process import NoRepeatNGramLogitsProcessor
from transformers.modeling_outputs import CausalLMOutput

from vlpet_jax.train.decode import _ban_repeated_ngrams, beam_search, greedy_search

VOCAB = 16  # >= 2 * the largest beam count, so the first step never draws on the -1e9 copies
MAX_LEN = 12
BATCH = 3
SEEDS = range(8)


class Cfg(NamedTuple):
    beams: int = 1
    early_stopping: bool | str = False
    length_penalty: float = 1.0
    ngram: int = 0
    min_length: int = 0
    start: int = 0  # T5-like ids by default; the BART-like rows use start = eos = 2, pad = 1
    eos: int = 1
    pad: int = 0
    forced_bos: int | None = None
    forced_eos: int | None = None
    reorder: str = (
        "default"  # "hist_only": reorder only the history, as a model does its self-attn K/V
    )


CONFIGS = [
    Cfg(),
    Cfg(ngram=3, min_length=6),
    Cfg(start=2, eos=2, pad=1, ngram=3, forced_bos=0, forced_eos=2),
    Cfg(beams=3, early_stopping=False, length_penalty=1.0),
    Cfg(beams=3, early_stopping=False, length_penalty=2.0),
    Cfg(beams=3, early_stopping=True, length_penalty=0.6, ngram=3, reorder="hist_only"),
    Cfg(beams=3, early_stopping="never", length_penalty=2.0, min_length=5),
    Cfg(beams=5, early_stopping=True, length_penalty=1.0, ngram=3),
    Cfg(beams=5, early_stopping=False, length_penalty=0.6, min_length=7, reorder="hist_only"),
    Cfg(beams=5, early_stopping="never", length_penalty=1.0, ngram=3),
    Cfg(beams=5, early_stopping="never", length_penalty=-0.5),
    Cfg(beams=4, early_stopping=True, start=2, eos=2, pad=1, ngram=3, forced_bos=0, forced_eos=2),
]


def _tables(seed: int, cfg: Cfg) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Peaked tables (so n-gram bans bite) with a per-item EOS bias (so lengths vary)."""
    rng = np.random.default_rng(seed)
    t1 = (rng.standard_normal((BATCH, VOCAB, VOCAB)) * 2.0).astype(np.float32)
    t1[:, :, cfg.eos] += rng.uniform(0.5, 4.0, size=(BATCH, 1)).astype(np.float32)
    t2 = rng.standard_normal((MAX_LEN, VOCAB)).astype(np.float32)
    t3 = rng.standard_normal((BATCH, VOCAB, VOCAB)).astype(np.float32)
    return t1, t2, t3


# ----------------------------------------------------------------------------------- JAX side


def _toy_step(t1, t2, t3, on_step, tokens, cache, index):
    """Logits = t1[item, last] + t2[position] + t3[item, token before last], that token from the cache."""
    jax.debug.callback(on_step)
    item, hist = cache["item"], cache["hist"]
    logits = t1[item, tokens] + t2[index]
    before_last = hist[:, jnp.maximum(index - 1, 0)]
    logits = jnp.where(index >= 1, logits + t3[item, before_last], logits)
    return logits, {"item": item, "hist": hist.at[:, index].set(tokens)}


def _reorder_hist_only(cache, rows):
    return {"item": cache["item"], "hist": jnp.take(cache["hist"], rows, axis=0)}


class _Counter:
    def __init__(self) -> None:
        self.calls = 0

    def __call__(self) -> None:
        self.calls += 1


@functools.cache
def _jax_decoder(cfg: Cfg, reorder: str | None = None):
    """A jitted decoder per config (compiled once, reused across seeds and tests) and its step counter."""
    counter = _Counter()
    reorder = reorder or cfg.reorder
    reorder_fn = {"default": None, "hist_only": _reorder_hist_only, "none": lambda c, r: c}[reorder]
    rows = BATCH * cfg.beams

    def run(t1, t2, t3):
        cache = {
            "item": jnp.repeat(jnp.arange(BATCH), cfg.beams),
            "hist": jnp.zeros((rows, MAX_LEN), jnp.int32),
        }
        step = functools.partial(_toy_step, t1, t2, t3, counter)
        common = dict(
            batch_size=BATCH,
            max_length=MAX_LEN,
            decoder_start_token_id=cfg.start,
            eos_token_id=cfg.eos,
            pad_token_id=cfg.pad,
            no_repeat_ngram_size=cfg.ngram,
            min_length=cfg.min_length,
            forced_bos_token_id=cfg.forced_bos,
            forced_eos_token_id=cfg.forced_eos,
        )
        if cfg.beams == 1:
            return greedy_search(step, cache, **common)
        return beam_search(
            step,
            cache,
            num_beams=cfg.beams,
            length_penalty=cfg.length_penalty,
            early_stopping=cfg.early_stopping,
            reorder_cache=reorder_fn,
            **common,
        )

    return jax.jit(run), counter


def _run_jax(cfg: Cfg, seed: int, reorder: str | None = None) -> tuple[np.ndarray, int]:
    decode, counter = _jax_decoder(cfg, reorder)
    counter.calls = 0
    out = np.asarray(decode(*_tables(seed, cfg)))
    jax.effects_barrier()
    return out, counter.calls


# ------------------------------------------------------------------- plain-Python reference


def _ref_logits(tables, item: int, seq: list[int]) -> np.ndarray:
    t1, t2, t3 = tables
    logits = t1[item, seq[-1]] + t2[len(seq) - 1]
    if len(seq) >= 2:
        logits = logits + t3[item, seq[-2]]
    return logits


def _ref_log_softmax(x: np.ndarray) -> np.ndarray:
    shifted = x - x.max()
    return shifted - np.log(np.sum(np.exp(shifted)))


def _ref_process(scores: np.ndarray, seq: list[int], cfg: Cfg) -> np.ndarray:
    """HF's processors written out from their documented behaviour, one sequence at a time."""
    scores = scores.copy()
    n = cfg.ngram
    if n and len(seq) >= n:
        seen: dict[tuple[int, ...], list[int]] = {}
        for i in range(len(seq) - n + 1):
            seen.setdefault(tuple(seq[i : i + n - 1]), []).append(seq[i + n - 1])
        for token in seen.get(tuple(seq[len(seq) - n + 1 :]), []):
            scores[token] = -np.inf
    if len(seq) < cfg.min_length:
        scores[cfg.eos] = -np.inf
    for token, at_len in ((cfg.forced_bos, 1), (cfg.forced_eos, MAX_LEN - 1)):
        if token is not None and len(seq) == at_len:
            scores[:] = -np.inf
            scores[token] = 0.0
    return scores


def _pad(seq: list[int], cfg: Cfg) -> list[int]:
    return seq + [cfg.pad] * (MAX_LEN - len(seq))


def _ref_greedy(tables, cfg: Cfg) -> np.ndarray:
    out = []
    for item in range(BATCH):
        seq = [cfg.start]
        while len(seq) < MAX_LEN:
            scores = _ref_process(_ref_logits(tables, item, seq), seq, cfg)
            seq.append(int(np.argmax(scores)))
            if seq[-1] == cfg.eos:
                break
        out.append(_pad(seq, cfg))
    return np.array(out)


def _top(scores: list[np.float32], k: int) -> list[int]:
    """Indices of the k largest, earlier index first among equals (as `lax.top_k`)."""
    return sorted(range(len(scores)), key=lambda i: (-scores[i], i))[:k]


def _ref_beam(tables, cfg: Cfg) -> np.ndarray:
    """HF `_beam_search`, one item at a time, with the whole batch sharing the stopping decision."""
    k, f32, neg = cfg.beams, np.float32, np.float32(-1e9)
    penalty = {n: f32(n**cfg.length_penalty) for n in range(1, MAX_LEN + 1)}
    running = [[[cfg.start] for _ in range(k)] for _ in range(BATCH)]
    running_scores = [[f32(0.0)] + [neg] * (k - 1) for _ in range(BATCH)]
    done = [[[cfg.start] for _ in range(k)] for _ in range(BATCH)]
    done_scores = [[neg] * k for _ in range(BATCH)]
    done_flags = [[False] * k for _ in range(BATCH)]
    can_improve = [True] * BATCH
    cur_len = 1
    while True:
        all_ended = True
        for b in range(BATCH):
            cand = []  # (score, sequence, ended), flat index order: beam-major, then token
            for beam, seq in enumerate(running[b]):
                log_probs = _ref_log_softmax(_ref_logits(tables, b, seq))
                log_probs = _ref_process(log_probs, seq, cfg)
                for token in range(VOCAB):
                    cand.append((log_probs[token] + running_scores[b][beam], [*seq, token]))
            cand = [cand[i] for i in _top([c[0] for c in cand], 2 * k)]
            ended = [seq[-1] == cfg.eos or len(seq) >= MAX_LEN for _, seq in cand]
            all_ended &= all(ended)

            run_scores = [s + neg if e else s for (s, _), e in zip(cand, ended)]
            keep = _top(run_scores, k)
            new_running = [cand[i][1] for i in keep]
            new_running_scores = [run_scores[i] for i in keep]

            full = all(done_flags[b]) and cfg.early_stopping is True
            fin_scores, fin_flags = [], []
            for j, ((s, _), e) in enumerate(zip(cand, ended)):
                just = e and j < k
                s = s / penalty[cur_len]
                for blocked in (full, not can_improve[b], not just):
                    s = s + neg if blocked else s
                fin_scores.append(s)
                fin_flags.append(just)
            merged_seqs = done[b] + [seq for _, seq in cand]
            merged_scores = done_scores[b] + fin_scores
            merged_flags = done_flags[b] + fin_flags
            best = _top(merged_scores, k)
            done[b] = [merged_seqs[i] for i in best]
            done_scores[b] = [merged_scores[i] for i in best]
            done_flags[b] = [merged_flags[i] for i in best]
            running[b], running_scores[b] = new_running, new_running_scores

        cur_len += 1
        if cfg.early_stopping == "never" and cfg.length_penalty > 0:
            best_len = MAX_LEN - 1
        else:
            best_len = cur_len - 1
        for b in range(BATCH):
            best_running = running_scores[b][0] / penalty[best_len]
            worst = min(done_scores[b])
            can_improve[b] = can_improve[b] and any(
                best_running > (worst if flag else neg) for flag in done_flags[b]
            )
        all_full = all(all(flags) for flags in done_flags) and cfg.early_stopping is True
        if not any(can_improve) or all_full or all_ended or cur_len >= MAX_LEN:
            break
    return np.array([_pad(done[b][0], cfg) for b in range(BATCH)])


def _reference(cfg: Cfg, seed: int) -> np.ndarray:
    tables = _tables(seed, cfg)
    return _ref_greedy(tables, cfg) if cfg.beams == 1 else _ref_beam(tables, cfg)


# ------------------------------------------------------------------------ Hugging Face side


class _ToyConfig(PretrainedConfig):
    model_type = "vlpet_toy_trigram"

    def __init__(self, vocab_size: int = VOCAB, **kwargs):
        self.vocab_size = vocab_size
        super().__init__(**kwargs)


class _ToyLM(PreTrainedModel, GenerationMixin):
    """The same trigram tables in PyTorch, driven by HF's own `generate` (no cache: full prefix)."""

    config_class = _ToyConfig

    def __init__(self, config: _ToyConfig, tables, rows_per_item: int):
        super().__init__(config)
        self.t1, self.t2, self.t3 = (
            torch.nn.Parameter(torch.from_numpy(t), requires_grad=False) for t in tables
        )
        self.rows_per_item = rows_per_item
        self.calls = 0

    def forward(self, input_ids, attention_mask=None, **kwargs):
        self.calls += 1
        rows, length = input_ids.shape
        item = torch.arange(rows) // self.rows_per_item
        logits = self.t1[item, input_ids[:, -1]] + self.t2[length - 1]
        if length >= 2:
            logits = logits + self.t3[item, input_ids[:, -2]]
        return CausalLMOutput(logits=logits[:, None, :])


def _run_hf(cfg: Cfg, seed: int) -> tuple[np.ndarray, int]:
    model = _ToyLM(_ToyConfig(), _tables(seed, cfg), rows_per_item=cfg.beams).eval()
    gen_cfg = GenerationConfig(
        max_length=MAX_LEN,
        num_beams=cfg.beams,
        do_sample=False,
        early_stopping=cfg.early_stopping,
        length_penalty=cfg.length_penalty,
        no_repeat_ngram_size=cfg.ngram,
        min_length=cfg.min_length,
        eos_token_id=cfg.eos,
        pad_token_id=cfg.pad,
        forced_bos_token_id=cfg.forced_bos,
        forced_eos_token_id=cfg.forced_eos,
        use_cache=False,
    )
    prompt = torch.full((BATCH, 1), cfg.start, dtype=torch.long)
    with torch.no_grad():
        out = model.generate(
            prompt, attention_mask=torch.ones_like(prompt), generation_config=gen_cfg
        )
    return out.numpy(), model.calls


def _cut_after_eos(rows: np.ndarray, cfg: Cfg) -> np.ndarray:
    """Keep each row up to its first generated EOS, then pad: HF's fill value and crop differ."""
    out = []
    for row in rows.tolist():
        seq = row[:1]
        for token in row[1:]:
            seq.append(token)
            if token == cfg.eos:
                break
        out.append(_pad(seq, cfg))
    return np.array(out)


# ------------------------------------------------------------------------------------ tests


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_matches_reference(cfg: Cfg):
    for seed in SEEDS:
        got, _ = _run_jax(cfg, seed)
        np.testing.assert_array_equal(got, _reference(cfg, seed), err_msg=f"seed {seed}")


@pytest.mark.parametrize("cfg", CONFIGS, ids=str)
def test_matches_hf_generate(cfg: Cfg):
    for seed in SEEDS:
        got, steps = _run_jax(cfg, seed)
        want, hf_steps = _run_hf(cfg, seed)
        # Our output is already in the cut-and-padded form; HF's needs it.
        np.testing.assert_array_equal(got, _cut_after_eos(got, cfg), err_msg=f"seed {seed}")
        np.testing.assert_array_equal(got, _cut_after_eos(want, cfg), err_msg=f"seed {seed}")
        assert steps == hf_steps, f"seed {seed}: {steps} decoder steps, HF took {hf_steps}"


def test_cache_must_follow_beams():
    """Without reordering, beams read each other's history: the toy is sensitive to it."""
    cfg = Cfg(beams=5, early_stopping=False)
    differs = [
        not np.array_equal(_run_jax(cfg, seed, reorder="none")[0], _reference(cfg, seed))
        for seed in SEEDS
    ]
    assert any(differs)


@pytest.mark.parametrize("num_beams", [1, 3])
def test_direct_call_without_outer_jit(num_beams: int):
    """The searches are jitted themselves; `num_beams=1` is greedy search, as in `generate`."""
    cfg = Cfg(beams=num_beams, ngram=3)
    tables = [jnp.asarray(t) for t in _tables(0, cfg)]
    step = functools.partial(_toy_step, *tables, _Counter())
    cache = {
        "item": jnp.repeat(jnp.arange(BATCH), num_beams),
        "hist": jnp.zeros((BATCH * num_beams, MAX_LEN), jnp.int32),
    }
    got = beam_search(
        step,
        cache,
        batch_size=BATCH,
        num_beams=num_beams,
        max_length=MAX_LEN,
        decoder_start_token_id=cfg.start,
        eos_token_id=cfg.eos,
        pad_token_id=cfg.pad,
        no_repeat_ngram_size=cfg.ngram,
    )
    np.testing.assert_array_equal(np.asarray(got), _reference(cfg, 0))


def test_ngram_ban_matches_hf_processor():
    rng = np.random.default_rng(0)
    ban = jax.jit(_ban_repeated_ngrams, static_argnames="n")
    for n in (2, 3, 4):
        seqs = rng.integers(0, 4, size=(8, 14)).astype(np.int32)  # 4 ids: many repeats
        scores = rng.standard_normal((8, 6)).astype(np.float32)
        for cur_len in range(1, 15):
            want = NoRepeatNGramLogitsProcessor(n)(
                torch.from_numpy(seqs[:, :cur_len]).long(), torch.from_numpy(scores)
            )
            got = ban(jnp.asarray(scores), jnp.asarray(seqs), jnp.int32(cur_len), n=n)
            np.testing.assert_array_equal(np.asarray(got), want.numpy(), err_msg=f"{n=} {cur_len=}")


def test_bad_arguments_are_named():
    step = functools.partial(_toy_step, *_tables(0, Cfg()), _Counter())
    cache = {"item": jnp.zeros((3,), jnp.int32), "hist": jnp.zeros((3, MAX_LEN), jnp.int32)}
    args = dict(batch_size=3, decoder_start_token_id=0, eos_token_id=1, pad_token_id=0)
    with pytest.raises(ValueError, match="early_stopping"):
        beam_search(step, cache, num_beams=1, max_length=8, early_stopping="sometimes", **args)
    with pytest.raises(ValueError, match="max_length"):
        greedy_search(step, cache, max_length=1, **args)
