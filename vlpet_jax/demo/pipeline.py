"""The built-in demo, end to end, with nothing downloaded (DESIGN.md "Built-in benchmark"):

1. generate the synthetic image-text benchmark and its tokenizers;
2. pretrain a tiny T5 and a tiny BART on the benchmark's text (denoising) and save them in Hugging
   Face format;
3. train each PET method from those checkpoints through the normal loading path (the same
   `launch.train` code as for t5-base), evaluate it, and
4. report trainable %, every task's metric, examples/s and a text-only baseline, with a plot of
   the training curves and a heat-map of VL-PET's gate values.
"""

from __future__ import annotations

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
    backbones: tuple[str, ...] = ("bart_tiny", "t5_tiny")
    methods: tuple[str, ...] = DEFAULT_METHODS
    # Methods also run on the second backbone (the first one runs every method).
    second_backbone_methods: tuple[str, ...] = ("vl_pet_large",)
    epochs: int = 2
    batch_size: int = 24
    pretrain_steps: int = 400
    seed: int = 0
    # A smaller benchmark than the generator's default keeps the whole demo near 10 CPU minutes.
    synthetic_sizes: dict[str, Any] = dataclasses.field(
        default_factory=lambda: dict(
            coco_images=(150, 0, 40, 40),
            gqa_images=(150, 40, 40),
            nlvr_images=(150, 40, 40),
            nlvr_groups=(120, 24, 24),
        )
    )


def prepare_checkpoint(backbone: str, data_root: str, options: DemoOptions) -> str:
    """Pretrain `backbone` on the benchmark text and save it as a Hugging Face directory."""
    out = os.path.join(options.workdir, "checkpoints", backbone)
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
