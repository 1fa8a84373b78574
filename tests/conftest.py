"""Test set-up shared by every test module.

XLA reads its flags once, when jax is first imported, so the 8 fake CPU devices that the sharding
tests need are requested here, before any test module imports jax. Matmuls run at full fp32
precision so parity tests against PyTorch can use tight tolerances.

Compiled programs go to a persistent compilation cache under `.pytest_cache/` that both pytest
workers share: many tests compile the same tiny-model programs (init, train step, decoders), and
a fresh checkout starts empty, so the suite pays each compile once. `VLPET_TEST_COMPILE_CACHE=''`
turns it off.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax

jax.config.update("jax_default_matmul_precision", "highest")

_CACHE = os.environ.get(
    "VLPET_TEST_COMPILE_CACHE",
    os.path.join(
        os.path.dirname(os.path.dirname(os.path.abspath(__file__))), ".pytest_cache", "jax"
    ),
)
if _CACHE:
    jax.config.update("jax_compilation_cache_dir", _CACHE)
    # Programs that compile in under half a second are cheaper to recompile than to store.
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
