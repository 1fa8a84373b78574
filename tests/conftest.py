"""Test set-up shared by every test module.

XLA reads its flags once, when jax is first imported, so the 8 fake CPU devices that the sharding
tests need are requested here, before any test module imports jax. Matmuls run at full fp32
precision so parity tests against PyTorch can use tight tolerances.
"""

import os

os.environ.setdefault("XLA_FLAGS", "--xla_force_host_platform_device_count=8")
os.environ.setdefault("JAX_PLATFORMS", "cpu")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax

jax.config.update("jax_default_matmul_precision", "highest")
