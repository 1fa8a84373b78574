"""Where training numbers go: a JSONL file a person can plot, TensorBoard event files, and a
one-line progress report (step, examples/s, ETA) on the console. Only process 0 writes."""

from __future__ import annotations

import json
import os
import time
from collections.abc import Mapping
from typing import Any

import jax


class MetricWriter:
    def __init__(self, workdir: str, total_steps: int, enabled: bool | None = None):
        self.enabled = jax.process_index() == 0 if enabled is None else enabled
        self.total_steps = total_steps
        self.path = os.path.join(workdir, "metrics.jsonl")
        self._tb = None
        self._start = time.perf_counter()
        self._last_time = self._start
        self._last_step: int | None = None
        self._examples_since = 0.0
        if self.enabled:
            os.makedirs(workdir, exist_ok=True)
            try:
                from tensorboardX import SummaryWriter

                self._tb = SummaryWriter(os.path.join(workdir, "tensorboard"))
            except ImportError:  # TensorBoard files are a convenience; JSONL is the record.
                self._tb = None

    def count_examples(self, n: float) -> None:
        self._examples_since += n

    def write(self, step: int, metrics: Mapping[str, Any], prefix: str = "train") -> None:
        if not self.enabled:
            return
        values = {k: float(v) for k, v in metrics.items()}
        record = {"step": step, "split": prefix, "time": round(time.time(), 3), **values}
        with open(self.path, "a") as f:
            f.write(json.dumps(record) + "\n")
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(f"{prefix}/{key}", value, step)
            self._tb.flush()

    def progress(self, step: int, metrics: Mapping[str, Any]) -> dict[str, float]:
        """Examples/s since the last call and the ETA; prints one line and returns both."""
        now = time.perf_counter()
        elapsed = now - self._last_time
        steps_done = step - (self._last_step if self._last_step is not None else 0)
        rate = self._examples_since / elapsed if elapsed > 0 else 0.0
        step_time = elapsed / max(steps_done, 1)
        eta = step_time * max(self.total_steps - step, 0)
        self._last_time, self._last_step, self._examples_since = now, step, 0.0
        if self.enabled:
            shown = " ".join(f"{k}={float(v):.4g}" for k, v in metrics.items())
            print(
                f"[train] step {step}/{self.total_steps} {shown} "
                f"examples/s={rate:.1f} eta={_fmt_seconds(eta)}",
                flush=True,
            )
        return {"examples_per_s": rate, "eta_s": eta}

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()


def _fmt_seconds(seconds: float) -> str:
    seconds = int(seconds)
    h, rest = divmod(seconds, 3600)
    m, s = divmod(rest, 60)
    return f"{h}:{m:02d}:{s:02d}" if h else f"{m}:{s:02d}"
