r"""Import a released PyTorch VL-PET / VL-Adapter / LoRA checkpoint into an Orbax checkpoint.

    python -m launch.convert --official VLBart_large.pth --backbone_checkpoint bart-base/ \
        --method vl_pet_large --out /tmp/vlpet_bart_large
    python -m launch.convert --official VLBart_large.pth --out /tmp/vlpet_bart_large \
        --config configs/image_text.py:backbone=bart_base,method=vl_pet_large

Without `--config`, `--backbone_checkpoint` is the Hugging Face directory of the pretrained backbone
(only its `config.json` is read: every weight comes from the released file, the vocabulary size
included) and `--pet` gives the method's sizes where they differ from the paper's defaults, e.g.
`--pet rank=192,gate_rank=192`. With `--config`, the backbone, method and sizes are the config's,
exactly as `vlpet_jax.build_model(config)` builds the model. Key names: SPEC.md §9.
"""

from __future__ import annotations

from typing import Any

from absl import app, flags
from ml_collections import config_flags

_OFFICIAL = flags.DEFINE_string("official", None, "released state dict (.pth or .safetensors)")
_OUT = flags.DEFINE_string("out", None, "output directory (must not exist unless --overwrite)")
_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config (replaces --backbone_checkpoint, --method and --pet)"
)
_BACKBONE = flags.DEFINE_string(
    "backbone_checkpoint", None, "Hugging Face directory of the backbone (its config.json)"
)
_METHOD = flags.DEFINE_string("method", None, "PET method, e.g. vl_pet_large")
_PET = flags.DEFINE_string("pet", "", "method sizes as key=value pairs, e.g. rank=96,num_heads=4")
_NUM_IMAGES = flags.DEFINE_integer("num_images", 2, "rows of the image-order embedding")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace an existing --out directory")
# Checked in main rather than with mark_flags_as_required: tests run several launchers in one
# process, where another launcher's required flags would fail absl's global validation.
_REQUIRED = ("official", "out")


def parse_pet(text: str) -> dict[str, Any]:
    """`rank=96,scale=0.3` -> {"rank": 96, "scale": 0.3}."""
    sizes: dict[str, Any] = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise app.UsageError(f"--pet: {item!r} is not key=value")
        try:
            sizes[key.strip()] = int(value)
        except ValueError:
            try:
                sizes[key.strip()] = float(value)
            except ValueError:
                raise app.UsageError(f"--pet: {item!r} needs a number") from None
    return sizes


def main(argv: list[str]) -> None:
    missing = [name for name in _REQUIRED if flags.FLAGS[name].value is None]
    if missing:
        raise app.UsageError(f"missing required flags: {', '.join('--' + m for m in missing)}")
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    from vlpet_jax.checkpoints import official
    from vlpet_jax.checkpoints.official_save import convert, save_params

    config = _CONFIG.value
    if config is not None:
        if _BACKBONE.value or _METHOD.value or _PET.value:
            raise app.UsageError("--config replaces --backbone_checkpoint, --method and --pet")
        params = official.load(_OFFICIAL.value, config)
        out = save_params(params, _OUT.value, overwrite=_OVERWRITE.value)
        what = f"{config.model.backbone}, {config.pet.method}"
    else:
        if not (_BACKBONE.value and _METHOD.value):
            raise app.UsageError("give --config, or both --backbone_checkpoint and --method")
        cfg, out = convert(
            _OFFICIAL.value,
            _BACKBONE.value,
            _METHOD.value,
            _OUT.value,
            parse_pet(_PET.value),
            num_images=_NUM_IMAGES.value,
            overwrite=_OVERWRITE.value,
        )
        what = f"{cfg.family}, vocab {cfg.vocab_size}, {_METHOD.value}"
    print(f"imported {_OFFICIAL.value} ({what}) -> {out}")


if __name__ == "__main__":
    app.run(main)
