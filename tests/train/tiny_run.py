"""The tiny VQA-only run the trainer tests share: its config string, synthetic-benchmark sizes, and
the two ways to apply overrides (in process, and as `launch.train` command-line flags)."""

from __future__ import annotations

from typing import Any

import vlpet_jax

SPEC = "configs/image_text.py:backbone=bart_base,method=vl_pet_large,runlocal=True,tasks=vqa"
# 58 VQA training questions on 4 images; the other tasks' splits at their minimum.
TINY_SYNTHETIC = {
    "data.synthetic.coco_images": (4, 0, 2, 2),
    "data.synthetic.gqa_images": (1, 1, 1),
    "data.synthetic.nlvr_images": (2, 2, 2),
    "data.synthetic.nlvr_groups": (1, 1, 1),
}


def config_with(overrides: dict[str, Any]) -> Any:
    """`SPEC`'s config with each dotted `overrides` field set."""
    config = vlpet_jax.load_config(SPEC)
    for dotted, value in overrides.items():
        *parents, name = dotted.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        section[name] = value
    return config


def cli_flags(overrides: dict[str, Any]) -> list[str]:
    """The same overrides as `--config.a.b=value` flags (tuples as `(x,y)`)."""

    def text(value: Any) -> str:
        return f"({','.join(map(str, value))})" if isinstance(value, tuple) else str(value)

    return [f"--config.{k}={text(v)}" for k, v in overrides.items()]
