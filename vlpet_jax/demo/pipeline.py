"""The built-in demo, end to end, with nothing downloaded (DESIGN.md "Built-in benchmark"), as a
miniature of the real pipeline:

1. generate the synthetic image-text benchmark and its tokenizers;
2. pretrain a tiny backbone on the benchmark's text (denoising);
3. pretrain it on vision and language: the whole model, visual embedding included, captions
   rendered images that no task split shows (`synthetic.ensure_caption_pretraining`), through
   the ordinary trainer; the result is saved in Hugging Face format with its visual embedding
   next to it (`checkpoints.visual_weights`), the frozen backbone every PET method starts from;
4. evaluate that backbone with no tuning, then train each PET method from it through the normal
   loading path (the same `launch.train` code as for t5-base) and evaluate it, and
5. report trainable %, every task's metric, examples/s, a text-only baseline and the wall time of
   each stage, with a plot of the training curves and a heat-map of VL-PET's gate values.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from typing import Any

import jax

from vlpet_jax import api
from vlpet_jax.checkpoints.hf_export import save_backbone
from vlpet_jax.checkpoints.tokenizer import load_tokenizer
from vlpet_jax.checkpoints.visual_weights import FILE as VISUAL_FILE
from vlpet_jax.checkpoints.visual_weights import save_visual_embedding
from vlpet_jax.data import synthetic
from vlpet_jax.data.examples import best_target
from vlpet_jax.demo.breakdown import QA_SPLITS, question_type
from vlpet_jax.models import presets
from vlpet_jax.train.metrics_log import MetricWriter
from vlpet_jax.train.pretrain import PretrainConfig, pretrain

IMAGE_TASKS = ("vqa", "gqa", "nlvr", "caption")
DEFAULT_METHODS = ("vl_pet_large", "vl_pet_small", "vl_adapter", "lora", "full_ft")


@dataclasses.dataclass
class DemoOptions:
    workdir: str
    # Tiny BART is left out by default: see README ("The demo") for what it measured.
    backbones: tuple[str, ...] = ("t5_tiny",)
    methods: tuple[str, ...] = DEFAULT_METHODS
    # Methods also run on the second backbone (the first one runs every method).
    second_backbone_methods: tuple[str, ...] = ("vl_pet_large",)
    epochs: int = 2
    batch_size: int = 24
    pretrain_steps: int = 400
    # Vision-and-language pretraining (captioning images no task uses): images, epochs (one
    # step per caption batch: 5 captions an image, batches of 20 captions), peak learning rate.
    vl_pretrain_images: int = 1200
    vl_pretrain_epochs: int = 5
    vl_pretrain_lr: float = 1e-3
    seed: int = 0
    # XLA's fast compile for every training run (tests: a few hundred steps, compile-bound).
    fast_compile: bool = False
    # A smaller benchmark than the generator's default keeps the whole demo near 10 CPU minutes.
    synthetic_sizes: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(
            coco_images=(150, 0, 40, 40),
            gqa_images=(150, 40, 40),
            nlvr_images=(150, 40, 40),
            nlvr_groups=(120, 24, 24),
        )
    )


def prepare_text_checkpoint(backbone: str, data_root: str, options: DemoOptions) -> str:
    """Pretrain `backbone` on the benchmark text and save it as a Hugging Face directory."""
    out = os.path.join(options.workdir, "checkpoints", f"{backbone}_text")
    if os.path.isfile(os.path.join(out, "model.safetensors")):
        return out
    cfg = presets.get_preset(backbone)
    tokenizer = load_tokenizer(synthetic.tokenizer_path(data_root, cfg.family))
    cfg = cfg.replace(vocab_size=max(cfg.vocab_size, len(tokenizer)))
    corpus = synthetic.text_corpus(data_root)
    supervised = synthetic.task_pairs(data_root, IMAGE_TASKS)
    writer = MetricWriter(os.path.join(options.workdir, "pretrain"), options.pretrain_steps)
    started = time.perf_counter()
    params, losses = pretrain(
        cfg, tokenizer, corpus,
        PretrainConfig(steps=options.pretrain_steps, seed=options.seed, log_every=100),
        writer, supervised,
    )  # fmt: skip
    writer.close()
    print(
        f"[demo] pretrained {backbone}: loss {losses[0]:.2f} -> {losses[-1]:.2f} "
        f"in {time.perf_counter() - started:.0f} s",
        flush=True,
    )
    save_backbone(cfg, jax.device_get(params), out)
    # The benchmark's own tokenizer files, next to the weights, as on the Hub.
    raw_tokenizer = load_tokenizer(synthetic.tokenizer_path(data_root, cfg.family), 0, 0)
    raw_tokenizer.save_pretrained(out)
    return out


def vl_pretrain_config(backbone: str, text_checkpoint: str, root: str, options: DemoOptions):
    """The vision-and-language pretraining run: every parameter trains (`full_ft`), on captions
    of the pretraining images only, no evaluation."""
    config = api.load_config(
        f"configs/image_text.py:backbone={backbone},method=full_ft,tasks=caption"
    )
    config.model.checkpoint = text_checkpoint
    config.model.dropout = 0.0
    config.data.root = root
    config.data.batch_size = options.batch_size
    config.train.epochs = options.vl_pretrain_epochs
    config.train.seed = options.seed
    config.train.log_every_steps = 100
    config.train.checkpoint_every_steps = 10_000
    config.train.eval_every_epochs = 0
    config.optim.lr = options.vl_pretrain_lr
    config.train.fast_compile = options.fast_compile
    return config


def prepare_vl_checkpoint(backbone: str, text_checkpoint: str, options: DemoOptions) -> str:
    """Pretrain the text-pretrained `backbone` and a fresh visual embedding on captions of images
    disjoint from the tasks', and save both as a Hugging Face directory (with the benchmark's
    tokenizer): the frozen backbone of every PET run."""
    from vlpet_jax.train.trainer import Run, train, trained_params

    out = os.path.join(options.workdir, "checkpoints", backbone)
    if os.path.isfile(os.path.join(out, VISUAL_FILE)):
        return out
    root = os.path.join(options.workdir, "vl_pretrain_data")
    synthetic.ensure_caption_pretraining(
        root, options.seed, options.vl_pretrain_images, **options.synthetic_sizes
    )
    config = vl_pretrain_config(backbone, text_checkpoint, root, options)
    run_dir = os.path.join(options.workdir, "vl_pretrain", backbone)
    started = time.perf_counter()
    train(config, run_dir)  # resumes from its last checkpoint when one is there
    run = Run(config, run_dir, with_eval=False)
    params, step = trained_params(run)
    if step != run.total_steps:
        raise RunInterrupted(
            f"vision-and-language pretraining in {run_dir} stopped at step {step} of "
            f"{run.total_steps}; run the same demo command again to resume it"
        )
    params = jax.device_get(params)
    save_backbone(run.backbone_cfg, params["backbone"], out)
    load_tokenizer(text_checkpoint, 0, 0).save_pretrained(out)
    # Written last: its presence marks the directory complete.
    save_visual_embedding(run.backbone_cfg, params["visual_embedding"], out)
    print(
        f"[demo] vision-and-language pretrained {backbone}: {step} steps in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    return out


def run_config(backbone: str, method: str, checkpoint: str, data_root: str, options: DemoOptions):
    config = api.load_config(f"configs/image_text.py:backbone={backbone},method={method}")
    config = config.unlock() if hasattr(config, "unlock") else config
    config.model.checkpoint = checkpoint
    config.data.root = data_root
    config.data.batch_size = options.batch_size
    config.eval.batch_size = 64
    config.eval.use_meteor = False
    config.train.epochs = options.epochs
    config.train.seed = options.seed
    config.train.log_every_steps = 25
    config.train.checkpoint_every_steps = 10_000
    config.train.eval_every_epochs = options.epochs
    # `train.fast_compile` stays off (the config's default without runlocal): with the step shapes
    # compiled ahead on background threads, full optimisation's ~2x faster steps win at ~420 steps.
    # No dropout (the recipe's 0.1 stays the config default). In 64-wide frozen backbones it
    # drowns the visual signal the PET modules must pick up: tiny T5 VL-PET-large on one-object
    # colour/shape questions read the image 51% right by step 150 without it, 27% with it. A step
    # without dropout masks also compiles ~2.5x faster (35 s of XLA time per BART run, not 89).
    config.model.dropout = 0.0
    # Tiny models from scratch-pretrained text: a larger step than the base-size recipe.
    config.optim.lr = 3e-3 if method != "full_ft" else 1e-3
    # Captions keep the recipe's beam search (5 beams; ~0.3 s a run here): greedy decoding sent
    # tiny T5 into "a small small small ..." where beams find its sentence. The synthetic
    # captions are at most 12 words, so 20 tokens bound them.
    config.eval.caption.max_length = 20
    return config


def evaluate_untuned(
    backbone: str, checkpoint: str, data_root: str, options: DemoOptions, run_dir: str
) -> dict[str, float]:
    """The frozen vision-and-language backbone (its pretrained visual embedding included) scored
    with no tuning: the same evaluation as every run's, predictions under
    `<run_dir>/predictions/step_0`. No PET module is added (`full_ft` adds none) and nothing
    trains; what the PET runs score above this row is what their tuning adds."""
    from vlpet_jax.train.trainer import Run

    config = run_config(backbone, "full_ft", checkpoint, data_root, options)
    run = Run(config, run_dir, with_eval=True)
    return run.evaluator().evaluate(
        run.initial_params(), os.path.join(run.workdir, "predictions", "step_0")
    )


class StageTimes:
    """Wall seconds of each demo stage, kept in a JSON file so a re-run that reuses a finished
    stage still reports the time it took when it ran."""

    def __init__(self, path: str):
        self.path = path
        self.seconds: dict[str, float] = {}
        if os.path.isfile(path):
            with open(path) as f:
                self.seconds = json.load(f)

    @contextlib.contextmanager
    def timed(self, stage: str):
        started = time.perf_counter()
        yield
        elapsed = time.perf_counter() - started
        # A reused stage takes a moment; keep the time it took when it ran.
        if stage not in self.seconds or elapsed > 5.0:
            self.seconds[stage] = round(elapsed, 1)
        tmp = self.path + ".tmp"
        with open(tmp, "w") as f:
            json.dump(self.seconds, f, indent=1)
        os.replace(tmp, self.path)


class RunInterrupted(RuntimeError):
    """A demo run stopped before its final evaluation (SIGTERM); its checkpoint is on disk."""


def train_or_reuse(run_dir: str, train_fn: Callable[[], dict[str, float]]) -> dict[str, float]:
    """A run's final metrics: read from `final_metrics.json` when the run finished earlier, else
    from `train_fn()` (which resumes from the run's last checkpoint) and then written there.

    `train` returns no metrics when SIGTERM stopped it before the final evaluation: the run is then
    not recorded as finished (an empty `final_metrics.json` would make every later demo skip it and
    report nothing), and `RunInterrupted` says how to go on.
    """
    result_path = os.path.join(run_dir, "final_metrics.json")
    if os.path.isfile(result_path):
        with open(result_path) as f:
            return json.load(f)
    metrics = train_fn()
    if not metrics:
        raise RunInterrupted(
            f"training in {run_dir} stopped before its final evaluation (SIGTERM); its last "
            "checkpoint is kept: run the same demo command again to resume it"
        )
    tmp = result_path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(metrics, f)
    os.replace(tmp, result_path)
    return metrics


def examples_per_second(workdir: str) -> float:
    """Mean training throughput of a run, from its metrics.jsonl."""
    rates = []
    with open(os.path.join(workdir, "metrics.jsonl")) as f:
        for line in f:
            record = json.loads(line)
            if record.get("split") == "train" and "examples_per_s" in record:
                rates.append(record["examples_per_s"])
    # The first log window includes compilation; report the steady state.
    steady = rates[1:] or rates
    return sum(steady) / max(len(steady), 1)


def text_only_guesses(data_root: str) -> dict[str, tuple[list[Any], dict[str, Any]]]:
    """For VQA, GQA and NLVR2: (validation examples, {uid: the text-only guess}); NLVR2 guesses
    are bools, as the evaluator writes its predictions. See `majority_answer`."""
    from vlpet_jax.data.tasks.registry import get_task

    out = {}
    for task, (train_split, val_split) in QA_SPLITS.items():
        train = get_task(task).load(data_root, train_split, train=True)
        val = list(get_task(task).load(data_root, val_split, train=False))
        guess = majority_answer(train)
        if task == "nlvr":
            out[task] = (val, {ex.uid: guess(ex) == "true" for ex in val})
        else:
            out[task] = (val, {ex.uid: guess(ex) for ex in val})
    return out


def text_only_baseline(
    data_root: str, guesses: dict[str, tuple[list[Any], dict[str, Any]]] | None = None
) -> dict[str, float]:
    """What the text alone earns: for VQA/GQA/NLVR2 the majority answer of each question string
    on train, and for strings train never asked the majority answer of questions that start with
    the same words (the question type: "what color is ...", "is there a ..."); for captions the
    most frequent train caption for every image. The same metric functions as the models.
    `guesses`: `text_only_guesses(data_root)`, when the caller has them already."""
    from vlpet_jax.data.tasks.registry import get_task
    from vlpet_jax.eval import (
        caption_metrics,
        gqa_accuracy,
        nlvr2_metrics_by_uid,
        reported_caption_metrics,
    )

    results: dict[str, float] = {}
    for task, (val, preds_by_uid) in (guesses or text_only_guesses(data_root)).items():
        if task == "nlvr":
            result = nlvr2_metrics_by_uid(preds_by_uid, {ex.uid: ex.references for ex in val})
            results["nlvr_accuracy"] = result.accuracy
            results["nlvr_consistency"] = result.consistency
        else:
            labels = {ex.uid: ex.references["label"] for ex in val}
            key = "vqa_score" if task == "vqa" else "gqa_accuracy"
            results[key] = gqa_accuracy(preds_by_uid, labels).accuracy
    train = get_task("caption").load(data_root, "train", train=True)
    val = get_task("caption").load(data_root, "val", train=False)
    common = Counter(ex.targets[0] for ex in train).most_common(1)[0][0]
    scores = caption_metrics(
        {ex.uid: common for ex in val}, {ex.uid: list(ex.targets) for ex in val}, use_meteor=False
    )
    results["caption_CIDEr"] = reported_caption_metrics(scores)["CIDEr"]
    return results


def majority_answer(train: Sequence[Any]) -> Callable[[Any], str]:
    """The text-only guesser: an example -> the majority best answer of train examples with the
    same input text, else of those of the same question type, else of all."""
    by_text: dict[str, Counter] = {}
    by_type: dict[str, Counter] = {}
    for ex in train:
        best = best_target(ex)[0]
        by_text.setdefault(ex.input_text, Counter())[best] += 1
        by_type.setdefault(question_type(ex.input_text), Counter())[best] += 1
    overall = sum(by_type.values(), Counter())

    def guess(ex: Any) -> str:
        counts = by_text.get(ex.input_text) or by_type.get(question_type(ex.input_text))
        return (counts or overall).most_common(1)[0][0]

    return guess
