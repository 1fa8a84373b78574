r"""Video-text multi-task training: TVQA, How2QA, TVC, YC2C (VALUE; SPEC.md §2, §6-§8).

One model for all four tasks on CLIP ViT-B/32 frame features (512-d, padded or max-pooled over time
to 64 tokens), with subtitles in the text input (≤ 600 tokens). Launch:

    python -m launch.train \
      --config configs/video_text.py:backbone=bart_base,method=vl_pet_large \
      --config.model.checkpoint=/ckpt/bart-base --config.data.root=/data/datasets \
      --workdir /tmp/vlpet_video

    python -m launch.inspect --config configs/video_text.py:backbone=bart_base,method=vl_pet_middle_x

Arguments after the colon are those of `configs/image_text.py` (backbone, method, runlocal,
checkpoint, seed, tasks); every field can then be overridden with `--config.a.b=value`.
"""

from __future__ import annotations

import ml_collections

from configs import common

TASKS = ("tvqa", "how2qa", "tvc", "yc2c")
FEAT_DIM = 512  # CLIP ViT-B/32 frame features
NUM_VIS_TOKENS = 64  # frames after padding / temporal max-pooling
NUM_IMAGES = 2  # image-order rows of the visual embedding (all video tokens use row 0)
BASE_BATCH = 50  # every task gets the same batch (SPEC.md §6)
LOCAL_BATCH = 4
MAX_INPUT_LEN = 600
LOCAL_MAX_INPUT_LEN = 128


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse(arg)
    config = ml_collections.ConfigDict()
    config.modality = "video"
    config.model = common.model_config(
        args.backbone, args.checkpoint, FEAT_DIM, NUM_VIS_TOKENS, NUM_IMAGES
    )
    config.pet = common.pet_config(args.method, args.backbone)
    config.optim = common.optim_config(common.learning_rate("video", args.backbone, args.method))
    config.train = common.train_config(args.seed, args.runlocal)

    max_input = LOCAL_MAX_INPUT_LEN if args.runlocal else MAX_INPUT_LEN
    splits = ("train", "val", "test")
    # The prompt goes at the END of the input: "... tvqa: " (SPEC.md §6).
    tasks = {
        "tvqa": common.task_config("tvqa: ", max_input, 20, (1, 1), splits),
        "how2qa": common.task_config("how2qa: ", max_input, 20, (1, 1), splits),
        "tvc": common.task_config("tvc: ", max_input, 20, (1, 1), splits),
        "yc2c": common.task_config("yc2c: ", max_input, 20, (1, 1), splits),
    }
    batch = LOCAL_BATCH if args.runlocal else BASE_BATCH
    # runlocal trains on the built-in synthetic benchmark, generated under the workdir.
    root = "synthetic" if args.runlocal else "datasets"
    # The VALUE release's frame features are float32.
    config.data = common.data_config(root, args.tasks or TASKS, tasks, batch, "float32")
    config.data.synthetic = common.synthetic_config(args.runlocal, "video")

    decode = {
        "tvqa": common.decode_config("generate", 1, 20),
        "how2qa": common.decode_config("generate", 1, 20),
        "tvc": common.decode_config("generate", 5, 40),
        "yc2c": common.decode_config("generate", 5, 40),
    }
    eval_batch = LOCAL_BATCH * 2 if args.runlocal else BASE_BATCH
    config.eval = common.eval_config(args.backbone, decode, batch_size=eval_batch)
    config.eval.use_meteor = not args.runlocal
    config.mesh = common.mesh_config()
    return config
