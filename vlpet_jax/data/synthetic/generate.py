"""``generate_benchmark``: write the whole synthetic benchmark as a VL-T5-style ``datasets/`` tree.

The tree has exactly the files and layouts of the official releases (SPEC.md §2, §6), so the
readers in ``vlpet_jax.data.tasks`` and the feature stores read it unchanged::

    COCO/dataset_coco.json                         Karpathy captions (train/restval/val/test)
    COCO/clip_features/data_clip_RN101_att/*.h5    (49, D) float16 per image (VQA and COCO)
    vqa/karpathy_{train,val,test}.json             + v2_mscoco_{train,val}2014_annotations.json
    GQA/{train,valid,testdev}.json                 features: VG/... (train, valid), GQA/... (testdev)
    nlvr/{train,valid,test}.json                   features: nlvr/clip_features/...
    video/ann/tvqa/tvqa_{train,val}.jsonl          video/ann/tv_subtitles.jsonl
    video/ann/tvc/tvc_{train,val}_release.jsonl    video/vis_features/tv/clip-vit/*.npz (T, D)
    video/ann/how2qa/how2qa_{train,val}_release.jsonl   + how2_subtitles.jsonl, how2/clip-vit
    video/ann/yc2c/yc2c_{train,val}_release.jsonl  + yc2_subtitles.jsonl, yc2/clip-vit
    synthetic_benchmark.json                       the seed, the sizes and the counts

Every random choice comes from a generator seeded by ``(seed, stream)``, one stream per pool and
task, so the same seed gives byte-identical files and changing one size does not reshuffle the
other tasks.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Literal

import numpy as np

from vlpet_jax.data.synthetic import image_tasks, video_tasks
from vlpet_jax.data.synthetic.extractor import FeatureExtractor
from vlpet_jax.data.synthetic.io import write_image_h5, write_json, write_jsonl, write_video_npz
from vlpet_jax.data.synthetic.pools import (
    COCO_SPLITS,
    GQA_SPLITS,
    NLVR_PREFIXES,
    NLVR_SPLITS,
    VIDEO_SPLITS,
    VideoPool,
    image_pools,
    stream_rng,
    video_pools,
)
from vlpet_jax.data.synthetic.render import render_scene
from vlpet_jax.data.synthetic.scenes import IMAGE_LATTICE, Scene
from vlpet_jax.data.synthetic.sizes import BenchmarkSizes, make_sizes
from vlpet_jax.data.synthetic.video import Video

Kind = Literal["image", "video", "both"]
MANIFEST = "synthetic_benchmark.json"
IMAGE_FEATURES = "clip_features/data_clip_RN101_att"
_CHUNK = 64  # images per feature-extraction batch


def _write_image_features(
    pool: Sequence[tuple[str, Scene]], directory: Path, extractor: FeatureExtractor, seed: int
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if not pool:
        return
    rng = stream_rng(seed, "render", pool[0][0])  # first ids are unique per pool
    for start in range(0, len(pool), _CHUNK):
        chunk = pool[start : start + _CHUNK]
        images = np.stack([render_scene(scene, IMAGE_LATTICE, rng) for _, scene in chunk])
        for (img_id, _), feats in zip(chunk, extractor.image_features(images)):
            write_image_h5(directory, img_id, feats)


def _write_video_features(
    pool: Sequence[tuple[str, Video]], directory: Path, extractor: FeatureExtractor, seed: int
) -> None:
    directory.mkdir(parents=True, exist_ok=True)
    if not pool:
        return
    rng = stream_rng(seed, "render", pool[0][0])
    for vid_name, video in pool:
        write_video_npz(directory, vid_name, extractor.frame_features(video.render(rng)))


def _generate_image(
    root: Path, seed: int, sizes: BenchmarkSizes, extractor: FeatureExtractor
) -> dict[str, Any]:
    counts: dict[str, Any] = {}
    pools = image_pools(seed, **sizes.to_dict())
    # COCO: captions and VQA share the images, as VQA v2 is asked on COCO.
    coco = {s: pools[f"coco/{s}"] for s in COCO_SPLITS}
    coco_doc = image_tasks.coco_images(
        [(s, coco[s]) for s in COCO_SPLITS], stream_rng(seed, "captions"), sizes.captions_per_image
    )
    write_json(root / "COCO" / "dataset_coco.json", coco_doc)
    counts["caption"] = {
        s: sum(len(im["sentences"]) for im in coco_doc["images"] if im["split"] == s)
        for s in COCO_SPLITS
    }
    for s in COCO_SPLITS:
        _write_image_features(coco[s], root / "COCO" / IMAGE_FEATURES, extractor, seed)

    vqa_pools = {"train": coco["train"] + coco["restval"], "val": coco["val"], "test": coco["test"]}
    raw: dict[str, list[dict[str, Any]]] = {"train": [], "val": []}
    counts["vqa"] = {}
    for k, (split, pool) in enumerate(vqa_pools.items()):
        records, raw_records = image_tasks.vqa_records(
            pool, stream_rng(seed, "vqa", split), (k + 1) * 1_000_000, sizes.vqa_cap,
            sizes.vqa_label_noise,
        )  # fmt: skip
        write_json(root / "vqa" / f"karpathy_{split}.json", records)
        raw["train" if split == "train" else "val"].extend(raw_records)
        counts["vqa"][split] = len(records)
    for name, records in raw.items():
        doc = {"data_subtype": f"{name}2014", "annotations": records}
        write_json(root / "vqa" / f"v2_mscoco_{name}2014_annotations.json", doc)

    counts["gqa"] = {}
    for k, split in enumerate(GQA_SPLITS):
        pool = pools[f"gqa/{split}"]
        records = image_tasks.gqa_records(
            pool, stream_rng(seed, "gqa", split), (k + 1) * 10_000_000, sizes.gqa_cap
        )
        write_json(root / "GQA" / f"{split}.json", records)
        feature_root = "GQA" if split == "testdev" else "VG"  # as the released loader reads them
        _write_image_features(pool, root / feature_root / IMAGE_FEATURES, extractor, seed)
        counts["gqa"][split] = len(records)

    counts["nlvr"] = {}
    for split, groups in zip(NLVR_SPLITS, sizes.nlvr_groups):
        pool = pools[f"nlvr/{split}"]
        records = image_tasks.nlvr_records(
            pool, stream_rng(seed, "nlvr", split), NLVR_PREFIXES[split], groups,
            sizes.nlvr_pairs_per_group,
        )  # fmt: skip
        write_json(root / "nlvr" / f"{split}.json", records)
        _write_image_features(pool, root / "nlvr" / IMAGE_FEATURES, extractor, seed)
        counts["nlvr"][split] = len(records)
    counts["images"] = sum(len(p) for p in pools.values())
    return counts


# The video tasks: (task, domain, annotation file of a split, records of a split).
_VideoBuilder = Callable[[VideoPool, int, int, float], list[dict[str, Any]]]


def _video_tasks() -> list[tuple[str, str, Callable[[str], str], _VideoBuilder]]:
    def choices(task: str, n: int) -> _VideoBuilder:
        return lambda pool, seed, k, fps: video_tasks.multiple_choice_records(
            pool, stream_rng(seed, task, k), n, (k + 1) * 1_000_000, fps
        )

    def clips(pool: VideoPool, seed: int, k: int, fps: float) -> list[dict[str, Any]]:
        return video_tasks.clip_caption_records(pool, (k + 1) * 1_000_000, (k + 1) * 1_000_000, fps)

    def whole(pool: VideoPool, seed: int, k: int, fps: float) -> list[dict[str, Any]]:
        return video_tasks.video_description_records(
            pool, (k + 1) * 1_000_000, (k + 1) * 1_000_000, fps
        )

    return [
        ("tvqa", "tv", lambda s: f"tvqa_{s}.jsonl", choices("tvqa", 5)),
        ("tvc", "tv", lambda s: f"tvc_{s}_release.jsonl", clips),
        ("how2qa", "how2", lambda s: f"how2qa_{s}_release.jsonl", choices("how2qa", 4)),
        ("yc2c", "yc2", lambda s: f"yc2c_{s}_release.jsonl", whole),
    ]


def _generate_video(
    root: Path, seed: int, sizes: BenchmarkSizes, extractor: FeatureExtractor
) -> dict[str, Any]:
    ann = root / "video" / "ann"
    pools = video_pools(seed, **sizes.to_dict())
    counts: dict[str, Any] = {}
    for task, domain, file_name, build in _video_tasks():
        counts[task] = {}
        for k, split in enumerate(VIDEO_SPLITS):
            records = build(pools[f"{domain}/{split}"], seed, k, sizes.fps)
            write_jsonl(ann / task / file_name(split), records)
            counts[task][split] = len(records)
    for domain in ("tv", "how2", "yc2"):
        every = [v for s in VIDEO_SPLITS for v in pools[f"{domain}/{s}"]]
        rng = stream_rng(seed, "subtitles", domain)
        subs = video_tasks.subtitle_records(every, rng, domain, sizes.fps)
        write_jsonl(ann / f"{domain}_subtitles.jsonl", subs)
        for s in VIDEO_SPLITS:
            directory = root / "video" / "vis_features" / domain / "clip-vit"
            _write_video_features(pools[f"{domain}/{s}"], directory, extractor, seed)
    counts["videos"] = sum(len(p) for p in pools.values())
    return counts


def generate_benchmark(
    root: str | Path, seed: int = 0, kind: Kind = "image", *, exist_ok: bool = False, **sizes: Any
) -> dict[str, Any]:
    """Write the synthetic benchmark under ``root`` (the ``datasets/`` directory); return a summary.

    Args:
      root: output directory; must be empty or missing unless ``exist_ok``.
      seed: non-negative integer; same seed, same bytes.
      kind: ``image`` (VQA, GQA, NLVR2, COCO), ``video`` (TVQA, How2QA, TVC, YC2C) or ``both``.
      **sizes: overrides of :class:`BenchmarkSizes` fields, e.g. ``coco_images=(40, 0, 10, 10)``
        or ``image_feat_dim=64`` for a tiny variant.

    Returns:
      ``{root, seed, kind, sizes, examples: {task: {split: n}}, images, videos, files, bytes,
      seconds}``; everything but ``root``, ``files``, ``bytes`` and ``seconds`` is also written to
      ``<root>/synthetic_benchmark.json``.
    """
    if kind not in ("image", "video", "both"):
        raise ValueError(f"kind must be 'image', 'video' or 'both', got {kind!r}")
    if not isinstance(seed, int) or seed < 0:
        raise ValueError(f"seed must be a non-negative integer, got {seed!r}")
    config = make_sizes(**sizes)
    root = Path(root)
    if root.exists() and any(root.iterdir()) and not exist_ok:
        raise FileExistsError(f"{root} is not empty; pass exist_ok=True to write into it anyway")
    root.mkdir(parents=True, exist_ok=True)
    started = time.perf_counter()
    extractor = FeatureExtractor(config.image_feat_dim, config.video_feat_dim)
    examples: dict[str, Any] = {}
    images = videos = 0
    if kind in ("image", "both"):
        counts = _generate_image(root, seed, config, extractor)
        images = counts.pop("images")
        examples.update(counts)
    if kind in ("video", "both"):
        counts = _generate_video(root, seed, config, extractor)
        videos = counts.pop("videos")
        examples.update(counts)
    manifest = {
        "benchmark": "vlpet_jax synthetic vision-and-language benchmark",
        "seed": seed,
        "kind": kind,
        "sizes": config.to_dict(),
        "examples": examples,
        "images": images,
        "videos": videos,
    }
    write_json(root / MANIFEST, manifest)
    files = [p for p in root.rglob("*") if p.is_file()]
    return {
        "root": str(root),
        **manifest,
        "files": len(files),
        "bytes": sum(p.stat().st_size for p in files),
        "seconds": round(time.perf_counter() - started, 3),
    }
