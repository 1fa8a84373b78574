"""Records of the four image-text tasks in their official formats (SPEC.md §6), from scene pools.

A pool is a list of ``(img_id, scene)``. These functions only build JSON-able records; writing
them, and the feature files of the pools, is ``generate.py``'s job.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from typing import Any

import numpy as np

from vlpet_jax.data.synthetic.grammar import Question, ask_all, balance
from vlpet_jax.data.synthetic.image_questions import (
    GQA_TEMPLATES,
    NLVR_TEMPLATES,
    VQA_TEMPLATES,
    captions,
    random_params,
)
from vlpet_jax.data.synthetic.scenes import Scene

Pool = Sequence[tuple[str, Scene]]
NUM_ANNOTATORS = 10  # VQA v2 collects ten human answers per question
MAX_NOISY_ANSWERS = 4  # so the true answer always keeps >= 6 votes, i.e. score 1.0
PAIR_TRIES = 200  # random image pairs tried per NLVR2 statement before drawing another


def vqa_score(votes: int) -> float:
    """The VQA soft score of an answer given by ``votes`` of the ten annotators (VL-T5's table:
    1 -> 0.3, 2 -> 0.6, 3 -> 0.9, 4+ -> 1.0)."""
    return {0: 0.0, 1: 0.3, 2: 0.6, 3: 0.9}.get(votes, 1.0)


def annotate(question: Question, rng: np.random.Generator, noise: float) -> list[str]:
    """Ten simulated human answers: the true one, except that each annotator errs with probability
    ``noise`` and then names another answer of the same kind (capped at ``MAX_NOISY_ANSWERS``)."""
    wrong_pool = [a for a in question.template.answers if a != question.answer]
    errors = min(int(rng.binomial(NUM_ANNOTATORS, noise)), MAX_NOISY_ANSWERS)
    answers = [question.answer] * (NUM_ANNOTATORS - errors)
    answers += [wrong_pool[i] for i in rng.integers(len(wrong_pool), size=errors)]
    return [answers[i] for i in rng.permutation(NUM_ANNOTATORS)]


def vqa_records(
    pool: Pool, rng: np.random.Generator, first_qid: int, cap: int, noise: float
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """VQA questions balanced per question string, with soft labels from ten noisy annotators.

    Returns the ``karpathy_*.json`` records and the matching raw VQA v2 annotation records
    (``{question_id, answers: [{answer, answer_confidence, answer_id}], ...}``) that the official
    accuracy (SPEC.md §7) reads.
    """
    candidates = [
        q for i, (_, scene) in enumerate(pool) for q in ask_all(VQA_TEMPLATES, (scene,), i)
    ]
    kept = balance(candidates, lambda q: q.text, lambda q: q.answer, rng, cap)
    records, raw = [], []
    for k, q in enumerate(kept):
        img_id = pool[q.source][0]
        qid = first_qid + k
        answers = annotate(q, rng, noise)
        votes = Counter(answers)
        label = {a: vqa_score(n) for a, n in sorted(votes.items(), key=lambda x: (-x[1], x[0]))}
        common = {"answer_type": q.template.answer_type, "question_type": q.template.question_type}
        records.append(
            {"img_id": img_id, "sent": q.text, "question_id": qid, "label": label, **common}
        )
        raw.append(
            {
                "question_id": qid,
                "image_id": img_id,
                "multiple_choice_answer": q.answer,
                "answers": [
                    {
                        "answer": a,
                        "answer_confidence": "yes" if a == q.answer else "maybe",
                        "answer_id": j + 1,
                    }
                    for j, a in enumerate(answers)
                ],
                **common,
            }
        )
    return records, raw


def gqa_records(
    pool: Pool, rng: np.random.Generator, first_qid: int, cap: int
) -> list[dict[str, Any]]:
    """Relational questions, answers balanced per template (each string is too rare to balance)."""
    candidates = [
        q for i, (_, scene) in enumerate(pool) for q in ask_all(GQA_TEMPLATES, (scene,), i)
    ]
    kept = balance(candidates, lambda q: q.template.name, lambda q: q.answer, rng, cap)
    return [
        {
            "img_id": pool[q.source][0],
            "sent": q.text,
            "question_id": str(first_qid + k),
            "label": {q.answer: 1.0},
        }
        for k, q in enumerate(kept)
    ]


def nlvr_records(
    pool: Pool, rng: np.random.Generator, split_prefix: str, num_groups: int, pairs_per_group: int
) -> list[dict[str, Any]]:
    """NLVR2-style statements, each over ``pairs_per_group`` image pairs, half true, half false.

    Identifiers are ``<split>-<group>-<pair>-0``, so the pairs of one statement form one
    consistency group (SPEC.md §7) and a statement string alone is right exactly half the time.
    """
    if pairs_per_group % 2 or len(pool) < 2:
        raise ValueError("NLVR2 groups need an even number of pairs and a pool of >= 2 images")
    need = pairs_per_group // 2
    records: list[dict[str, Any]] = []
    for group in range(num_groups):
        while True:
            template = NLVR_TEMPLATES[rng.integers(len(NLVR_TEMPLATES))]
            params = random_params(template, rng)
            found: dict[str, list[tuple[int, int]]] = {"true": [], "false": []}
            for _ in range(PAIR_TRIES):
                i, j = (int(x) for x in rng.choice(len(pool), size=2, replace=False))
                answer = template.answer((pool[i][1], pool[j][1]), params)
                if answer is not None and len(found[answer]) < need:
                    found[answer].append((i, j))
                if all(len(v) == need for v in found.values()):
                    break
            if all(len(v) == need for v in found.values()):
                break
        pairs = [(p, 1) for p in found["true"]] + [(p, 0) for p in found["false"]]
        for pair_index, k in enumerate(rng.permutation(len(pairs))):
            (i, j), label = pairs[k]
            records.append(
                {
                    "identifier": f"{split_prefix}-{group}-{pair_index}-0",
                    "img0": pool[i][0],
                    "img1": pool[j][0],
                    "label": label,
                    "sent": template.render(params),
                    "uid": f"nlvr2_{split_prefix}_{len(records)}",
                }
            )
    return records


def coco_images(
    splits: Sequence[tuple[str, Pool]], rng: np.random.Generator, captions_per_image: int
) -> dict[str, Any]:
    """The Karpathy ``dataset_coco.json`` document: every image with its split and captions."""
    images, sentid = [], 0
    for split, pool in splits:
        for img_id, scene in pool:
            imgid = len(images)
            sentences = []
            for raw in captions(scene, rng, captions_per_image):
                sentences.append(
                    {"tokens": raw.split(), "raw": raw, "imgid": imgid, "sentid": sentid}
                )
                sentid += 1
            images.append(
                {
                    "filepath": "synthetic",
                    "filename": f"{img_id}.jpg",
                    "imgid": imgid,
                    "split": split,
                    "sentences": sentences,
                    "cocoid": imgid,
                    "sentids": [s["sentid"] for s in sentences],
                }
            )
    return {"images": images, "dataset": "coco"}
