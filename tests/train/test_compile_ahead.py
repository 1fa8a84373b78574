"""`StepCompiler`: executables compiled on background threads, one per batch signature, computing
what the plain `jax.jit` computes (the trainer-level check is in test_trainer_runs.py)."""

from __future__ import annotations

import threading

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from vlpet_jax.checkpoints.orbax_io import abstract_like
from vlpet_jax.train.compile_ahead import StepCompiler, batch_signature


def step(state, frozen, batch, rng):
    noise = jax.random.uniform(rng, batch["x"].shape)
    return state + frozen * jnp.sum(batch["x"] * noise), jnp.mean(batch["x"])


def make_compiler(workers, traced=None):
    def make_step(arrays):
        del arrays

        def counted(*args):
            if traced is not None:
                traced.append(threading.current_thread().name)
            return step(*args)

        return jax.jit(counted, donate_argnums=(0,))

    state, frozen, rng = jnp.float32(1.0), jnp.float32(2.0), jax.random.key(0)
    compiler = StepCompiler(
        make_step,
        (abstract_like(state), abstract_like(frozen)),
        (abstract_like(rng),),
        lambda arrays: {k: jax.ShapeDtypeStruct(v.shape, v.dtype) for k, v in arrays.items()},
        workers=workers,
    )
    return compiler, frozen, rng


def test_each_signature_compiles_once_on_a_worker_and_matches_jit():
    traced = []
    compiler, frozen, rng = make_compiler(2, traced)
    batches = [{"x": np.arange(n, dtype=np.float32)} for n in (3, 5, 3, 5, 3)]
    for batch in batches:
        compiler.ahead(batch)
    assert compiler.compiled_signatures == 2
    for batch in batches:
        expected = jax.jit(step)(jnp.float32(1.0), frozen, batch, rng)
        found = compiler.executable(batch)(jnp.float32(1.0), frozen, batch, rng)
        np.testing.assert_array_equal(np.asarray(found[0]), np.asarray(expected[0]))
        np.testing.assert_array_equal(np.asarray(found[1]), np.asarray(expected[1]))
    compiler.close()
    assert len(traced) == 2  # one trace per signature, never on the calling thread
    assert all(name.startswith("vlpet-compile") for name in traced)


def test_signature_is_shape_and_dtype():
    a = {"x": np.zeros((2, 3), np.float32), "m": np.ones(2, np.int32)}
    assert batch_signature(a) == batch_signature({"m": np.zeros(2, np.int32), **a})
    assert batch_signature(a) != batch_signature({**a, "x": np.zeros((2, 4), np.float32)})
    assert batch_signature(a) != batch_signature({**a, "m": np.ones(2, np.float32)})


def test_without_workers_the_jitted_step_is_returned():
    compiler, frozen, rng = make_compiler(0)
    batch = {"x": np.ones(4, np.float32)}
    compiler.ahead(batch)
    assert compiler.compiled_signatures == 0
    fn = compiler.executable(batch)
    assert hasattr(fn, "lower")  # the jax.jit itself, compiled on first call
    assert float(fn(jnp.float32(0.0), frozen, batch, rng)[1]) == 1.0


def test_a_compile_error_reaches_the_caller():
    compiler, _, _ = make_compiler(1)
    bad = {"x": np.ones((2, 2), np.float32), "y": np.ones(3, np.float32)}
    compiler._batch_spec = lambda arrays: (_ for _ in ()).throw(ValueError("no spec for y"))
    compiler.ahead(bad)
    with pytest.raises(ValueError, match="no spec for y"):
        compiler.executable(bad)
    compiler.close()
