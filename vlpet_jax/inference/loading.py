"""A trained model from wherever it lives: a training workdir (latest or a given step), a PET
directory (`launch.export --pet_dir`), or an imported released checkpoint (`launch.convert`).

The experiment config comes from the caller, or from the run itself: every training checkpoint
stores its config (`orbax_io.TrainCheckpointer`) and every PET directory too, so the demo's runs,
whose configs are built in code, can be used without rewriting them. Parameters are built through
the normal paths (`Run` + `trained_params`, `init_params(..., pet_dir=...)`), so whatever the
trainer loads (the backbone checkpoint and what is saved next to it) is loaded here too.
"""

from __future__ import annotations

import dataclasses
import os
import tempfile
from typing import Any

import jax

from vlpet_jax import api
from vlpet_jax.train import data_setup

FAMILY_FILES = {"image": "configs/image_text.py", "video": "configs/video_text.py"}


@dataclasses.dataclass
class LoadedModel:
    config: api.Config
    params: Any
    tokenizer: Any
    source: str  # where the trainable weights came from, for the output
    step: int | None = None


def _tuples(value: Any) -> Any:
    """JSON lists back to the tuples the config files use."""
    if isinstance(value, list):
        return tuple(_tuples(v) for v in value)
    return value


def _update(section: Any, saved: dict, where: str, skipped: list[str]) -> None:
    for key, value in saved.items():
        if key not in section:
            if where == "data.synthetic.":  # benchmark sizes: free-form, runlocal sets some
                section[key] = _tuples(value)
            else:
                skipped.append(f"{where}{key}")
            continue
        current = section[key]
        if isinstance(value, dict) and hasattr(current, "items"):
            _update(current, value, f"{where}{key}.", skipped)
        else:
            section[key] = _tuples(value)


def config_from_json(saved: dict) -> api.Config:
    """Rebuild an experiment config from its JSON (a checkpoint's or a PET directory's): the
    family file with the saved backbone and method, then every saved field."""
    try:
        family_file = FAMILY_FILES[saved.get("modality", "image")]
        spec = (
            f"{family_file}:backbone={saved['model']['backbone']},method={saved['pet']['method']}"
        )
    except KeyError as err:
        raise ValueError(f"a saved config without {err}; pass the config explicitly") from None
    config = api.load_config(spec)
    config.unlock()
    skipped: list[str] = []
    _update(config, saved, "", skipped)
    if skipped:
        print(f"[predict] saved config fields this version does not know, ignored: {skipped}")
    config.lock()
    return config


def config_from_workdir(workdir: str, step: int | None = None) -> api.Config:
    """The config a training run saved with its checkpoint `step` (default: the latest)."""
    import orbax.checkpoint as ocp

    from vlpet_jax.checkpoints.orbax_io import CONFIG, TrainCheckpointer

    checkpointer = TrainCheckpointer(workdir)
    try:
        step = checkpointer.latest_step() if step is None else step
        if step is None or step not in checkpointer.all_steps():
            raise FileNotFoundError(
                f"{checkpointer.directory}: no checkpoint "
                f"{'' if step is None else f'for step {step} '}to read the config from; found "
                f"{checkpointer.all_steps() or 'none'}"
            )
        saved = checkpointer.manager.restore(
            step, args=ocp.args.Composite(**{CONFIG: ocp.args.JsonRestore()})
        )[CONFIG]
    finally:
        checkpointer.close()
    return config_from_json(saved)


def check_same_model(config: api.Config, saved: api.Config, where: str) -> None:
    """The given config builds the model `saved` describes: same method, sizes and backbone."""
    problems = []
    if config.pet.method != saved.pet.method:
        problems.append(f"PET method {saved.pet.method!r} there, {config.pet.method!r} here")
    else:
        mine, theirs = config.pet.to_dict(), saved.pet.to_dict()
        problems += [
            f"config.pet.{k} is {theirs.get(k)!r} there, {mine.get(k)!r} here"
            for k in sorted(set(mine) | set(theirs))
            if mine.get(k) != theirs.get(k)
        ]
    for field in ("backbone", "checkpoint", "feat_dim", "num_images"):
        mine, theirs = config.model[field], saved.model[field]
        if field == "checkpoint" and mine and theirs:  # one directory, however it is written
            mine, theirs = os.path.realpath(mine), os.path.realpath(theirs)
        if mine != theirs:
            problems.append(
                f"config.model.{field} is {saved.model[field]!r} there, {config.model[field]!r} here"
            )
    if problems:
        raise ValueError(f"{where} is another model than --config builds: " + "; ".join(problems))


def check_tree(params: Any, config: api.Config, source: str) -> None:
    """An imported tree has exactly the leaves and shapes of `config`'s model."""
    from flax.traverse_util import flatten_dict

    want = flatten_dict(api.abstract_params(config), sep="/")
    have = flatten_dict(dict(params), sep="/")
    missing, extra = sorted(want.keys() - have.keys()), sorted(have.keys() - want.keys())
    shapes = [
        f"{p} {tuple(have[p].shape)} vs {tuple(want[p].shape)}"
        for p in sorted(want.keys() & have.keys())
        if tuple(have[p].shape) != tuple(want[p].shape)
    ]
    if missing or extra or shapes:
        raise ValueError(
            f"{source} is not a {config.pet.method!r} model of this config (a checkpoint of "
            f"another method or size?): missing {missing[:6] or 'none'}; unexpected "
            f"{extra[:6] or 'none'}; shapes (found vs expected) {shapes[:6] or 'all equal'}"
        )


def _tokenizer(config: api.Config, workdir: str | None) -> Any:
    family = api.backbone_config(config).family
    if config.data.root == data_setup.SYNTHETIC and workdir is None:
        raise ValueError(
            "config.data.root is 'synthetic' (the benchmark and its tokenizer live in the run's "
            "workdir): pass the training workdir too"
        )
    return data_setup.run_tokenizer(config, workdir or tempfile.gettempdir(), family)[1]


def load_model(
    config: api.Config | None = None,
    *,
    workdir: str | None = None,
    step: int | None = None,
    pet_dir: str | None = None,
    params_dir: str | None = None,
) -> LoadedModel:
    """Exactly one source of trainable weights: `pet_dir`, `params_dir`, or `workdir`'s
    checkpoints. `workdir` also holds a synthetic-benchmark run's tokenizer."""
    if pet_dir and params_dir:
        raise ValueError("give one of pet_dir and params_dir")
    if pet_dir:
        if config is None:
            from vlpet_jax.checkpoints.pet_files import read_description

            config = config_from_json(read_description(pet_dir)["config"])
        params = api.init_params(config, jax.random.key(int(config.train.seed)), pet_dir=pet_dir)
        return LoadedModel(config, params, _tokenizer(config, workdir), os.path.abspath(pet_dir))
    if params_dir:
        if config is None:
            raise ValueError("an imported checkpoint (params_dir) needs its experiment config")
        from vlpet_jax.checkpoints.official_save import restore_params

        restored = restore_params(params_dir)
        check_tree(restored, config, params_dir)
        params = api.cast_frozen(
            restored,
            api.trainability_rules(config),
            api.dtype_of(config.model.frozen_dtype),
        )
        return LoadedModel(config, params, _tokenizer(config, workdir), os.path.abspath(params_dir))
    if not workdir:
        raise ValueError("give a training workdir, a pet_dir or a params_dir")
    from vlpet_jax.train.trainer import Run, trained_params

    saved = config_from_workdir(workdir, step)
    if config is None:
        config = saved
    else:
        check_same_model(config, saved, f"{workdir} (its saved config)")
    run = Run(config, workdir, with_eval=False)
    params, step = trained_params(run, step)
    return LoadedModel(config, params, run.data.tokenizer, os.path.abspath(workdir), step)
