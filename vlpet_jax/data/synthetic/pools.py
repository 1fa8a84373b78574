"""The scenes and videos behind the benchmark, re-creatable from the seed alone.

Every random choice comes from a generator seeded by ``(seed, stream)``, one stream per pool and
task (``stream_rng``), so the same seed gives the same pools, and changing one size does not
reshuffle the others. ``generate_benchmark`` renders these pools; tests and users call
``image_pools`` / ``video_pools`` to know what each image or video shows.
"""

from __future__ import annotations

import zlib
from typing import Any

import numpy as np

from vlpet_jax.data.synthetic.scenes import IMAGE_LATTICE, Scene, sample_scene
from vlpet_jax.data.synthetic.sizes import make_sizes
from vlpet_jax.data.synthetic.video import Video, sample_video

ImagePool = list[tuple[str, Scene]]
VideoPool = list[tuple[str, Video]]
COCO_SPLITS = ("train", "restval", "val", "test")
GQA_SPLITS = ("train", "valid", "testdev")
NLVR_SPLITS = ("train", "valid", "test")
NLVR_PREFIXES = {"train": "train", "valid": "dev", "test": "test"}  # NLVR2 identifier prefixes
VIDEO_SPLITS = ("train", "val")


def stream_rng(seed: int, *names: str | int) -> np.random.Generator:
    """An independent generator per named stream of one seed (crc32 keeps names stable)."""
    keys = [n if isinstance(n, int) else zlib.crc32(n.encode()) for n in names]
    return np.random.default_rng([seed, *keys])


def _scene_pool(
    seed: int, prefix: str, count: int, num_objects: tuple[int, int]
) -> list[tuple[str, Scene]]:
    rng = stream_rng(seed, "scenes", prefix)
    return [
        (f"{prefix}_{i:06d}", sample_scene(rng, IMAGE_LATTICE, num_objects)) for i in range(count)
    ]


def image_pools(seed: int = 0, **sizes: Any) -> dict[str, ImagePool]:
    """The scenes behind every image of the benchmark: ``{"coco/train": [(img_id, scene)], ...}``.

    Keys: ``coco/{train,restval,val,test}``, ``gqa/{train,valid,testdev}``,
    ``nlvr/{train,valid,test}``. The same ``seed`` and ``sizes`` as ``generate_benchmark`` give the
    scenes it rendered, which is how the tests check what the features and answers say.
    """
    config = make_sizes(**sizes)
    pools = {
        f"coco/{s}": _scene_pool(seed, f"synth_coco_{s}", n, config.objects_per_image)
        for s, n in zip(COCO_SPLITS, config.coco_images)
    }
    for s, n in zip(GQA_SPLITS, config.gqa_images):
        prefix = "synth_gqa" if s == "testdev" else "synth_vg"
        pools[f"gqa/{s}"] = _scene_pool(seed, f"{prefix}_{s}", n, config.gqa_objects_per_image)
    for s, n in zip(NLVR_SPLITS, config.nlvr_images):
        pools[f"nlvr/{s}"] = _scene_pool(
            seed, f"synth_nlvr_{NLVR_PREFIXES[s]}", n, config.objects_per_image
        )
    return pools


def video_pools(seed: int = 0, **sizes: Any) -> dict[str, VideoPool]:
    """The videos of the benchmark: ``{"tv/train": [(vid_name, video)], ...}`` for the domains
    ``tv`` (TVQA, TVC), ``how2`` (How2QA) and ``yc2`` (YC2C), splits ``train`` and ``val``."""
    config = make_sizes(**sizes)
    domains = {
        "tv": (config.tv_videos, config.tv_frames, config.tv_events),
        "how2": (config.how2_videos, config.how2_frames, config.how2_events),
        "yc2": (config.yc2_videos, config.yc2_frames, config.yc2_events),
    }
    pools = {}
    for domain, (counts, frames, events) in domains.items():
        for s, n in zip(VIDEO_SPLITS, counts):
            pools[f"{domain}/{s}"] = _video_pool(
                seed, f"synth_{domain}_{s}", n, frames, config.video_objects, events
            )
    return pools


def _video_pool(
    seed: int, prefix: str, count: int, frames: tuple[int, int], objects: tuple[int, int],
    events: tuple[int, int],
) -> list[tuple[str, Video]]:  # fmt: skip
    rng = stream_rng(seed, "videos", prefix)
    return [(f"{prefix}_{i:05d}", sample_video(rng, frames, objects, events)) for i in range(count)]
