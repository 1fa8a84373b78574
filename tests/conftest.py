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


# The modules that take a minute or more on 2 cores, longest first. Pytest-xdist hands whole
# modules to the two workers in collection order (`--dist loadfile`), so starting these first
# lets the run end on short modules instead of one worker finishing a long one alone.
LONG_MODULES = (
    "tests/train/test_trainer_runs.py",
    "tests/checkpoints/test_official_import.py",
    "tests/train/test_inspect.py",
    "tests/pet/test_methods.py",
    "tests/predict/test_predict.py",
    "tests/train/test_pretrain.py",
    "tests/train/test_released_optimizer.py",
    "tests/demo/test_vl_pretraining.py",
    "tests/train/test_trainer_multihost.py",
    "tests/train/test_sharded_step.py",
    "tests/pet/test_gate_pooling.py",
    "tests/checkpoints/test_export_official.py",
    "tests/models/test_hf_loading.py",
    "tests/models/test_backbone_parity.py",
)


def pytest_collection_modifyitems(session, config, items):
    del session, config
    rank = {path: index for index, path in enumerate(LONG_MODULES)}
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

    def module_rank(item) -> int:
        return rank.get(os.path.relpath(str(item.path), root), len(LONG_MODULES))

    items.sort(key=module_rank)  # stable: the rest keep their order
