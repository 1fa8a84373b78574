r"""Image-text multi-task training: VQAv2, GQA, NLVR2, COCO Caption (SPEC.md §2, §6-§8).

One model for all four tasks on CLIP RN101 grid features (2048-d, pooled to 36 tokens per image;
NLVR2 has two images). Launch:

    python -m launch.train \
      --config configs/image_text.py:backbone=bart_base,method=vl_pet_large \
      --config.model.checkpoint=/ckpt/bart-base --config.data.root=/data/datasets \
      --workdir /tmp/vlpet_image

    python -m launch.inspect --config configs/image_text.py:backbone=t5_base,method=vl_pet_small

Arguments after the colon (`key=value`, comma-separated): backbone (a preset: bart_base,
t5_base, flan_t5_base, t5_small, bart_tiny, t5_tiny), method (a registered PET method), runlocal
(tiny backbone, tiny PET sizes, small batches, 2 epochs: seconds on a CPU), checkpoint (a Hugging
Face directory), seed, tasks (`+`-separated subset, e.g. `tasks=vqa+nlvr`). The method and backbone
choose the recipe (learning rate, batch, PET sizes), so pick them here rather than overriding
`--config.pet.method` later. Every field can then be overridden with `--config.a.b=value`.
"""

from __future__ import annotations

import ml_collections

from configs import common

TASKS = ("vqa", "gqa", "nlvr", "caption")
FEAT_DIM = 2048  # CLIP RN101 layer-4 channels
NUM_VIS_TOKENS = 36  # 7x7 grid adaptive-max-pooled to 6x6, per image
NUM_IMAGES = 2  # NLVR2 pairs: image-order embedding rows
BASE_BATCH = {"bart": 500, "t5": 300}
LOCAL_BATCH = 12


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    args = common.parse(arg)
    family = common.family_of(args.backbone)
    config = ml_collections.ConfigDict()
    config.modality = "image"
    config.model = common.model_config(
        args.backbone, args.checkpoint, FEAT_DIM, NUM_VIS_TOKENS, NUM_IMAGES
    )
    config.pet = common.pet_config(args.method, args.backbone)
    config.optim = common.optim_config(common.learning_rate("image", args.backbone, args.method))
    config.train = common.train_config(args.seed, args.runlocal)

    # Per-task batch B·num/den (SPEC.md §6), reader options, token limits of the released loaders.
    tasks = {
        "vqa": common.task_config("vqa: ", 20, 10, (60, 60), ("train", "val", "test")),
        # "gpa: " is the released code's prefix; the released checkpoints were trained with it.
        "gqa": common.task_config("gpa: ", 20, None, (100, 60), ("train", "valid", "testdev")),
        "nlvr": common.task_config("nlvr: ", None, None, (20, 60), ("train", "valid", "test")),
        "caption": common.task_config("caption: ", None, 40, (50, 60), ("train", "val", "test")),
    }
    batch = LOCAL_BATCH if args.runlocal else BASE_BATCH[family]
    # runlocal trains on the built-in synthetic benchmark, generated under the workdir.
    root = "synthetic" if args.runlocal else "datasets"
    # CLIP RN101 grids are stored float16 (SPEC.md §2); set float32 for features saved wider.
    config.data = common.data_config(root, args.tasks or TASKS, tasks, batch, "float16")
    config.data.synthetic = common.synthetic_config(args.runlocal, "image")

    decode = {
        "vqa": common.decode_config("generate", 1, 20),
        "gqa": common.decode_config("generate", 1, 20),
        "nlvr": common.decode_config("score", 1, 1),
        "caption": common.decode_config("generate", 5, 40),
    }
    eval_batch = LOCAL_BATCH * 2 if args.runlocal else BASE_BATCH[family]
    config.eval = common.eval_config(args.backbone, decode, batch_size=eval_batch)
    config.eval.use_meteor = not args.runlocal
    config.mesh = common.mesh_config()
    return config
