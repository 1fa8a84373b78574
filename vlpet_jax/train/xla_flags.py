"""XLA flags a run asks for; they must be set before jax creates its backend."""

from __future__ import annotations

import os
from typing import Any

FAST_COMPILE = "--xla_backend_optimization_level=0"


def apply_run_flags(config: Any) -> None:
    """`config.train.fast_compile`: trade run-time optimisation for ~3x faster compiles (tiny
    CPU runs, where compilation dominates)."""
    if config.train.get("fast_compile", False):
        flags = os.environ.get("XLA_FLAGS", "")
        if FAST_COMPILE not in flags:
            os.environ["XLA_FLAGS"] = f"{flags} {FAST_COMPILE}".strip()
