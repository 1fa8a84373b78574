"""Text of the benchmark: a corpus for denoising pre-training and a tiny word-level tokenizer.

The built-in pipeline (DESIGN.md "Built-in benchmark") pre-trains a tiny T5 and a tiny BART on the
benchmark's own language before tuning them on its tasks, then loads them through the same Hugging
Face code path as ``t5-base``. This module supplies both ingredients: ``text_corpus`` (every
question, statement, caption, choice, description and subtitle line, training splits only by
default so evaluation targets never leak into pre-training) and ``train_tokenizer`` (a word-level
``PreTrainedTokenizerFast`` directory with the special tokens of the chosen family and T5-style
``<extra_id_*>`` sentinels for span corruption).
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

from tokenizers import Tokenizer, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

from vlpet_jax.data.examples import Example, best_target
from vlpet_jax.data.tasks import get_task

# Special tokens in the id order of each family (SPEC.md §1): T5 pad 0 / eos 1 / unk 2, BART
# bos 0 / pad 1 / eos 2 / unk 3; both get the other family's tokens too, so either collator works.
SPECIAL_TOKENS = {
    "t5": ("<pad>", "</s>", "<unk>", "<s>"),
    "bart": ("<s>", "<pad>", "</s>", "<unk>"),
}
NUM_EXTRA_IDS = 100
# Split files of each task, training first (train_only keeps the first group).
_TASK_SPLITS = {
    "vqa": (("train",), ("val", "test")),
    "gqa": (("train",), ("valid", "testdev")),
    "nlvr": (("train",), ("valid", "test")),
    "caption": (("train",), ("val", "test")),
    "tvqa": (("train",), ("val",)),
    "how2qa": (("train",), ("val",)),
    "tvc": (("train",), ("val",)),
    "yc2c": (("train",), ("val",)),
}
_IMAGE_FILES = {
    "vqa": "vqa/karpathy_{}.json",
    "gqa": "GQA/{}.json",
    "nlvr": "nlvr/{}.json",
}
_VIDEO_FILES = {
    "tvqa": "video/ann/tvqa/tvqa_{}.jsonl",
    "how2qa": "video/ann/how2qa/how2qa_{}_release.jsonl",
    "tvc": "video/ann/tvc/tvc_{}_release.jsonl",
    "yc2c": "video/ann/yc2c/yc2c_{}_release.jsonl",
}
_SUBTITLES = ("tv", "how2", "yc2")
_OPTIONAL_PROMPTS = ("gqa: ",)  # the GQA reader's selectable alternative to the released "gpa: "


def _jsonl(path: Path) -> Iterator[dict]:
    with path.open(encoding="utf-8") as f:
        for line in f:
            if line.strip():
                yield json.loads(line)


def _splits(task: str, train_only: bool) -> tuple[str, ...]:
    train, evaluation = _TASK_SPLITS[task]
    return train if train_only else train + evaluation


def text_corpus(root: str | Path, train_only: bool = True) -> list[str]:
    """Every sentence of the benchmark under ``root``, in file order, duplicates kept.

    Questions (VQA, GQA), statements (NLVR2), captions (COCO), multiple-choice questions and their
    choices (TVQA, How2QA), descriptions (TVC, YC2C) and subtitle lines. Only the files present are
    read (an image-only tree gives image text). ``train_only=False`` adds the evaluation splits.
    Subtitles are not split by the releases; they are always included.
    """
    root = Path(root)
    texts: list[str] = []
    for task, pattern in _IMAGE_FILES.items():
        for split in _splits(task, train_only):
            path = root / pattern.format(split)
            if path.is_file():
                texts.extend(r["sent"] for r in json.loads(path.read_text(encoding="utf-8")))
    coco = root / "COCO" / "dataset_coco.json"
    if coco.is_file():
        wanted = {"train", "restval"} if train_only else {"train", "restval", "val", "test"}
        for image in json.loads(coco.read_text(encoding="utf-8"))["images"]:
            if image["split"] in wanted:
                texts.extend(s["raw"] for s in image["sentences"])
    for task, pattern in _VIDEO_FILES.items():
        for split in _splits(task, train_only):
            path = root / pattern.format(split)
            if not path.is_file():
                continue
            for record in _jsonl(path):
                if "q" in record:
                    texts.append(record["q"])
                    texts.extend(record[f"a{i}"] for i in range(5) if f"a{i}" in record)
                texts.extend(d["desc"] for d in record.get("descs", ()))
    for domain in _SUBTITLES:
        path = root / "video" / "ann" / f"{domain}_subtitles.jsonl"
        if path.is_file():
            texts.extend(line["text"] for record in _jsonl(path) for line in record["sub"])
    return texts


def task_pairs(root: str | Path, tasks: Iterable[str] | None = None) -> list[tuple[str, str]]:
    """Text-only (input, answer) pairs of the training splits: each reader's model input (prompt
    included) with its best-scored target, as a text-to-text corpus holds them.

    Pre-training on these is the tiny backbones' stand-in for T5's supervised multi-task mixture:
    the frozen decoder learns to emit answers of each task's *kind* (a colour, "yes", a caption),
    which the text alone cannot pin down (answers are balanced per question, see
    ``image_questions``). Which answer is right stays for the visual tokens, so a tuned model beats
    the text-only baseline only by reading them. Evaluation splits are never read.
    """
    examples = _task_examples(root, _TASK_SPLITS if tasks is None else tasks, train_only=True)
    return [(example.input_text, best_target(example)[0]) for example in examples]


def _task_examples(root: str | Path, tasks: Iterable[str], train_only: bool) -> Iterator[Example]:
    """Every example the task readers produce from the split files present under ``root``."""
    for task in tasks:
        for split in _splits(task, train_only):
            try:
                yield from get_task(task).load(Path(root), split, train=train_only)
            except FileNotFoundError:
                continue


def tokenizer_texts(root: str | Path) -> list[str]:
    """What the tokenizer must cover: every model input and target the task readers produce from
    ``root`` (prompts, ``[Subs]``/``[TS]`` markup and time stamps included), over all splits."""
    texts: list[str] = list(_OPTIONAL_PROMPTS)
    for example in _task_examples(root, _TASK_SPLITS, train_only=False):
        texts.append(example.input_text)
        texts.extend(example.targets)
    return texts


def _pre_tokenizer() -> pre_tokenizers.PreTokenizer:
    """Words split at whitespace, punctuation as separate tokens ("cube?" -> "cube", "?")."""
    return pre_tokenizers.Sequence(
        [pre_tokenizers.WhitespaceSplit(), pre_tokenizers.Punctuation(behavior="isolated")]
    )


def train_tokenizer(
    texts: Iterable[str],
    out_dir: str | Path | None = None,
    family: str = "t5",
    num_extra_ids: int = NUM_EXTRA_IDS,
) -> PreTrainedTokenizerFast:
    """A word-level tokenizer whose vocabulary is every word of ``texts``; saved to ``out_dir``.

    Ids: the family's special tokens first (``SPECIAL_TOKENS``), then words by decreasing count
    (ties alphabetical, so the same texts always give the same ids), then ``<extra_id_{n-1}>`` …
    ``<extra_id_0>`` as in T5 (``<extra_id_0>`` last), and for BART a final ``<mask>``. Saved as a
    Hugging Face directory that ``AutoTokenizer.from_pretrained`` (and so
    ``vlpet_jax.checkpoints.tokenizer.load_tokenizer``) reads.
    """
    if family not in SPECIAL_TOKENS:
        raise ValueError(f"family must be one of {sorted(SPECIAL_TOKENS)}, got {family!r}")
    pre = _pre_tokenizer()
    counts: Counter[str] = Counter()
    for text in texts:
        counts.update(word for word, _ in pre.pre_tokenize_str(text))
    specials = list(SPECIAL_TOKENS[family])
    extra = [f"<extra_id_{i}>" for i in range(num_extra_ids - 1, -1, -1)]
    extra += ["<mask>"] if family == "bart" else []
    words = [w for w, _ in sorted(counts.items(), key=lambda x: (-x[1], x[0])) if w not in specials]
    vocab = {token: i for i, token in enumerate([*specials, *words, *extra])}
    backend = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    backend.pre_tokenizer = pre
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        mask_token="<mask>" if family == "bart" else None,
        additional_special_tokens=extra[:num_extra_ids],
        model_max_length=1024,
    )
    if out_dir is not None:
        tokenizer.save_pretrained(str(out_dir))
    return tokenizer
