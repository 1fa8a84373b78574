r"""Export a trained model: its PET part as a small directory, and/or the original code's format.

    python -m launch.export --workdir /runs/bart_large --pet_dir /share/bart_large_pet
    python -m launch.export --workdir /runs/bart_large --step 12000 --official /share/VLBart_large.pth
    python -m launch.export --config configs/image_text.py:backbone=bart_base,method=vl_pet_large \
        --config.model.checkpoint=/ckpt/bart-base --params /runs/imported --pet_dir /share/pet

`--pet_dir`: `pet_model.safetensors` (the trainable leaves) + `pet_config.json` (method, sizes,
backbone, trainability rules, vocabulary, version), loaded on top of the backbone by
`vlpet_jax.init_params(config, rng, pet_dir=...)`, `launch.evaluate --pet_dir` and
`launch.predict --pet_dir`. `--official`: the whole model as the original VL-PET / VL-Adapter
trainer saves it (PyTorch state dict, released names, `module.` prefix, tied and per-task copies;
needs torch; a `.safetensors` name writes that instead), which `launch.convert` imports back.

The source is a training workdir (its latest checkpoint, or `--step`; the config is the one the
run saved unless `--config` is given), a `launch.convert` output (`--params`, with `--config`),
or a PET directory (`--from_pet_dir`, e.g. to turn one into the original format).
"""

from __future__ import annotations

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config (default: the one the workdir's run saved)"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "training run directory to export from")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_PARAMS = flags.DEFINE_string("params", None, "a launch.convert output to export instead")
_FROM_PET_DIR = flags.DEFINE_string("from_pet_dir", None, "a PET directory to export instead")
_PET_DIR = flags.DEFINE_string("pet_dir", None, "write pet_model.safetensors + pet_config.json")
_OFFICIAL = flags.DEFINE_string("official", None, "write the original code's format (.pth)")
_ALIASES = flags.DEFINE_list(
    "task_aliases", None, "task names the original format repeats single adapters under "
    "(default: every task of the family, e.g. vqa,gqa,nlvr,caption)",
)  # fmt: skip
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "replace an existing --pet_dir")


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if not (_PET_DIR.value or _OFFICIAL.value):
        raise app.UsageError("nothing to write: give --pet_dir and/or --official")
    if not (_WORKDIR.value or _PARAMS.value or _FROM_PET_DIR.value):
        raise app.UsageError("give the source: --workdir, --params or --from_pet_dir")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
    from vlpet_jax import pet_export
    from vlpet_jax.inference.loading import load_model

    loaded = load_model(
        _CONFIG.value, workdir=_WORKDIR.value, step=_STEP.value,
        pet_dir=_FROM_PET_DIR.value, params_dir=_PARAMS.value,
    )  # fmt: skip
    what = loaded.source + (f" (step {loaded.step})" if loaded.step is not None else "")
    if _PET_DIR.value:
        out = pet_export.export_pet(
            loaded.params, loaded.config, _PET_DIR.value, overwrite=_OVERWRITE.value
        )
        print(f"[export] {what} -> {out} (pet_model.safetensors, pet_config.json)")
    if _OFFICIAL.value:
        out = pet_export.export_original(
            loaded.params, loaded.config, _OFFICIAL.value, _ALIASES.value
        )
        print(f"[export] {what} -> {out} (original VL-PET format, {loaded.config.pet.method})")


if __name__ == "__main__":
    app.run(main)
