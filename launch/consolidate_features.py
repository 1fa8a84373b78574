r"""Pack a directory of per-image HDF5 / per-video npz features into one file (SPEC.md §2).

    python -m launch.consolidate_features --kind image \
        --feature_dir datasets/COCO/clip_features/data_clip_RN101_att
    python -m launch.consolidate_features --kind video \
        --feature_dir datasets/video/vis_features/tv/clip-vit --out /fast/tv_clip-vit.h5

Without ``--out`` the file is ``<feature_dir>.h5``, where ``load_task_source`` finds it by itself.
Layout and why: ``vlpet_jax/data/consolidated.py``.
"""

from __future__ import annotations

import json

from absl import app, flags

_FEATURE_DIR = flags.DEFINE_string("feature_dir", None, "directory of <id>.h5 or <id>.npz files")
_KIND = flags.DEFINE_enum("kind", None, ["image", "video"], "image grid or video frame features")
_OUT = flags.DEFINE_string("out", None, "output file (default <feature_dir>.h5)")
flags.mark_flags_as_required(["feature_dir", "kind"])


def main(argv: list[str]) -> None:
    del argv
    from vlpet_jax.data.consolidated import consolidate_features

    summary = consolidate_features(
        _FEATURE_DIR.value, _KIND.value, _OUT.value, log=lambda line: print(line, flush=True)
    )
    print(json.dumps(summary))


if __name__ == "__main__":
    app.run(main)
