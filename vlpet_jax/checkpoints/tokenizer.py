"""Tokenizers for VL-PET: the checkpoint's own, plus the VL-T5 special tokens (SPEC.md §1).

VL-T5 (and so VL-Adapter and VL-PET) adds `<vis_extra_id_{i}>` tokens to T5 (which already has
`<extra_id_{i}>`) and both families to BART, numbered downwards so that `<vis_extra_id_0>` is the
last row of the table: the visual embedding reads object-order codes from `vocab - 1 - id`.
"""

from __future__ import annotations

import os

from transformers import AutoTokenizer, PreTrainedTokenizerBase

NUM_EXTRA_IDS = 100
NUM_VIS_EXTRA_IDS = 100


def vl_special_tokens(
    num_extra_ids: int = NUM_EXTRA_IDS, num_vis_extra_ids: int = NUM_VIS_EXTRA_IDS
):
    extra = [f"<extra_id_{i}>" for i in range(num_extra_ids - 1, -1, -1)]
    vis = [f"<vis_extra_id_{i}>" for i in range(num_vis_extra_ids - 1, -1, -1)]
    return extra + vis


def load_tokenizer(
    checkpoint_dir: str | os.PathLike,
    num_extra_ids: int = NUM_EXTRA_IDS,
    num_vis_extra_ids: int = NUM_VIS_EXTRA_IDS,
) -> PreTrainedTokenizerBase:
    """`AutoTokenizer` from the checkpoint directory with the VL-T5 special tokens added.

    Tokens the tokenizer already knows (T5's `<extra_id_*>`) are not added twice.
    """
    checkpoint_dir = os.fspath(checkpoint_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(checkpoint_dir)
    except (OSError, ValueError) as err:
        raise OSError(
            f"{checkpoint_dir}: could not load a tokenizer (expected tokenizer.json or "
            f"spiece.model / vocab files next to config.json): {err}"
        ) from err
    vocab = tokenizer.get_vocab()
    missing = [t for t in vl_special_tokens(num_extra_ids, num_vis_extra_ids) if t not in vocab]
    if missing:
        tokenizer.add_special_tokens(
            {"additional_special_tokens": missing}, replace_extra_special_tokens=False
        )
    return tokenizer


def model_vocab_size(checkpoint_vocab_size: int, tokenizer: PreTrainedTokenizerBase) -> int:
    """Rows the token table needs: the checkpoint's, grown to cover every tokenizer id."""
    return max(checkpoint_vocab_size, len(tokenizer))
