"""The synthetic benchmark needs the visual tokens: text alone stays at chance, while a linear
probe on the pooled visual tokens (what the model sees, SPEC.md §2) recovers every scene, and the
question templates then answer every question.

Text-only: the best predictor from the text, the majority answer of each question string on train
(the global majority for strings never seen), scored on val. Probe: least-squares linear heads per
lattice token for colour, shape and size (with "empty"), fit on the train images' scenes; the
decoded scenes answer the val questions through the question grammar.
"""

from __future__ import annotations

from collections import Counter, defaultdict

import numpy as np
import pytest

from vlpet_jax.data import tasks
from vlpet_jax.data.examples import best_target
from vlpet_jax.data.features import ImageFeatureStore, pool_image_grid
from vlpet_jax.data.synthetic import (
    GQA_TEMPLATES,
    IMAGE_LATTICE,
    NLVR_TEMPLATES,
    VQA_TEMPLATES,
    SceneObject,
    generate_benchmark,
    image_pools,
    solve,
)
from vlpet_jax.data.synthetic.vocab import COLORS, SHAPES, SIZES

DIM = 256
SIZES_ = dict(
    image_feat_dim=DIM,
    coco_images=(160, 0, 60, 4),
    gqa_images=(160, 60, 4),
    nlvr_images=(120, 40, 4),
    nlvr_groups=(100, 40, 2),
)
CASES = {  # task: (train pool, val pool, val split, prompt, templates)
    "vqa": ("coco/train", "coco/val", "val", "vqa: ", VQA_TEMPLATES),
    "gqa": ("gqa/train", "gqa/valid", "valid", "gpa: ", GQA_TEMPLATES),
    "nlvr": ("nlvr/train", "nlvr/valid", "valid", "nlvr: ", NLVR_TEMPLATES),
}
POSITIONS = [(r, c) for r in range(IMAGE_LATTICE.side) for c in range(IMAGE_LATTICE.side)]
HEADS = {"color": (None, *COLORS), "shape": (None, *SHAPES), "size": (None, *SIZES)}


@pytest.fixture(scope="module")
def bench(tmp_path_factory):
    root = tmp_path_factory.mktemp("probe")
    generate_benchmark(root, seed=0, kind="image", **SIZES_)
    return root, image_pools(0, **SIZES_)


def _lattice_tokens(store: ImageFeatureStore, img_id: str) -> np.ndarray:
    """(16, D): the pooled 6×6 token that holds each lattice cell (grid cell 2r, 2c)."""
    pooled = pool_image_grid(store.load(img_id).astype(np.float32))
    return np.stack([pooled[min(2 * r, 5) * 6 + min(2 * c, 5)] for r, c in POSITIONS])


def _with_bias(x: np.ndarray) -> np.ndarray:
    return np.concatenate([x, np.ones((len(x), 1), x.dtype)], axis=1)


def _fit_probe(store, pool) -> dict[str, np.ndarray]:
    x = np.concatenate([_lattice_tokens(store, img_id) for img_id, _ in pool])
    weights = {}
    for head, classes in HEADS.items():
        labels = []
        for _, scene in pool:
            at = {o.position: getattr(o, head) for o in scene}
            labels += [classes.index(at.get(p)) for p in POSITIONS]
        onehot = np.eye(len(classes))[labels]
        xb = _with_bias(x)
        weights[head] = np.linalg.solve(xb.T @ xb + 1e-2 * np.eye(xb.shape[1]), xb.T @ onehot)
    return weights


def _decode(weights, store, img_id) -> tuple[SceneObject, ...]:
    xb = _with_bias(_lattice_tokens(store, img_id))
    pred = {h: [HEADS[h][k] for k in (xb @ w).argmax(1)] for h, w in weights.items()}
    return tuple(
        SceneObject(pred["color"][i], pred["shape"][i], pred["size"][i], r, c)
        for i, (r, c) in enumerate(POSITIONS)
        if pred["color"][i] is not None and pred["shape"][i] and pred["size"][i]
    )


def _text_only(train, val) -> float:
    by_text = defaultdict(Counter)
    for e in train:
        by_text[e.input_text][best_target(e)[0]] += 1
    overall = Counter(best_target(e)[0] for e in train).most_common(1)[0][0]
    guesses = [
        by_text[e.input_text].most_common(1)[0][0] if e.input_text in by_text else overall
        for e in val
    ]
    return float(np.mean([g == best_target(e)[0] for g, e in zip(guesses, val)]))


def _chance(val, prompt, templates) -> float:
    """Expected accuracy of guessing uniformly among the answers each template gives on val."""
    template_of = [
        next(t.name for t in templates if t.parse(e.input_text[len(prompt) :])) for e in val
    ]
    answers = defaultdict(set)
    for name, e in zip(template_of, val):
        answers[name].add(best_target(e)[0])
    return float(np.mean([1 / len(answers[name]) for name in template_of]))


@pytest.mark.parametrize("task", list(CASES))
def test_text_alone_is_at_chance_while_visual_tokens_answer(bench, task):
    root, pools = bench
    train_pool, val_pool, val_split, prompt, templates = CASES[task]
    spec = tasks.get_task(task)
    store = ImageFeatureStore(root / spec.feature_dir("train"), expected_shape=(49, DIM))
    train = spec.load(root, "train", train=False)
    val = spec.load(root, val_split, train=False)

    weights = _fit_probe(store, pools[train_pool])
    truth = dict(pools[val_pool])
    decoded = {img_id: _decode(weights, store, img_id) for img_id in truth}
    scene_acc = np.mean([decoded[k] == truth[k] for k in truth])
    probe = np.mean(
        [
            solve(templates, e.input_text[len(prompt) :], tuple(decoded[k] for k in e.feature_keys))
            == best_target(e)[0]
            for e in val
        ]
    )
    text_only, chance = _text_only(train, val), _chance(val, prompt, templates)
    print(
        f"{task}: val n={len(val)} text-only={text_only:.3f} chance={chance:.3f} "
        f"probe={probe:.3f} scenes decoded exactly={scene_acc:.3f}"
    )
    assert len(val) >= 150
    assert scene_acc >= 0.98
    assert probe >= 0.97
    assert text_only <= chance + 0.06
    assert probe - text_only >= 0.45
