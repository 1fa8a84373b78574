"""Ask a trained model about your own images and videos.

    answers = vlpet_jax.predict(
        "vqa", workdir="demo_run/runs/t5_tiny/vl_pet_large",
        images=["scene.png"], question="what color is the cube?")
    answers[0]["answer"], answers[0]["score"]

Tasks and their inputs (the texts are built as the task readers build them, SPEC.md §6):

- `vqa`, `gqa`: `images` (files or folders: one example per image) and `question` (one for all
  images, or one per image);
- `nlvr`: exactly two `images` and a `statement` (or several statements about the same pair);
- `caption`: `images`;
- `tvqa`, `how2qa`: `videos` (folders of frames), `question`, `choices` (5 for TVQA, 4 for
  How2QA), optional `subtitles` and `ts` (default: the whole clip at `fps` frames a second).

Decoding follows the config (`config.eval.<task>`: greedy, beam, or NLVR2's one-step true/false
comparison) through the evaluator's own code, in batches of `config.eval.batch_size` rows padded
to fixed length buckets, so each shape compiles once. Each answer comes with a `score`: the
model's probability of that answer (the product of its token probabilities, EOS included; for
NLVR2 the softmax over the `true` / `false` logits).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from vlpet_jax.data.batching import TextCollator, build_batch
from vlpet_jax.data.examples import Example
from vlpet_jax.data.multitask import TaskSource
from vlpet_jax.data.tasks import get_task
from vlpet_jax.inference.inputs import (
    IMAGE_TASKS,
    VIDEO_QA_TASKS,
    ClipFeatures,
    FileVisuals,
    InputError,
    SyntheticFeatures,
    as_list,
    check_choices,
    frame_files,
    image_files,
    question_text,
    subtitle_string,
    video_question_text,
)
from vlpet_jax.inference.loading import LoadedModel, load_model

__all__ = ["InputError", "LoadedModel", "Predictor", "load_model", "predict"]

SYNTHETIC_MANIFEST = "synthetic_benchmark.json"


def _round_up(n: int, multiple: int) -> int:
    return -(-n // multiple) * multiple


def default_features(loaded: LoadedModel) -> str:
    """'synthetic' for a model trained on the built-in benchmark, else 'clip'."""
    root = loaded.config.data.root
    if root == "synthetic":
        return "synthetic"
    return "synthetic" if (Path(root) / SYNTHETIC_MANIFEST).is_file() else "clip"


def _extractor(loaded: LoadedModel, features: str, clip_weights: str | None) -> Any:
    config = loaded.config
    if features == "synthetic":
        return SyntheticFeatures(image_dim=config.model.feat_dim, video_dim=config.model.feat_dim)
    if features == "clip":
        weights = clip_weights or None
        return ClipFeatures(weights, weights)
    raise ValueError(f"features must be 'synthetic' or 'clip', got {features!r}")


def _queries(
    task: str,
    config: Any,
    images: Sequence[str],
    videos: Sequence[str],
    question: str | Sequence[str] | None,
    statement: str | Sequence[str] | None,
    choices: Sequence[str] | None,
    subtitles: Any,
    ts: Any,
    fps: float,
) -> list[tuple[tuple[str, ...], str, dict[str, Any]]]:
    """(feature keys, encoder text, fields for the output) per example."""
    prompt = config.data[task].prompt
    if task in VIDEO_QA_TASKS:
        if images:
            raise InputError(f"{task} reads videos (folders of frames), not images")
        if not videos:
            raise InputError(f"{task} needs at least one video (a folder of frame images)")
        questions = as_list(question)
        if len(questions) != 1:
            raise InputError(f"{task} needs one question, got {len(questions)}")
        check_choices(task, list(choices or ()))
        subs = subtitle_string(subtitles)
        out = []
        for video in videos:
            clip_ts = ts if ts is not None else f"0.00-{len(frame_files(video)) / fps:.2f}"
            text = video_question_text(prompt, questions[0], choices, subs, clip_ts)
            fields = {"video": str(video), "question": questions[0], "choices": list(choices)}
            out.append(((str(video),), text, fields))
        return out
    if videos:
        raise InputError(f"{task} reads images, not videos")
    files = [str(p) for p in image_files(images)]
    if not files:
        raise InputError(f"{task} needs at least one image")
    if task == "nlvr":
        statements = as_list(statement if statement is not None else question)
        if len(files) != 2:
            raise InputError(f"nlvr compares exactly two images, got {len(files)}: {files}")
        if not statements:
            raise InputError("nlvr needs a statement about the two images")
        return [
            ((files[0], files[1]), question_text(prompt, s), {"image": files, "statement": s})
            for s in statements
        ]
    if task == "caption":
        return [((f,), prompt, {"image": f}) for f in files]
    questions = as_list(question)
    if not questions:
        raise InputError(f"{task} needs a question")
    if len(questions) == 1:
        pairs = [(f, questions[0]) for f in files]
    elif len(files) == 1:
        pairs = [(files[0], q) for q in questions]
    elif len(questions) == len(files):
        pairs = list(zip(files, questions))
    else:
        raise InputError(
            f"{len(questions)} questions for {len(files)} images: give one question, one image, "
            "or one question per image"
        )
    return [((f,), question_text(prompt, q), {"image": f, "question": q}) for f, q in pairs]


def predict(
    task: str,
    *,
    workdir: str | None = None,
    step: int | None = None,
    pet_dir: str | None = None,
    params_dir: str | None = None,
    config: Any = None,
    features: str | None = None,
    clip_weights: str | None = None,
    **inputs: Any,
) -> list[dict[str, Any]]:
    """Answers of a trained model (a workdir, a PET directory or an imported checkpoint) about
    the given images or videos; one dict per example. `inputs`: those of `Predictor.__call__`
    (images, videos, question, statement, choices, subtitles, ts, fps)."""
    loaded = load_model(config, workdir=workdir, step=step, pet_dir=pet_dir, params_dir=params_dir)
    return Predictor(loaded, features, clip_weights)(task, **inputs)


class Predictor:
    """A loaded model ready to answer: one evaluator (its jitted decoders are reused by every
    call, so each batch shape compiles once) and one feature extractor."""

    def __init__(
        self, loaded: LoadedModel, features: str | None = None, clip_weights: str | None = None
    ):
        from vlpet_jax import api
        from vlpet_jax.train import data_setup, sharding
        from vlpet_jax.train.evaluator import Evaluator

        self.config = loaded.config
        self.features = features or default_features(loaded)
        self.extractor = _extractor(loaded, self.features, clip_weights)
        self.mesh = sharding.make_mesh(dict(self.config.mesh))
        self.loaded = dataclasses.replace(loaded, params=_on_mesh(loaded.params, self.mesh))
        self.row_multiple = data_setup.batch_multiple(
            self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        )
        family = api.backbone_config(self.config).family
        self.collator = TextCollator(loaded.tokenizer, family)
        self.evaluator = Evaluator(
            api.build_model(self.config), self.config, loaded.tokenizer, self.collator, {},
            self.mesh,
        )  # fmt: skip

    def source(self, task: str, examples: Sequence[Example], visuals: Any) -> TaskSource:
        """`examples` as an evaluation source: batches of `config.eval.batch_size` rows at most,
        a multiple of the mesh's batch devices."""
        limit = min(len(examples), int(self.config.eval.batch_size))
        return TaskSource(get_task(task), list(examples), _round_up(limit, self.row_multiple),
                          visuals)  # fmt: skip

    def answer(self, source: TaskSource) -> tuple[dict[str, str], dict[str, float]]:
        """(answers, scores) by uid, decoded by the evaluator exactly as in evaluation."""
        task = source.spec.name
        self.evaluator.sources[task] = source
        answers = self.evaluator.predict(task, self.loaded.params)
        if self.config.eval[task].mode == "score":
            answers = {uid: "true" if value else "false" for uid, value in answers.items()}
        return answers, _scores(self.evaluator, source, self.collator, self.loaded.params, answers)

    def __call__(
        self,
        task: str,
        *,
        images: str | Sequence[str] = (),
        videos: str | Sequence[str] = (),
        question: str | Sequence[str] | None = None,
        statement: str | Sequence[str] | None = None,
        choices: Sequence[str] | None = None,
        subtitles: Any = None,
        ts: Any = None,
        fps: float = 2.0,
    ) -> list[dict[str, Any]]:
        config = self.config
        spec = get_task(task)
        family_tasks = IMAGE_TASKS if config.modality == "image" else VIDEO_QA_TASKS
        if task not in family_tasks or task not in config.eval:
            offered = [t for t in family_tasks if t in config.eval]
            raise InputError(
                f"this is a {config.modality} model (trained on {', '.join(config.data.tasks)}); "
                f"predict answers {', '.join(offered)} with it, not {task!r}"
            )
        queries = _queries(
            task, config, as_list(images), as_list(videos), question, statement, choices,
            subtitles, ts, fps,
        )  # fmt: skip
        visuals = FileVisuals(
            self.extractor, "video" if spec.visual == "video" else "image",
            config.model.num_vis_tokens, config.model.feat_dim,
        )  # fmt: skip
        for keys, _, _ in queries:
            for key in keys:
                visuals.add(key)
        examples = [
            Example(task=task, uid=str(i), input_text=text, feature_keys=keys)
            for i, (keys, text, _) in enumerate(queries)
        ]
        answers, scores = self.answer(self.source(task, examples, visuals))
        return [
            {"task": task, **fields, "input": text, "answer": answers[ex.uid],
             "score": scores[ex.uid]}
            for ex, (_, text, fields) in zip(examples, queries)
        ]  # fmt: skip


def _on_mesh(params: Any, mesh: Any) -> Any:
    """Leaves already laid out on `mesh` (a workdir's, as in training) stay; others (a PET
    directory's, an import's) are replicated on it, so the decoders see one layout whatever the
    source (and compile once for it)."""
    import jax

    from vlpet_jax.train import sharding

    replicated = sharding.replicated(mesh)

    def place(leaf: Any) -> Any:
        layout = getattr(leaf, "sharding", None)
        if isinstance(layout, jax.sharding.NamedSharding) and layout.mesh == mesh:
            return leaf
        return jax.device_put(leaf, replicated)

    return jax.tree.map(place, params)


def _scores(
    evaluator: Any, source: TaskSource, collator: TextCollator, params: Any, answers: dict
) -> dict[str, float]:
    """The model's probability of each answer, teacher-forced (module docstring)."""
    from vlpet_jax.train import device_data
    from vlpet_jax.train.step import model_inputs

    task = source.spec.name
    mode = evaluator.config.eval[task].mode
    vis_dtype = evaluator.vis_dtype
    examples = list(source.examples)
    scores: dict[str, float] = {}
    for start in range(0, len(examples), source.batch_size):
        # The answer as the target of its row (labels and teacher-forced decoder input).
        chunk = [
            dataclasses.replace(ex, targets=(answers[ex.uid],), target_scores=(1.0,))
            for ex in examples[start : start + source.batch_size]
        ]
        rows = chunk + [None] * (source.batch_size - len(chunk))
        drawn = [(answers[ex.uid], 1.0) if ex is not None else None for ex in rows]
        batch = build_batch(
            source.spec, collator, source.visuals, rows, drawn, vis_dtype=vis_dtype
        ).arrays
        if mode == "score":
            prefix, read_pos = collator.format.score_prefix()
            batch["decoder_input_ids"] = np.tile(np.asarray(prefix, np.int32), (len(rows), 1))
        device_batch = device_data.from_full_batch(model_inputs(batch), evaluator.mesh)
        logits = device_data.fetch(evaluator._score(params, device_batch)).astype(np.float64)
        if mode == "score":
            true_id, false_id = evaluator._true_false_ids()
            pair = logits[:, read_pos][:, [true_id, false_id]]
            probs = np.exp(pair - pair.max(-1, keepdims=True))
            probs /= probs.sum(-1, keepdims=True)
            for r, ex in enumerate(chunk):
                scores[ex.uid] = float(probs[r, 0 if answers[ex.uid] == "true" else 1])
            continue
        log_probs = logits - logits.max(-1, keepdims=True)
        log_probs -= np.log(np.exp(log_probs).sum(-1, keepdims=True))
        labels = batch["labels"]
        for r, ex in enumerate(chunk):
            keep = labels[r] >= 0
            total = log_probs[r, np.flatnonzero(keep), labels[r][keep]].sum()
            scores[ex.uid] = float(math.exp(total))
    return scores
