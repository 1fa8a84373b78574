"""Tokenization and collation: examples -> the fixed-shape batch dict the model takes.

The batch (NumPy; R rows = the global batch padded to a multiple of the data-parallel size, then
this host's slice of them):

=================== =============== ======= ===================================================
key                 shape           dtype   meaning
=================== =============== ======= ===================================================
input_ids           (R, L_in)       int32   encoder text, specials added, padded with pad id
attention_mask      (R, L_in)       int32   1 on text tokens (= input_ids != pad), 0 on padding
vis_feats           (R, V, F)       float32 pooled visual features (V = 36, 72 NLVR2, 64 video)
vis_pos             (R, V, 4)       float32 boxes [x1, y1, x2, y2]; all zeros (SPEC.md §2)
img_order_ids       (R, V)          int32   0…0 (NLVR2: 0…0,1…1)
obj_order_ids       (R, V)          int32   0..V_img-1 per image
decoder_input_ids   (R, L_out)      int32   decoder start id, then the padded labels shifted right
labels              (R, L_out)      int32   target ids; -100 on padding (ignored by the loss)
loss_weights        (R,)            float32 VQA: drawn answer's score; else 1; 0 on padding rows
example_mask        (R,)            float32 1 for real examples, 0 for padding rows
task_ids            (R,)            int32   ``TaskSpec.task_id`` of the batch's task
=================== =============== ======= ===================================================

L_in and L_out are rounded up to a few length buckets so a jitted step compiles a handful of times.
Lengths are computed over the *global* batch, so every host produces the same shapes.

How the backbone family shapes the sequences (SPEC.md §1), chosen by a small strategy object:

- ``t5``: text ``ids + </s>``; decoder start = pad (0); labels ``ids + </s>``.
- ``bart``: text ``<s> ids </s>``; decoder start = ``</s>`` (2); labels ``<s> ids </s>``, so the
  decoder input is ``</s> <s> ids`` (HF ``shift_tokens_right`` of the released labels).

Truncation keeps the first ``max_len - n_special`` content tokens, as HF ``encode(max_length=…,
truncation=True)`` does in the released loaders.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from vlpet_jax.data.examples import Example
from vlpet_jax.data.features import VisualTokens
from vlpet_jax.data.tasks.registry import TaskSpec

IGNORE_ID = -100
DEFAULT_INPUT_BUCKETS = (16, 32, 64, 128, 256, 384, 512, 640)
DEFAULT_TARGET_BUCKETS = (8, 16, 32, 64)


class SequenceFormat(Protocol):
    """How one backbone family wraps token ids and starts its decoder."""

    family: str
    pad_id: int
    decoder_start_id: int

    def wrap(self, ids: Sequence[int], max_len: int | None) -> list[int]:
        """Add the family's special tokens, truncating content to fit ``max_len``."""
        ...

    def score_prefix(self) -> tuple[list[int], int]:
        """Decoder input and read position for one-step true/false scoring (SPEC.md §7 NLVR2)."""
        ...


def _truncate(ids: Sequence[int], budget: int | None) -> list[int]:
    ids = list(ids)
    if budget is None:
        return ids
    if budget < 0:
        raise ValueError("max_len is shorter than the special tokens it must hold")
    return ids[:budget]


@dataclass(frozen=True)
class T5Format:
    """T5: ``ids </s>``; the decoder starts from pad."""

    pad_id: int
    eos_id: int
    family: str = "t5"

    @property
    def decoder_start_id(self) -> int:
        return self.pad_id

    def wrap(self, ids: Sequence[int], max_len: int | None) -> list[int]:
        return [*_truncate(ids, None if max_len is None else max_len - 1), self.eos_id]

    def score_prefix(self) -> tuple[list[int], int]:
        return [self.pad_id], 0


@dataclass(frozen=True)
class BartFormat:
    """BART: ``<s> ids </s>``; the decoder starts from ``</s>``."""

    pad_id: int
    bos_id: int
    eos_id: int
    family: str = "bart"

    @property
    def decoder_start_id(self) -> int:
        return self.eos_id

    def wrap(self, ids: Sequence[int], max_len: int | None) -> list[int]:
        return [self.bos_id, *_truncate(ids, None if max_len is None else max_len - 2), self.eos_id]

    def score_prefix(self) -> tuple[list[int], int]:
        return [self.eos_id, self.bos_id], 1


def _special_id(tokenizer: Any, name: str, family: str) -> int:
    value = getattr(tokenizer, f"{name}_token_id", None)
    if value is None:
        raise ValueError(f"a {family} tokenizer needs a {name} token; this one has none")
    return int(value)


def _t5_format(tokenizer: Any) -> T5Format:
    return T5Format(_special_id(tokenizer, "pad", "t5"), _special_id(tokenizer, "eos", "t5"))


def _bart_format(tokenizer: Any) -> BartFormat:
    return BartFormat(
        _special_id(tokenizer, "pad", "bart"),
        _special_id(tokenizer, "bos", "bart"),
        _special_id(tokenizer, "eos", "bart"),
    )


FORMATS: dict[str, Callable[[Any], SequenceFormat]] = {"t5": _t5_format, "bart": _bart_format}


def sequence_format(family: str, tokenizer: Any) -> SequenceFormat:
    """The strategy of a backbone family (``t5`` or ``bart``), ids read from ``tokenizer``."""
    if family not in FORMATS:
        raise KeyError(f"unknown backbone family '{family}'; known: {', '.join(FORMATS)}")
    return FORMATS[family](tokenizer)


def bucket_length(length: int, buckets: Sequence[int]) -> int:
    """The smallest bucket ≥ ``length``; beyond the largest, the next multiple of the largest."""
    for size in buckets:
        if length <= size:
            return size
    largest = buckets[-1]
    return -(-length // largest) * largest


class TextCollator:
    """Tokenizes with any Hugging Face tokenizer and pads to bucketed lengths.

    Args:
      tokenizer: a ``PreTrainedTokenizer`` / ``PreTrainedTokenizerFast`` (called with
        ``add_special_tokens=False``; specials come from the family's format).
      family: ``"t5"`` or ``"bart"``.
      input_buckets / target_buckets: increasing padded lengths.
    """

    def __init__(
        self,
        tokenizer: Any,
        family: str,
        input_buckets: Sequence[int] = DEFAULT_INPUT_BUCKETS,
        target_buckets: Sequence[int] = DEFAULT_TARGET_BUCKETS,
    ) -> None:
        for name, buckets in (("input_buckets", input_buckets), ("target_buckets", target_buckets)):
            if not buckets or list(buckets) != sorted(set(buckets)) or buckets[0] < 1:
                raise ValueError(f"{name} must be increasing positive lengths, got {buckets}")
        self.tokenizer = tokenizer
        self.format = sequence_format(family, tokenizer)
        self.input_buckets = tuple(input_buckets)
        self.target_buckets = tuple(target_buckets)

    def tokenize(self, texts: Sequence[str]) -> list[list[int]]:
        if not texts:
            return []
        return [
            list(ids) for ids in self.tokenizer(list(texts), add_special_tokens=False)["input_ids"]
        ]

    def text_arrays(
        self,
        inputs: Sequence[str | None],
        targets: Sequence[str | None],
        max_input_len: int | None,
        max_target_len: int | None,
    ) -> dict[str, np.ndarray]:
        """Token arrays for all rows; a None input is a padding row, a None target has no label."""
        fmt = self.format
        input_ids = self._wrap_all(inputs, max_input_len)
        label_ids = self._wrap_all(targets, max_target_len)
        rows = len(inputs)
        in_len = bucket_length(max((len(x) for x in input_ids if x), default=1), self.input_buckets)
        out_len = bucket_length(
            max((len(y) for y in label_ids if y), default=1), self.target_buckets
        )
        arrays = {
            "input_ids": np.full((rows, in_len), fmt.pad_id, np.int32),
            "attention_mask": np.zeros((rows, in_len), np.int32),
            "labels": np.full((rows, out_len), IGNORE_ID, np.int32),
            "decoder_input_ids": np.full((rows, out_len), fmt.pad_id, np.int32),
        }
        arrays["decoder_input_ids"][:, 0] = fmt.decoder_start_id
        for r, (x, y) in enumerate(zip(input_ids, label_ids)):
            if x:
                arrays["input_ids"][r, : len(x)] = x
                arrays["attention_mask"][r, : len(x)] = 1
            if y:
                arrays["labels"][r, : len(y)] = y
                shifted = y[: out_len - 1]
                arrays["decoder_input_ids"][r, 1 : 1 + len(shifted)] = shifted
        return arrays

    def _wrap_all(self, texts: Sequence[str | None], max_len: int | None) -> list[list[int] | None]:
        present = [i for i, t in enumerate(texts) if t is not None]
        tokenized = self.tokenize([texts[i] for i in present])
        wrapped: list[list[int] | None] = [None] * len(texts)
        for i, ids in zip(present, tokenized):
            wrapped[i] = self.format.wrap(ids, max_len)
        return wrapped


def stack_visuals(tokens: Sequence[VisualTokens], dtype: Any = np.float32) -> dict[str, np.ndarray]:
    """Stack per-example visual tokens into the batch's four visual arrays."""
    return {
        "vis_feats": np.stack([t.feats for t in tokens]).astype(dtype, copy=False),
        "vis_pos": np.stack([t.pos for t in tokens]).astype(np.float32, copy=False),
        "img_order_ids": np.stack([t.img_order_ids for t in tokens]).astype(np.int32, copy=False),
        "obj_order_ids": np.stack([t.obj_order_ids for t in tokens]).astype(np.int32, copy=False),
    }


class VisualSource(Protocol):
    """Feature keys -> visual tokens, plus zero tokens for padding rows (``features.py``)."""

    def __call__(self, feature_keys: Sequence[str]) -> VisualTokens: ...

    def empty(self, num_images: int = 1) -> VisualTokens: ...


@dataclass
class Batch:
    """One host's part of one global batch.

    ``arrays`` is the model's batch dict (module docstring). ``examples`` and ``targets`` list this
    host's rows (None / "" for padding rows) so predictions map back to ids and references.
    ``state`` is the iterator state right after this batch (``multitask.py``), for checkpoints.
    """

    task: str
    arrays: dict[str, np.ndarray]
    examples: list[Example | None]
    targets: list[str]
    state: dict[str, Any] | None = field(default=None)


def host_rows(num_rows: int, process_index: int, process_count: int) -> slice:
    """The contiguous rows of a global batch that host ``process_index`` owns."""
    if not 0 <= process_index < process_count:
        raise ValueError(f"process_index {process_index} not in [0, {process_count})")
    if num_rows % process_count:
        raise ValueError(f"{num_rows} rows cannot be split evenly over {process_count} hosts")
    per_host = num_rows // process_count
    return slice(process_index * per_host, (process_index + 1) * per_host)


def build_batch(
    spec: TaskSpec,
    collator: TextCollator,
    visuals: VisualSource,
    rows: Sequence[Example | None],
    drawn: Sequence[tuple[str, float] | None],
    *,
    process_index: int = 0,
    process_count: int = 1,
    vis_dtype: Any = np.float32,
) -> Batch:
    """Collate a global batch (``rows``, None = padding) and keep this host's slice.

    ``drawn`` holds the chosen ``(target, loss_weight)`` per row (None = no target). Text is
    tokenized for every row so that all hosts agree on the bucketed lengths; visual features are
    loaded only for this host's rows.
    """
    inputs = [ex.input_text if ex is not None else None for ex in rows]
    targets = [
        d[0] if (d is not None and ex is not None and ex.targets) else None
        for ex, d in zip(rows, drawn)
    ]
    arrays = collator.text_arrays(inputs, targets, spec.max_input_len, spec.max_target_len)
    own = host_rows(len(rows), process_index, process_count)
    arrays = {k: v[own] for k, v in arrays.items()}
    host_examples = list(rows[own])
    host_drawn = list(drawn[own])
    tokens = [
        visuals(ex.feature_keys) if ex is not None else visuals.empty(spec.images_per_example)
        for ex in host_examples
    ]
    arrays.update(stack_visuals(tokens, vis_dtype))
    arrays["loss_weights"] = np.array(
        [
            d[1] if (d is not None and ex is not None) else 0.0
            for ex, d in zip(host_examples, host_drawn)
        ],
        np.float32,
    )
    arrays["example_mask"] = np.array([ex is not None for ex in host_examples], np.float32)
    arrays["task_ids"] = np.full((len(host_examples),), spec.task_id, np.int32)
    return Batch(
        task=spec.name,
        arrays=arrays,
        examples=host_examples,
        targets=[
            d[0] if (d is not None and ex is not None) else ""
            for ex, d in zip(host_examples, host_drawn)
        ],
    )
