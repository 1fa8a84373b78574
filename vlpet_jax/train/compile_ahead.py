"""Compile the train step for upcoming batch shapes on background threads.

A multitask run meets one step shape per task and length bucket, and on a CPU each first call
stops the loop for the whole XLA compile (seconds to tens of seconds, one core busy). Compiles are
independent of each other and of the running step, so `StepCompiler` starts them as soon as the
prefetch thread has built a batch of a new shape (`ahead`, the Prefetcher's transform), on a small
thread pool, and the loop only waits for the one it needs now (`executable`). With two workers the
first steps' compiles overlap each other and the steps already running.

The executables are `jax.jit(...).lower(...).compile()` of the same jitted step, so they compute
exactly what the lazily compiled jit would. Only single-process runs compile ahead: with several
hosts each batch here is a host's shard and every process must compile the same programs, so
they keep jit's own compile-on-first-call.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any

import jax
import numpy as np

Signature = tuple[tuple[str, tuple[int, ...], str], ...]


def batch_signature(arrays: Mapping[str, Any]) -> Signature:
    """What decides the compiled program: every key's shape and (JAX's canonical) dtype."""
    return tuple(
        (key, tuple(np.shape(value)), str(jax.dtypes.canonicalize_dtype(np.asarray(value).dtype)))
        for key, value in sorted(arrays.items())
    )


class StepCompiler:
    """Executables of `make_step(example_arrays)` (a `jax.jit`), one per batch signature.

    `abstract_args` are the shapes (with shardings) of the arguments before the batch, and
    `abstract_after` those after it; `batch_spec(arrays)` gives the batch's abstract shapes.
    `workers=0` compiles nothing ahead: `executable` then returns the jitted function itself.
    """

    def __init__(
        self,
        make_step: Callable[[Mapping[str, Any]], Any],
        abstract_args: tuple[Any, ...],
        abstract_after: tuple[Any, ...],
        batch_spec: Callable[[Mapping[str, Any]], Any],
        workers: int = 2,
    ) -> None:
        self._make_step = make_step
        self._abstract_args = abstract_args
        self._abstract_after = abstract_after
        self._batch_spec = batch_spec
        self._lock = threading.Lock()
        self._jitted = None
        self._futures: dict[Signature, Future] = {}
        self._pool = ThreadPoolExecutor(workers, "vlpet-compile") if workers > 0 else None

    def _step(self, arrays: Mapping[str, Any]):
        with self._lock:
            if self._jitted is None:
                self._jitted = self._make_step(arrays)
            return self._jitted

    def _compile(self, arrays: Mapping[str, Any]):
        args = (*self._abstract_args, self._batch_spec(arrays), *self._abstract_after)
        return self._step(arrays).lower(*args).compile()

    def _future(self, arrays: Mapping[str, Any]) -> Future:
        """The compile of `arrays`' signature, started here unless it is compiled or compiling."""
        signature = batch_signature(arrays)
        with self._lock:
            if signature not in self._futures:
                self._futures[signature] = self._pool.submit(self._compile, dict(arrays))
            return self._futures[signature]

    def ahead(self, arrays: Mapping[str, Any]) -> None:
        """Start compiling for `arrays`' signature unless it is compiled or compiling."""
        if self._pool is not None:
            self._future(arrays)

    def executable(self, arrays: Mapping[str, Any]) -> Callable:
        """The step for `arrays`: waits for its compile (started now if nobody asked before)."""
        if self._pool is None:
            return self._step(arrays)
        return self._future(arrays).result()

    @property
    def compiled_signatures(self) -> int:
        with self._lock:
            return len(self._futures)

    def close(self) -> None:
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
