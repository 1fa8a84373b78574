"""Decoding and metrics for every task of a run (SPEC.md §7); every metric is in percent.

Generation tasks decode with the config's settings (greedy for VQA/GQA, beam for captions, BART's
no-repeat-3-gram) and compare strings; NLVR2 reads one decoder step and compares the logits of
the first sub-tokens of "true" and "false". Every host builds each whole evaluation batch, so the
predictions are complete everywhere and metrics need no gathering.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

from vlpet_jax.data.batching import TextCollator
from vlpet_jax.data.multitask import TaskSource, eval_batches
from vlpet_jax.eval import (
    caption_metrics,
    gqa_accuracy,
    nlvr2_metrics_by_uid,
    nlvr2_predict_from_logits,
    reported_caption_metrics,
    video_qa_accuracy,
    vqa_accuracy,
)
from vlpet_jax.train import data_setup, device_data, sharding
from vlpet_jax.train.generate import GenerationConfig, make_generate_fn
from vlpet_jax.train.step import model_inputs

CAPTION_TASKS = ("caption", "tvc", "yc2c")


class Evaluator:
    def __init__(
        self,
        model: Any,
        config: Any,
        tokenizer: Any,
        collator: TextCollator,
        sources: Mapping[str, TaskSource],
        mesh: Any,
    ):
        self.model, self.config, self.tokenizer = model, config, tokenizer
        self.collator, self.sources, self.mesh = collator, dict(sources), mesh
        self.vis_dtype = data_setup.visual_dtype(config)
        self._generate_fns: dict[GenerationConfig, Any] = {}
        self._lock = threading.Lock()
        replicated = sharding.replicated(mesh)
        self._score = jax.jit(
            lambda params, batch: model.apply({"params": params}, batch, train=False),
            out_shardings=replicated,
        )

    def _generate_fn(self, task: str):
        decode = self.config.eval[task]
        gen = GenerationConfig(
            max_length=int(decode.max_length),
            num_beams=int(decode.num_beams),
            no_repeat_ngram_size=int(self.config.eval.no_repeat_ngram_size),
            length_penalty=float(self.config.eval.get("length_penalty", 1.0)),
        )
        with self._lock:  # tasks may be decoded on several threads
            if gen not in self._generate_fns:
                self._generate_fns[gen] = make_generate_fn(
                    self.model, gen, out_sharding=sharding.replicated(self.mesh)
                )
            return self._generate_fns[gen]

    def _true_false_ids(self) -> tuple[int, int]:
        ids = [
            self.tokenizer(word, add_special_tokens=False).input_ids for word in ("true", "false")
        ]
        if not ids[0] or not ids[1]:
            raise ValueError("the tokenizer maps 'true' or 'false' to no tokens; NLVR2 needs both")
        return ids[0][0], ids[1][0]

    def predict(self, task: str, params: Any) -> dict[str, Any]:
        """uid -> prediction (a string, or a bool for NLVR2) over the task's evaluation split."""
        source = self.sources[task]
        mode = self.config.eval[task].mode
        predictions: dict[str, Any] = {}
        for batch in eval_batches(source, self.collator, vis_dtype=self.vis_dtype):
            arrays = dict(batch.arrays)
            if mode == "score":
                prefix, read_pos = self.collator.format.score_prefix()
                rows = arrays["input_ids"].shape[0]
                arrays["decoder_input_ids"] = np.tile(np.asarray(prefix, np.int32), (rows, 1))
                device_batch = device_data.from_full_batch(model_inputs(arrays), self.mesh)
                logits = device_data.fetch(self._score(params, device_batch))[:, read_pos]
                outputs = nlvr2_predict_from_logits(logits, *self._true_false_ids())
            else:
                arrays.pop("decoder_input_ids", None)
                device_batch = device_data.from_full_batch(model_inputs(arrays), self.mesh)
                sequences = device_data.fetch(self._generate_fn(task)(params, device_batch))
                outputs = [
                    text.strip()
                    for text in self.tokenizer.batch_decode(
                        sequences[:, 1:], skip_special_tokens=True
                    )
                ]
            for example, output in zip(batch.examples, outputs):
                if example is not None:
                    predictions[example.uid] = output
        return predictions

    def metrics(self, task: str, predictions: Mapping[str, Any]) -> dict[str, float]:
        examples = {ex.uid: ex for ex in self.sources[task].examples}
        if task == "vqa":
            first = next(iter(examples.values()))
            if "answers" in first.references:  # raw VQA v2 annotations: the official metric
                annotations = {
                    uid: {
                        "answers": ex.references["answers"],
                        "answer_type": ex.references.get("answer_type"),
                        "question_type": ex.references.get("question_type"),
                    }
                    for uid, ex in examples.items()
                }
                return {"vqa_accuracy": vqa_accuracy(predictions, annotations).overall}
            # Karpathy-split files carry soft scores only: the VL-T5 score of the prediction.
            labels = {uid: ex.references["label"] for uid, ex in examples.items()}
            return {"vqa_score": gqa_accuracy(predictions, labels).accuracy}
        if task == "gqa":
            labels = {uid: ex.references["label"] for uid, ex in examples.items()}
            return {"gqa_accuracy": gqa_accuracy(predictions, labels).accuracy}
        if task == "nlvr":
            references = {uid: ex.references for uid, ex in examples.items()}
            result = nlvr2_metrics_by_uid(predictions, references)
            return {
                "nlvr_accuracy": result.accuracy,
                "nlvr_consistency": result.consistency,
            }
        if task in ("tvqa", "how2qa"):
            answers = {uid: ex.references["answer"] for uid, ex in examples.items()}
            return {f"{task}_accuracy": video_qa_accuracy(predictions, answers).accuracy}
        if task in CAPTION_TASKS:
            references = {uid: list(ex.targets) for uid, ex in examples.items()}
            use_meteor = bool(self.config.eval.get("use_meteor", True))
            scores = reported_caption_metrics(
                caption_metrics(predictions, references, use_meteor=use_meteor)
            )
            return {f"{task}_{name}": value for name, value in scores.items()}
        raise KeyError(f"no metric for task {task!r}")

    def _all_predictions(self, params: Any) -> dict[str, dict[str, Any]]:
        """Every task's predictions. A single process decodes the tasks on parallel threads
        (`config.eval.parallel_tasks`, default 2): each task's first batch waits on its own
        compile, and on a CPU those compiles (one core each) overlap the other tasks' decoding.
        Several processes go task by task, so that all run the same programs in the same order."""
        workers = int(self.config.eval.get("parallel_tasks", 2))
        tasks = list(self.sources)
        if jax.process_count() > 1 or workers <= 1 or len(tasks) <= 1:
            return {task: self.predict(task, params) for task in tasks}
        with ThreadPoolExecutor(min(workers, len(tasks)), "vlpet-eval") as pool:
            futures = {task: pool.submit(self.predict, task, params) for task in tasks}
            return {task: future.result() for task, future in futures.items()}

    def evaluate(self, params: Any, out_dir: str | None = None) -> dict[str, float]:
        """Every task's metrics (and predictions written to `out_dir` by process 0)."""
        results: dict[str, float] = {}
        for task, predictions in self._all_predictions(params).items():
            results.update(self.metrics(task, predictions))
            if out_dir is not None and jax.process_index() == 0:
                os.makedirs(out_dir, exist_ok=True)
                path = os.path.join(out_dir, f"{task}_predictions.json")
                serialisable = {k: (bool(v) if isinstance(v, np.bool_ | bool) else v)
                                for k, v in predictions.items()}  # fmt: skip
                with open(path, "w") as f:
                    json.dump(serialisable, f, indent=1)
        return results
