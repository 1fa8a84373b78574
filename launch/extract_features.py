r"""Extract CLIP visual features in the layouts of SPEC.md §2 (optional; needs the CLIP weights).

    python -m launch.extract_features --kind image --weights RN101.pt \
        --input_dir train2014/ --out_dir datasets/COCO/clip_features/data_clip_RN101_att
    python -m launch.extract_features --kind video --weights ViT-B-32.pt \
        --input_dir frames/tv/ --out_dir datasets/video/vis_features/tv/clip-vit

``--weights`` is OpenAI's CLIP checkpoint (the ``.pt`` release, or a state dict with the same
``visual.*`` names as .pt / .safetensors / .npz). Images: one file per image id; videos: one folder
of frames per video. Already written outputs are skipped unless ``--reextract``. Details:
``vlpet_jax/data/extract/``.
"""

from __future__ import annotations

import json

from absl import app, flags

_KIND = flags.DEFINE_enum("kind", None, ["image", "video"], "RN101 grids or ViT-B/32 frames")
_WEIGHTS = flags.DEFINE_string("weights", None, "CLIP checkpoint (.pt, .safetensors or .npz)")
_INPUT = flags.DEFINE_string("input_dir", None, "images, or one folder of frames per video")
_OUT = flags.DEFINE_string("out_dir", None, "where the .h5 / .npz feature files go")
_BATCH = flags.DEFINE_integer("batch_size", 32, "images per encoder call")
_IMAGE_SIZE = flags.DEFINE_integer("image_size", 224, "image side after resize + crop (images)")
_L2 = flags.DEFINE_bool("l2_normalize", False, "unit-length frame embeddings (videos)")
_REEXTRACT = flags.DEFINE_bool("reextract", False, "re-extract files that already exist")
# Checked in main rather than with mark_flags_as_required: tests run several launchers in one
# process, where another launcher's required flags would fail absl's global validation.
_REQUIRED = ("kind", "weights", "input_dir", "out_dir")


def main(argv: list[str]) -> None:
    del argv
    missing = [name for name in _REQUIRED if flags.FLAGS[name].value is None]
    if missing:
        raise app.UsageError(f"missing required flags: {', '.join('--' + m for m in missing)}")
    from vlpet_jax.data.extract import extract_image_features, extract_video_features

    log = lambda line: print(line, flush=True)  # noqa: E731
    common = dict(batch_size=_BATCH.value, overwrite=_REEXTRACT.value, log=log)
    if _KIND.value == "image":
        summary = extract_image_features(
            _INPUT.value, _WEIGHTS.value, _OUT.value, image_size=_IMAGE_SIZE.value, **common
        )
    else:
        summary = extract_video_features(
            _INPUT.value, _WEIGHTS.value, _OUT.value, l2_normalize=_L2.value, **common
        )
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
