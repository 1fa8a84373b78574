r"""Ask a trained model about your own images or videos.

    python -m launch.predict --workdir demo_run/runs/t5_tiny/vl_pet_large \
        --task vqa --image scene.png --question "what color is the cube?"
    python -m launch.predict --workdir RUN --task nlvr --image left.png --image right.png \
        --statement "the left image contains exactly two spheres"
    python -m launch.predict --workdir RUN --task caption --image photos/ --jsonl captions.jsonl
    python -m launch.predict --workdir RUN --task tvqa --video frames/clip_01/ \
        --question "what does the red cube do?" --choices "a|b|c|d|e" --subtitles "..."
    python -m launch.predict --config configs/image_text.py:backbone=bart_base,method=vl_pet_large \
        --config.model.checkpoint=/ckpt/bart-base --pet_dir /share/pet \
        --clip_weights RN101.pt --task vqa --image photo.jpg --question "what is on the table?"

The model comes from a training workdir (latest checkpoint or `--step`; the config the run saved,
unless `--config`), a PET directory (`launch.export --pet_dir`) or an imported released checkpoint
(`launch.convert` output, `--params`, with `--config`). Features: the synthetic benchmark's
extractor for models trained on it (the demo's), else the project's Flax CLIP with `--clip_weights`
(RN101 for images, ViT-B/32 for video frames). Prints one line per example; `--jsonl` also writes
`{"image": ..., "question": ..., "answer": ..., "score": ...}` lines ("-" for stdout).
"""

from __future__ import annotations

import json
import sys

from absl import app, flags, logging
from ml_collections import config_flags

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "experiment config (default: the one the workdir's run saved)"
)
_WORKDIR = flags.DEFINE_string("workdir", None, "training run directory")
_STEP = flags.DEFINE_integer("step", None, "checkpoint step (default: the latest)")
_PET_DIR = flags.DEFINE_string("pet_dir", None, "a launch.export PET directory")
_PARAMS = flags.DEFINE_string("params", None, "a launch.convert output (imported checkpoint)")
_TASK = flags.DEFINE_enum(
    "task", None, ["vqa", "gqa", "nlvr", "caption", "tvqa", "how2qa"], "what to ask"
)
_IMAGES = flags.DEFINE_multi_string("image", [], "an image file or a folder of images")
_VIDEOS = flags.DEFINE_multi_string("video", [], "a folder of frame images (file-name order)")
_QUESTION = flags.DEFINE_multi_string("question", [], "a question (VQA, GQA, TVQA, How2QA)")
_STATEMENT = flags.DEFINE_multi_string("statement", [], "an NLVR2 statement about two images")
_CHOICES = flags.DEFINE_string("choices", None, "TVQA / How2QA answer choices, '|'-separated")
_SUBTITLES = flags.DEFINE_string("subtitles", None, "TVQA / How2QA subtitles (text)")
_TS = flags.DEFINE_string("ts", None, "TVQA / How2QA time span 'start-end' (default: whole clip)")
_FPS = flags.DEFINE_float("fps", 2.0, "frames per second of --video (for the default --ts)")
_FEATURES = flags.DEFINE_enum(
    "features", None, ["synthetic", "clip"], "feature extractor (default: by the training data)"
)
_CLIP = flags.DEFINE_string("clip_weights", None, "CLIP weights (RN101 images, ViT-B/32 video)")
_JSONL = flags.DEFINE_string("jsonl", None, "also write JSON lines here ('-': stdout)")


def _line(result: dict) -> str:
    visual = result.get("image", result.get("video"))
    visual = " + ".join(visual) if isinstance(visual, list) else visual
    asked = result.get("question") or result.get("statement") or result["task"]
    return f"{visual}\t{asked}\t-> {result['answer']}\t(score {result['score']:.3f})"


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {argv[1:]}")
    if _TASK.value is None:
        raise app.UsageError("missing required flag: --task")
    logging.set_verbosity(logging.WARNING)  # Orbax logs every restore at INFO
    from vlpet_jax.inference import Predictor, load_model

    loaded = load_model(
        _CONFIG.value, workdir=_WORKDIR.value, step=_STEP.value,
        pet_dir=_PET_DIR.value, params_dir=_PARAMS.value,
    )  # fmt: skip
    predictor = Predictor(loaded, _FEATURES.value, _CLIP.value)
    results = predictor(
        _TASK.value,
        images=_IMAGES.value,
        videos=_VIDEOS.value,
        question=_QUESTION.value or None,
        statement=_STATEMENT.value or None,
        choices=_CHOICES.value.split("|") if _CHOICES.value else None,
        subtitles=_SUBTITLES.value,
        ts=_TS.value,
        fps=_FPS.value,
    )
    for result in results:
        print(_line(result), flush=True)
    lines = "".join(json.dumps(result) + "\n" for result in results)
    if _JSONL.value == "-":
        sys.stdout.write(lines)
    elif _JSONL.value:
        with open(_JSONL.value, "w") as f:
            f.write(lines)


if __name__ == "__main__":
    app.run(main)
