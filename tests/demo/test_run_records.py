"""How the demo records a finished run and refuses to record an interrupted one."""

from __future__ import annotations

import json

import pytest

from vlpet_jax.demo.pipeline import RunInterrupted, train_or_reuse


def test_finished_run_is_written_once_and_then_reused(tmp_path):
    calls = []

    def train_fn():
        calls.append(1)
        return {"vqa_score": 61.5}

    assert train_or_reuse(str(tmp_path), train_fn) == {"vqa_score": 61.5}
    assert json.loads((tmp_path / "final_metrics.json").read_text()) == {"vqa_score": 61.5}
    # A second demo over the same workdir reads the record and does not train again.
    assert train_or_reuse(str(tmp_path), train_fn) == {"vqa_score": 61.5}
    assert len(calls) == 1
    assert not list(tmp_path.glob("*.tmp"))


def test_interrupted_run_is_not_recorded_and_trains_again_next_time(tmp_path):
    # `train` returns no metrics when SIGTERM stopped it before the final evaluation.
    with pytest.raises(RunInterrupted, match="run the same demo command again"):
        train_or_reuse(str(tmp_path), lambda: {})
    assert not (tmp_path / "final_metrics.json").exists()
    # The next demo resumes the run (train_fn is called) and records what it returns.
    assert train_or_reuse(str(tmp_path), lambda: {"gqa_accuracy": 40.0}) == {"gqa_accuracy": 40.0}
