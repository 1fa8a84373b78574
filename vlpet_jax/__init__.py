"""VL-PET (ICCV 2023) and its parameter-efficient tuning baselines in JAX/Flax.

    import vlpet_jax
    config = vlpet_jax.load_config("configs/image_text.py:backbone=t5_base,method=vl_pet_large")
    model = vlpet_jax.build_model(config)
    params = vlpet_jax.init_params(config, jax.random.key(0))
    print(vlpet_jax.inspect.summary(params, config).format())

Attributes are imported on first use, so `import vlpet_jax` stays cheap (no jax import) for
tools that only need, say, the data readers.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from typing import Any

__all__ = [
    "abstract_params",
    "backbone_config",
    "build_model",
    "checkpoints",
    "init_params",
    "inspect",
    "load_config",
    "predict",
]

_API = {"abstract_params", "backbone_config", "build_model", "init_params", "load_config"}


def __getattr__(name: str) -> Any:
    if name in _API:
        api = importlib.import_module("vlpet_jax.api")
        return getattr(api, name)
    if name == "predict":  # vlpet_jax.inference.predict: answers about your images and videos
        return importlib.import_module("vlpet_jax.inference").predict
    if name == "inspect":
        module = importlib.import_module("vlpet_jax.train.inspect")
        # From now on `import vlpet_jax.inspect` finds the same module.
        sys.modules.setdefault("vlpet_jax.inspect", module)
        globals()["inspect"] = module
        return module
    if name == "checkpoints":
        package = importlib.import_module("vlpet_jax.checkpoints")
        # `vlpet_jax.checkpoints.hf.load_backbone(...)`, `...official.load(...)` without more imports.
        for sub in ("hf", "official"):
            if importlib.util.find_spec(f"vlpet_jax.checkpoints.{sub}") is not None:
                importlib.import_module(f"vlpet_jax.checkpoints.{sub}")
        return package
    raise AttributeError(f"module 'vlpet_jax' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
