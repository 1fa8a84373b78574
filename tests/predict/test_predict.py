"""Predict (`vlpet_jax.inference`) against the evaluator's dataset path, and the PET directory.

A tiny model is trained for one step on the synthetic benchmark; a scene of its validation split
is rendered to an image file (a video to a folder of frames), and the benchmark's feature file of
that scene is replaced by the features of the file, so that predict (files -> features -> prompt
-> decode) and the evaluator (annotations -> feature store -> batch -> decode) read the same
features. Both must give the same input text, the same answer and the same score.
"""

from __future__ import annotations

import json
from pathlib import Path

import jax
import numpy as np
import pytest
from flax.traverse_util import flatten_dict
from jax.experimental.compilation_cache import compilation_cache
from PIL import Image

import vlpet_jax
from tests.train.tiny_run import TINY_SYNTHETIC
from vlpet_jax import pet_export
from vlpet_jax.checkpoints.pet_files import PetDirError
from vlpet_jax.data.multitask import load_task_source
from vlpet_jax.data.synthetic.io import write_image_h5, write_video_npz
from vlpet_jax.data.synthetic.pools import image_pools, video_pools
from vlpet_jax.data.synthetic.render import render_scene, to_uint8
from vlpet_jax.data.synthetic.scenes import IMAGE_LATTICE
from vlpet_jax.inference import InputError, Predictor, load_model
from vlpet_jax.inference.inputs import SyntheticFeatures
from vlpet_jax.train import trainer

IMAGE_SPEC = "configs/image_text.py:backbone=bart_base,method=vl_pet_large,runlocal=True,tasks=vqa"
VIDEO_SPEC = "configs/video_text.py:backbone=bart_base,method=vl_pet_large,runlocal=True,tasks=tvqa"
# One training step (every example in one batch), no evaluation during training.
ONE_STEP = {
    "train.epochs": 1,
    "train.eval_every_epochs": 0,
    "train.compile_workers": 0,
    "train.checkpoint_every_steps": 1,
    "optim.lr": 3e-3,
}
VIDEO_SIZES = {
    "data.synthetic.tv_videos": (2, 1),
    "data.synthetic.how2_videos": (1, 1),
    "data.synthetic.yc2_videos": (1, 1),
}


def _config(spec: str, overrides: dict) -> vlpet_jax.api.Config:
    config = vlpet_jax.load_config(spec)
    config.unlock()
    for dotted, value in overrides.items():
        *parents, name = dotted.split(".")
        section = config
        for parent in parents:
            section = section[parent]
        section[name] = value
    config.lock()
    return config


def _sizes(config) -> dict:
    sizes = dict(config.data.synthetic)
    return {k: v for k, v in sizes.items() if k != "seed"}


def _save_png(pixels: np.ndarray, path: Path) -> str:
    Image.fromarray(to_uint8(pixels)).save(path)
    return str(path)


@pytest.fixture(scope="module", autouse=True)
def compile_cache(tmp_path_factory):
    """A persistent compilation cache for this module: a model's init and decoders compile once
    however many times it is loaded (workdir, PET directory) and asked (the cache changes no
    number)."""
    names = (
        "jax_compilation_cache_dir",
        "jax_persistent_cache_min_compile_time_secs",
        "jax_persistent_cache_min_entry_size_bytes",
    )
    previous = {name: getattr(jax.config, name) for name in names}
    values = (str(tmp_path_factory.mktemp("jax_cache")), 0.0, 0)
    for name, value in zip(names, values):
        jax.config.update(name, value)
    compilation_cache.reset_cache()
    yield
    for name, value in previous.items():
        jax.config.update(name, value)
    compilation_cache.reset_cache()


@pytest.fixture(scope="module")
def image_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("image_run"))
    config = _config(IMAGE_SPEC, {**TINY_SYNTHETIC, **ONE_STEP, "data.batch_size": 64})
    trainer.train(config, workdir)
    # The config is read back from the run's checkpoint, as launch.predict does.
    return config, workdir, Predictor(load_model(workdir=workdir))


@pytest.fixture(scope="module")
def video_run(tmp_path_factory):
    workdir = str(tmp_path_factory.mktemp("video_run"))
    config = _config(VIDEO_SPEC, {**VIDEO_SIZES, **ONE_STEP, "data.batch_size": 64})
    trainer.train(config, workdir)
    return config, workdir, Predictor(load_model(workdir=workdir))


def _dataset_answer(predictor: Predictor, task: str, root: str, split: str, uid: str):
    """The evaluator's answer and score for one example of the benchmark, by the dataset path."""
    source = load_task_source(task, root, split, train=False, batch_size=8)
    example = next(ex for ex in source.examples if ex.uid == uid)
    answers, scores = predictor.answer(predictor.source(task, [example], source.visuals))
    return example, answers[uid], scores[uid]


def _image_file(config, root: Path, pool: str, img_id: str, feature_dir: str, out: Path) -> str:
    """Render the benchmark scene `img_id` to a PNG; its feature file becomes the PNG's."""
    scene = dict(image_pools(0, **_sizes(config))[pool])[img_id]
    path = _save_png(render_scene(scene, IMAGE_LATTICE, np.random.default_rng(1)), out)
    feats = SyntheticFeatures(config.model.feat_dim, 512).image(Path(path))
    write_image_h5(root / feature_dir, img_id, feats)
    return path


def test_vqa_on_an_image_file_answers_as_the_evaluator(image_run, tmp_path):
    config, workdir, predictor = image_run
    root = Path(workdir) / "synthetic"
    record = json.loads((root / "vqa" / "karpathy_val.json").read_text())[0]
    image = _image_file(config, root, "coco/val", record["img_id"],
                        "COCO/clip_features/data_clip_RN101_att", tmp_path / "scene.png")  # fmt: skip
    [result] = predictor("vqa", images=[image], question=record["sent"])
    example, answer, score = _dataset_answer(
        predictor, "vqa", root, "val", str(record["question_id"])
    )
    assert result["input"] == example.input_text == f"vqa: {record['sent']}"
    assert result["answer"] == answer
    assert result["score"] == score  # the same program on the same inputs
    assert 0.0 < result["score"] <= 1.0


def test_nlvr_over_two_image_files_answers_as_the_evaluator(image_run, tmp_path):
    config, workdir, predictor = image_run
    root = Path(workdir) / "synthetic"
    record = json.loads((root / "nlvr" / "valid.json").read_text())[0]
    images = [
        _image_file(
            config,
            root,
            "nlvr/valid",
            record[key],
            "nlvr/clip_features/data_clip_RN101_att",
            tmp_path / f"{key}.png",
        )
        for key in ("img0", "img1")
    ]
    [result] = predictor("nlvr", images=images, statement=record["sent"])
    example, answer, score = _dataset_answer(predictor, "nlvr", root, "valid", record["uid"])
    assert result["input"] == example.input_text
    assert result["answer"] == ("true" if answer else "false")
    assert result["score"] == score  # the same program on the same inputs
    # The two images are two inputs: swapping them changes what the model sees.
    [swapped] = predictor("nlvr", images=images[::-1], statement=record["sent"])
    assert swapped["score"] != result["score"]


def test_video_question_with_choices_answers_as_the_evaluator(video_run, tmp_path):
    config, workdir, predictor = video_run
    root = Path(workdir) / "synthetic"
    ann = root / "video" / "ann"
    record = json.loads((ann / "tvqa" / "tvqa_val.jsonl").read_text().splitlines()[0])
    video = dict(video_pools(0, **_sizes(config))["tv/val"])[record["vid_name"]]
    folder = tmp_path / record["vid_name"]
    folder.mkdir()
    for t, frame in enumerate(video.render(np.random.default_rng(2))):
        _save_png(frame, folder / f"frame_{t:04d}.png")
    frames = sorted(folder.iterdir())
    feats = SyntheticFeatures(2048, config.model.feat_dim).video(frames)
    write_video_npz(root / "video/vis_features/tv/clip-vit", record["vid_name"], feats)
    subtitles = next(
        json.loads(line)["sub"]
        for line in (ann / "tv_subtitles.jsonl").read_text().splitlines()
        if json.loads(line)["vid_name"] == record["vid_name"]
    )
    [result] = predictor(
        "tvqa", videos=[str(folder)], question=record["q"],
        choices=[record[f"a{i}"] for i in range(5)],
        subtitles=[line["text"] for line in subtitles], ts=record["ts"],
    )  # fmt: skip
    example, answer, score = _dataset_answer(predictor, "tvqa", root, "val", str(record["qid"]))
    assert result["input"] == example.input_text
    assert result["answer"] == answer
    assert result["score"] == score  # the same program on the same inputs


# ---------------------------------------------------------------- bad inputs


def test_bad_inputs_are_named(image_run, video_run, tmp_path):
    _, _, predictor = image_run
    with pytest.raises(InputError, match=r"missing\.png: image not found"):
        predictor("vqa", images=[str(tmp_path / "missing.png")], question="what is it?")
    unreadable = tmp_path / "notes.png"
    unreadable.write_text("not an image")
    with pytest.raises(InputError, match=r"notes\.png: not a readable image"):
        predictor("vqa", images=[str(unreadable)], question="what is it?")
    big = tmp_path / "photo.png"
    Image.new("RGB", (224, 160)).save(big)
    with pytest.raises(InputError, match=r"reads 56×56 renders, found 224×160"):
        predictor("caption", images=[str(big)])
    with pytest.raises(InputError, match=r"nlvr compares exactly two images, got 1"):
        predictor("nlvr", images=[str(big)], statement="there are two cubes")
    with pytest.raises(InputError, match=r"this is a image model .* not 'tvqa'"):
        predictor("tvqa", videos=[str(tmp_path)], question="q", choices=list("abcde"))
    _, _, video_predictor = video_run
    empty = tmp_path / "clip"
    empty.mkdir()
    choices = list("abcde")
    with pytest.raises(InputError, match=r"clip: video folder without frames"):
        video_predictor("tvqa", videos=[str(empty)], question="q", choices=choices)
    with pytest.raises(InputError, match=r"nowhere: video folder not found"):
        video_predictor("tvqa", videos=[str(tmp_path / "nowhere")], question="q", choices=choices)
    with pytest.raises(InputError, match=r"tvqa asks with 5 choices \(a0\.\.a4\), got 4"):
        video_predictor("tvqa", videos=[str(empty)], question="q", choices=choices[:4])


# ---------------------------------------------------------------- the PET directory


def test_pet_dir_reloads_to_the_same_tree_and_answers(image_run, tmp_path):
    """Exported, then loaded on top of the backbone by `init_params(..., pet_dir=...)` (through
    `load_model`, with the config the directory saved): the same leaves, the same answer and
    score (so the same logits) as the workdir's model."""
    config, workdir, predictor = image_run
    params = predictor.loaded.params
    out = pet_export.export_pet(params, predictor.config, tmp_path / "pet")
    description = json.loads((Path(out) / "pet_config.json").read_text())
    assert description["method"] == "vl_pet_large" and description["vocab_size"] > 0
    assert description["backbone"]["name"] == "bart_tiny" and description["project_version"]
    from_pet_dir = Predictor(load_model(pet_dir=out, workdir=workdir))
    flat, again = flatten_dict(params, sep="/"), flatten_dict(from_pet_dir.loaded.params, sep="/")
    assert sorted(flat) == sorted(again)
    for key, value in flat.items():
        np.testing.assert_array_equal(np.asarray(again[key]), np.asarray(value), err_msg=key)
    root = Path(workdir) / "synthetic"
    record = json.loads((root / "vqa" / "karpathy_val.json").read_text())[0]
    image = _image_file(config, root, "coco/val", record["img_id"],
                        "COCO/clip_features/data_clip_RN101_att", tmp_path / "scene.png")  # fmt: skip
    [want] = predictor("vqa", images=[image], question=record["sent"])
    [got] = from_pet_dir("vqa", images=[image], question=record["sent"])
    assert (got["answer"], got["score"]) == (want["answer"], want["score"])


def test_pet_dir_of_another_method_or_size_or_backbone_is_refused(image_run, tmp_path):
    _, _, predictor = image_run
    out = pet_export.export_pet(predictor.loaded.params, predictor.config, tmp_path / "pet")
    small = _config(IMAGE_SPEC.replace("vl_pet_large", "vl_pet_small"), {})
    with pytest.raises(PetDirError, match=r"exported for PET method 'vl_pet_large', the config "
                       r"asks for 'vl_pet_small'"):  # fmt: skip
        pet_export.load_pet(predictor.loaded.params, small, out)
    narrower = _config(IMAGE_SPEC, {"pet.rank": 8})
    with pytest.raises(
        PetDirError, match=r"config\.pet\.rank is 16 in the export, 8 in the config"
    ):
        pet_export.load_pet(predictor.loaded.params, narrower, out)
    t5 = _config(IMAGE_SPEC.replace("bart_base", "t5_base"), {})
    with pytest.raises(PetDirError, match=r"backbone family is 'bart' in the export, 't5' here"):
        pet_export.load_pet(predictor.loaded.params, t5, out)
    other_seed = vlpet_jax.init_params(predictor.config, jax.random.key(7))
    with pytest.raises(PetDirError, match=r"frozen parameters differ .* init seed 42"):
        pet_export.load_pet(other_seed, predictor.config, out)
    with pytest.raises(PetDirError, match=r"pet_config\.json: not found"):
        pet_export.load_pet(other_seed, predictor.config, tmp_path)


def test_checkpoints_of_another_method_or_size_are_refused(image_run, tmp_path):
    _, workdir, predictor = image_run
    small = _config(IMAGE_SPEC.replace("vl_pet_large", "vl_pet_small"), {**TINY_SYNTHETIC})
    with pytest.raises(ValueError, match=r"is another model than --config builds: PET method "
                       r"'vl_pet_large' there, 'vl_pet_small' here"):  # fmt: skip
        load_model(small, workdir=workdir)
    narrower = _config(IMAGE_SPEC, {**TINY_SYNTHETIC, "pet.rank": 8})
    with pytest.raises(ValueError, match=r"config\.pet\.rank is 16 there, 8 here"):
        load_model(narrower, workdir=workdir)
    # An imported checkpoint (launch.convert's output) read with the config of another size.
    from vlpet_jax.checkpoints.official_save import save_params

    imported = save_params(predictor.loaded.params, tmp_path / "imported")
    with pytest.raises(ValueError, match=r"imported is not a 'vl_pet_large' model of this config "
                       r"\(a checkpoint of another method or size\?\).*shapes \(found vs "
                       r"expected\) \['backbone/encoder_layers_0/pet_ff/gate/down/bias \(16,\) "
                       r"vs \(8,\)'"):  # fmt: skip
        load_model(_config(IMAGE_SPEC, {"pet.gate_rank": 8}), params_dir=imported)
