"""Decoding the tasks on parallel threads gives exactly what decoding them one after another
gives: the same predictions for every task and the same metrics (all four image tasks of the
tiny runlocal config, untrained params: greedy VQA/GQA, beam captions, scored NLVR2)."""

from __future__ import annotations

import json
import threading

import jax

import vlpet_jax
from tests.train.tiny_run import TINY_SYNTHETIC
from vlpet_jax.train.trainer import Run

SPEC = "configs/image_text.py:backbone=bart_base,method=vl_pet_large,runlocal=True"


def test_parallel_task_decoding_matches_serial(tmp_path):
    config = vlpet_jax.load_config(SPEC)
    for dotted, value in TINY_SYNTHETIC.items():
        config.data.synthetic[dotted.split(".")[-1]] = value
    config.eval.caption.max_length = 6
    run = Run(config, str(tmp_path / "run"), with_eval=True)
    assert list(run.data.eval_sources) == ["vqa", "gqa", "nlvr", "caption"]
    params = run.initial_params()
    evaluator = run.evaluator()

    config.eval.parallel_tasks = 1
    serial = evaluator.evaluate(params, str(tmp_path / "serial"))
    config.eval.parallel_tasks = 4
    threads_seen = []
    predict = evaluator.predict

    def recording(task, p):
        threads_seen.append(threading.current_thread().name)
        return predict(task, p)

    evaluator.predict = recording
    parallel = evaluator.evaluate(params, str(tmp_path / "parallel"))

    assert jax.process_count() == 1
    assert len(threads_seen) == 4
    assert all(name.startswith("vlpet-eval") for name in threads_seen)
    assert parallel == serial
    assert set(serial) >= {"vqa_score", "gqa_accuracy", "nlvr_accuracy", "caption_CIDEr"}
    for task in ("vqa", "gqa", "nlvr", "caption"):
        name = f"{task}_predictions.json"
        found = json.loads((tmp_path / "parallel" / name).read_text())
        expected = json.loads((tmp_path / "serial" / name).read_text())
        assert found == expected, task
        assert len(found) > 0, task
