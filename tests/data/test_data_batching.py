"""Tokenization strategies (T5 / BART, SPEC.md §1) and bucketed padding.

Token ids come from the conftest vocabularies: T5 <pad>=0 </s>=1, then vqa:=3 what=7 is=8 red=9
blue=10; BART <s>=0 <pad>=1 </s>=2, then vqa:=4 what=8 is=9 red=10 blue=11.
"""

from __future__ import annotations

import numpy as np
import pytest

from vlpet_jax.data.batching import (
    IGNORE_ID,
    TextCollator,
    bucket_length,
    host_rows,
    sequence_format,
)


def test_bucket_length():
    assert bucket_length(5, (8, 16)) == 8
    assert bucket_length(8, (8, 16)) == 8
    assert bucket_length(9, (8, 16)) == 16
    assert bucket_length(17, (8, 16)) == 32
    assert bucket_length(33, (8, 16)) == 48


def test_t5_rows_labels_and_decoder_inputs(t5_tokenizer):
    collator = TextCollator(t5_tokenizer, "t5")
    arrays = collator.text_arrays(["vqa: what is red", None], ["blue", None], None, None)
    assert arrays["input_ids"].dtype == np.int32
    assert arrays["input_ids"].shape == (2, 16) and arrays["labels"].shape == (2, 8)
    assert arrays["input_ids"][0].tolist() == [3, 7, 8, 9, 1] + [0] * 11
    assert arrays["attention_mask"][0].tolist() == [1] * 5 + [0] * 11
    assert arrays["labels"][0].tolist() == [10, 1] + [IGNORE_ID] * 6
    # HF shift_tokens_right shifts the padded label row: </s> is fed at a position whose label is
    # ignored, and -100 becomes pad.
    assert arrays["decoder_input_ids"][0].tolist() == [0, 10, 1] + [0] * 5
    # A padding row: nothing to attend to, nothing to predict.
    assert arrays["input_ids"][1].tolist() == [0] * 16
    assert not arrays["attention_mask"][1].any()
    assert arrays["labels"][1].tolist() == [IGNORE_ID] * 8
    assert arrays["decoder_input_ids"][1].tolist() == [0] * 8


def test_bart_wraps_with_bos_eos_and_starts_decoder_with_eos(bart_tokenizer):
    collator = TextCollator(bart_tokenizer, "bart")
    arrays = collator.text_arrays(["vqa: what is red"], ["blue"], None, None)
    assert arrays["input_ids"][0].tolist() == [0, 4, 8, 9, 10, 2] + [1] * 10
    assert arrays["attention_mask"][0].tolist() == [1] * 6 + [0] * 10
    assert arrays["labels"][0].tolist() == [0, 11, 2] + [IGNORE_ID] * 5
    assert arrays["decoder_input_ids"][0].tolist() == [2, 0, 11, 2] + [1] * 4


def test_truncation_keeps_special_tokens(t5_tokenizer, bart_tokenizer):
    t5 = TextCollator(t5_tokenizer, "t5").text_arrays(["vqa: what is red"], ["red blue"], 3, 2)
    assert t5["input_ids"][0, :4].tolist() == [3, 7, 1, 0]
    assert t5["labels"][0, :3].tolist() == [9, 1, IGNORE_ID]
    bart = TextCollator(bart_tokenizer, "bart").text_arrays(["vqa: what is red"], ["red"], 4, 3)
    assert bart["input_ids"][0, :5].tolist() == [0, 4, 8, 2, 1]
    assert bart["labels"][0, :4].tolist() == [0, 10, 2, IGNORE_ID]


def test_lengths_are_bucketed_over_all_rows(t5_tokenizer):
    collator = TextCollator(t5_tokenizer, "t5", input_buckets=(8, 16), target_buckets=(4,))
    long_text = " ".join(["what"] * 20)  # 20 tokens + </s>
    arrays = collator.text_arrays(["red", long_text], ["blue", "red blue red blue"], None, None)
    assert arrays["input_ids"].shape == (2, 32)  # next multiple of the largest bucket
    assert arrays["labels"].shape == (2, 8)


def test_score_prefix_for_nlvr2(t5_tokenizer, bart_tokenizer):
    # SPEC.md §7: T5 reads position 0 after [pad]; BART position 1 after [</s>, <s>].
    assert sequence_format("t5", t5_tokenizer).score_prefix() == ([0], 0)
    assert sequence_format("bart", bart_tokenizer).score_prefix() == ([2, 0], 1)


def test_unknown_family_and_missing_special_tokens(t5_tokenizer):
    with pytest.raises(KeyError, match="unknown backbone family 'gpt'; known: t5, bart"):
        sequence_format("gpt", t5_tokenizer)
    with pytest.raises(ValueError, match="bart tokenizer needs a bos token"):
        sequence_format("bart", t5_tokenizer)  # the T5 vocabulary has no <s>
    with pytest.raises(ValueError, match="increasing"):
        TextCollator(t5_tokenizer, "t5", input_buckets=(16, 8))


def test_host_rows():
    assert host_rows(8, 0, 2) == slice(0, 4)
    assert host_rows(8, 1, 2) == slice(4, 8)
    with pytest.raises(ValueError, match="cannot be split evenly"):
        host_rows(7, 0, 2)
    with pytest.raises(ValueError, match="process_index 2"):
        host_rows(8, 2, 2)
