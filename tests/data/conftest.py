"""Fixtures for the data-pipeline tests: tiny word-level tokenizers and official-format writers."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import h5py
import numpy as np
import pytest
from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

# fmt: off
WORDS = [
    "vqa:", "gpa:", "nlvr:", "caption:", "what", "is", "red", "blue", "a", "b", "c", "d", "the",
    "cat", "dog", "on", "plate", "food", "pizza", "true", "false", "hi", "there", "how", "are",
    "you", "fine", "ross", "waves", "says", "add", "salt",
]
# fmt: on


def _word_tokenizer(specials: list[str], **special_names: str) -> PreTrainedTokenizerFast:
    vocab = {token: i for i, token in enumerate([*specials, *WORDS])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.WhitespaceSplit()
    return PreTrainedTokenizerFast(tokenizer_object=backend, unk_token="<unk>", **special_names)


@pytest.fixture(scope="session")
def t5_tokenizer() -> PreTrainedTokenizerFast:
    """T5 layout: <pad>=0, </s>=1, <unk>=2, then WORDS from id 3 (vqa:=3, gpa:=4, ...)."""
    return _word_tokenizer(["<pad>", "</s>", "<unk>"], pad_token="<pad>", eos_token="</s>")


@pytest.fixture(scope="session")
def bart_tokenizer() -> PreTrainedTokenizerFast:
    """BART layout: <s>=0, <pad>=1, </s>=2, <unk>=3, then WORDS from id 4 (vqa:=4, ...)."""
    return _word_tokenizer(
        ["<s>", "<pad>", "</s>", "<unk>"], bos_token="<s>", pad_token="<pad>", eos_token="</s>"
    )


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_jsonl(path: Path, records: list[Any]) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    return path


def write_h5(directory: Path, img_id: str, feats: np.ndarray, dataset: str | None = None) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{img_id}.h5"
    with h5py.File(path, "w") as f:
        f.create_dataset(dataset or f"{img_id}/features", data=feats)
    return path


def write_npz(directory: Path, vid_name: str, feats: np.ndarray, key: str = "features") -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{vid_name}.npz"
    np.savez(path, **{key: feats})
    return path


class Writers:
    """The writers above, handed to tests as one fixture (tests/ is not a package)."""

    json = staticmethod(write_json)
    jsonl = staticmethod(write_jsonl)
    h5 = staticmethod(write_h5)
    npz = staticmethod(write_npz)


@pytest.fixture
def write() -> type[Writers]:
    return Writers
