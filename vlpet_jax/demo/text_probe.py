"""Can a tiny backbone answer the benchmark's questions when the scene is written out as text?

The demo's PET runs can only beat the text-only baseline if the frozen backbone can do the
question's reasoning (pick the object the question names, compare attributes, count) once the
visual tokens tell it what is in the scene. This probe asks the easier question first: pretrain a
tiny backbone exactly as the demo does, but with every question/answer pair *grounded* (the input
ends with ``context:`` and each image's objects in words, ``small red cone , large blue cube``),
then score it on the validation questions with their context. If the backbone cannot use
a perfect, textual description of the scene, no PET module on top of it can use a visual one.

Scores are teacher-forced exact matches of the whole answer (every answer token the argmax),
next to the text-only guesser's (`pipeline.majority_answer`) on the same questions.
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from vlpet_jax.checkpoints.tokenizer import load_tokenizer
from vlpet_jax.data import synthetic
from vlpet_jax.data.batching import TextCollator
from vlpet_jax.data.examples import Example, best_target
from vlpet_jax.data.synthetic.scenes import Scene
from vlpet_jax.data.tasks.registry import get_task
from vlpet_jax.demo.breakdown import QA_SPLITS, question_type
from vlpet_jax.models import presets
from vlpet_jax.models.backbone import build_backbone
from vlpet_jax.train.pretrain import PretrainConfig, pretrain

CONTEXT_MARK = "context:"
MAX_INPUT_LEN = 96  # two NLVR2 images of up to five objects, four words each, fit


@dataclasses.dataclass(frozen=True)
class GroundedPair:
    task: str
    kind: str  # `breakdown.question_type` of the question
    question: str  # the task input, as the PET runs see it
    context: str  # the scene(s) in words
    answer: str  # best-scored target

    def text(self, with_context: bool = True) -> str:
        return f"{self.question} {CONTEXT_MARK} {self.context}" if with_context else self.question


def describe_scene(scene: Scene) -> str:
    """``small red cone , large blue cube``: every object, in the scene's reading order."""
    return " , ".join(obj.name(with_size=True) for obj in scene)


def scenes_by_image(data_root: str) -> dict[str, Scene]:
    """The scene behind every image id of the benchmark under `data_root` (from its manifest)."""
    path = os.path.join(data_root, synthetic.MANIFEST)
    with open(path) as f:
        manifest = json.load(f)
    sizes = {k: tuple(v) if isinstance(v, list) else v for k, v in manifest["sizes"].items()}
    pools = synthetic.image_pools(manifest["seed"], **sizes)
    return {img_id: scene for pool in pools.values() for img_id, scene in pool}


def grounded_pairs(
    examples: Sequence[Example], task: str, scenes: dict[str, Scene]
) -> list[GroundedPair]:
    """Each example with its images' scenes in words (`;` between the images of NLVR2)."""
    out = []
    for ex in examples:
        missing = [key for key in ex.feature_keys if key not in scenes]
        if missing:
            raise KeyError(f"{task} example {ex.uid}: no scene for image(s) {missing}")
        context = " ; ".join(describe_scene(scenes[key]) for key in ex.feature_keys)
        kind = question_type(ex.input_text)
        out.append(GroundedPair(task, kind, ex.input_text, context, best_target(ex)[0]))
    return out


def load_splits(data_root: str) -> tuple[list[GroundedPair], list[GroundedPair], dict[str, Any]]:
    """(grounded training pairs, grounded validation pairs, {question: text-only guess})."""
    from vlpet_jax.demo.pipeline import majority_answer

    scenes = scenes_by_image(data_root)
    train_pairs, val_pairs, guesses = [], [], {}
    for task, (train_split, val_split) in QA_SPLITS.items():
        train = list(get_task(task).load(data_root, train_split, train=True))
        val = list(get_task(task).load(data_root, val_split, train=False))
        train_pairs += grounded_pairs(train, task, scenes)
        val_pairs += grounded_pairs(val, task, scenes)
        guess = majority_answer(train)
        guesses.update({ex.input_text: guess(ex) for ex in val})
    return train_pairs, val_pairs, guesses


def exact_match(
    model: Any, params: Any, collator: TextCollator, inputs: Sequence[str], answers: Sequence[str]
) -> np.ndarray:
    """Per example: is every answer token the teacher-forced argmax? (bool array)"""
    forward = jax.jit(lambda p, ids, mask, dec: model.apply({"params": p}, ids, mask, dec))
    hits = []
    for start in range(0, len(inputs), 64):
        arrays = collator.text_arrays(
            list(inputs[start : start + 64]), list(answers[start : start + 64]), MAX_INPUT_LEN, 16
        )
        logits = forward(
            params, arrays["input_ids"], arrays["attention_mask"], arrays["decoder_input_ids"]
        )
        labels = arrays["labels"]
        correct = (np.asarray(logits).argmax(-1) == labels) | (labels < 0)
        hits.append(correct.all(-1))
    return np.concatenate(hits) if hits else np.zeros(0, bool)


@dataclasses.dataclass
class ProbeResult:
    losses: list[float]
    # (task, question type) -> (n, backbone with the scene in words %, text-only guess %);
    # question type "all": the task's questions together.
    by_type: dict[tuple[str, str], tuple[int, float, float]]

    def table(self) -> str:
        lines = [
            "| task | question type | n | backbone, scene in words | text-only guess |",
            "|---|---|---|---|---|",
        ]
        for (task, kind), (n, grounded, guess) in sorted(self.by_type.items()):
            lines.append(f"| {task} | {kind} | {n} | {grounded:.1f} | {guess:.1f} |")
        return "\n".join(lines)


def probe(
    backbone: str, data_root: str, steps: int, seed: int = 0, writer: Any = None
) -> ProbeResult:
    """Pretrain `backbone` (a tiny preset) as the demo does, with grounded pairs as the supervised
    half of each batch, and score it on the grounded validation questions."""
    if steps < 2:
        raise ValueError(f"probe: steps must be >= 2 (a warm-up and a decay step), got {steps}")
    cfg = presets.get_preset(backbone)
    tokenizer = load_tokenizer(synthetic.tokenizer_path(data_root, cfg.family))
    cfg = cfg.replace(vocab_size=max(cfg.vocab_size, len(tokenizer)))
    train_pairs, val_pairs, guesses = load_splits(data_root)
    supervised = [(p.text(), p.answer) for p in train_pairs]
    options = PretrainConfig(
        steps=steps,
        seed=seed,
        max_input_len=MAX_INPUT_LEN,
        warmup_steps=min(PretrainConfig.warmup_steps, steps // 2),  # the demo's 30 from 60 steps
        log_every=min(100, steps),
    )
    corpus = synthetic.text_corpus(data_root)
    params, losses = pretrain(cfg, tokenizer, corpus, options, writer, supervised)
    model, collator = build_backbone(cfg), TextCollator(tokenizer, cfg.family)
    grounded = exact_match(
        model, params, collator, [p.text() for p in val_pairs], [p.answer for p in val_pairs]
    )
    guessed = np.array([guesses[p.question] == p.answer for p in val_pairs], bool)
    return ProbeResult(losses, scores_by_type(val_pairs, grounded, guessed))


def scores_by_type(
    pairs: Sequence[GroundedPair], grounded: np.ndarray, guessed: np.ndarray
) -> dict[tuple[str, str], tuple[int, float, float]]:
    """(task, question type or "all") -> (n, % of `grounded` hits, % of `guessed` hits)."""
    groups: dict[tuple[str, str], list[int]] = {}
    for index, pair in enumerate(pairs):
        groups.setdefault((pair.task, pair.kind), []).append(index)
        groups.setdefault((pair.task, "all"), []).append(index)
    return {
        key: (len(rows), 100 * float(grounded[rows].mean()), 100 * float(guessed[rows].mean()))
        for key, rows in groups.items()
    }
