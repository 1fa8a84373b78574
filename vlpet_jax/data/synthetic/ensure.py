"""``ensure_benchmark``: the benchmark and its tokenizers under a run's work directory, made once.

Training on ``config.data.root = "synthetic"`` calls this on every start (and on every host). The
tree is built in a temporary sibling directory and renamed into place, so ``root`` either does not
exist or is complete: a run killed mid-generation leaves nothing half-written behind, and when
several processes race, one rename wins and the others use its result. A complete tree that was
generated with other settings is an error, not silently reused.
"""

from __future__ import annotations

import json
import os
import shutil
import uuid
from pathlib import Path
from typing import Any

from vlpet_jax.data.synthetic.corpus import SPECIAL_TOKENS, text_corpus, tokenizer_texts
from vlpet_jax.data.synthetic.corpus import train_tokenizer as _train_tokenizer
from vlpet_jax.data.synthetic.generate import MANIFEST, Kind, generate_benchmark
from vlpet_jax.data.synthetic.sizes import make_sizes

TOKENIZER_DIR = "tokenizer"


def tokenizer_path(root: str | os.PathLike, family: str = "t5") -> str:
    """The benchmark's tokenizer for a backbone family: ``<root>/tokenizer/<family>``.

    One per family because the special-token ids differ (T5 pad 0 / eos 1, BART bos 0 / pad 1 /
    eos 2, SPEC.md §1) and must match the backbone's config.
    """
    if family not in SPECIAL_TOKENS:
        raise ValueError(f"family must be one of {sorted(SPECIAL_TOKENS)}, got {family!r}")
    return os.path.join(os.fspath(root), TOKENIZER_DIR, family)


def _expected_manifest(seed: int, kind: str, sizes: dict[str, Any]) -> dict[str, Any]:
    return {"seed": seed, "kind": kind, "sizes": make_sizes(**sizes).to_dict()}


def _check(root: Path, expected: dict[str, Any]) -> dict[str, Any]:
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise FileExistsError(
            f"{root} exists but holds no {MANIFEST}: it is not a synthetic benchmark this code "
            "generated (or a copy of one was truncated); remove it or choose another directory"
        )
    manifest = json.loads(manifest_path.read_text(encoding="utf-8"))
    found = {k: manifest.get(k) for k in expected}
    if found != expected:
        raise ValueError(
            f"{root} holds a synthetic benchmark generated with {found}, but {expected} was "
            "requested; remove it or use another work directory"
        )
    return manifest


def ensure_benchmark(
    root: str | os.PathLike, seed: int = 0, kind: Kind = "image", **sizes: Any
) -> dict[str, Any]:
    """Generate the benchmark and one tokenizer per family at ``root`` unless already there.

    Returns the manifest (seed, kind, sizes, example counts). Arguments as ``generate_benchmark``.
    """
    root = Path(root)
    expected = _expected_manifest(seed, kind, sizes)
    if root.exists():
        return _check(root, expected)
    root.parent.mkdir(parents=True, exist_ok=True)
    staging = root.with_name(f".{root.name}.tmp-{uuid.uuid4().hex}")
    try:
        generate_benchmark(staging, seed=seed, kind=kind, **sizes)
        texts = tokenizer_texts(staging) + text_corpus(staging, train_only=False)
        for family in SPECIAL_TOKENS:
            _train_tokenizer(texts, tokenizer_path(staging, family), family=family)
        try:
            staging.rename(root)
        except OSError:
            if not (root / MANIFEST).is_file():
                raise  # not a lost race: a real failure
    finally:
        if staging.exists():
            shutil.rmtree(staging)
    return _check(root, expected)
