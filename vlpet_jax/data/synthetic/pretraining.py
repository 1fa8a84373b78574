"""Images for the demo's vision-and-language pretraining, disjoint from every task's images.

Real VL-PET freezes a backbone (VL-T5's) that was pretrained on image-text data before any task
is tuned. The demo's miniature of that stage captions rendered scenes that no task split shows:
their own id prefix (``synth_vlp_``), their own random stream, and every scene that equals one of
the benchmark's scenes (same objects in the same cells) is drawn again. The tree is a COCO-style
``datasets/`` root holding only the Karpathy ``train`` split, so the ordinary caption reader and
feature store read it::

    ensure_caption_pretraining("work/vl_pretrain", seed=0, images=1200, **benchmark_sizes)
    # -> work/vl_pretrain/COCO/dataset_coco.json, COCO/clip_features/data_clip_RN101_att/*.h5
"""

from __future__ import annotations

import json
import shutil
import uuid
from pathlib import Path
from typing import Any

from vlpet_jax.data.synthetic.extractor import FeatureExtractor
from vlpet_jax.data.synthetic.generate import IMAGE_FEATURES, _write_image_features
from vlpet_jax.data.synthetic.image_tasks import coco_images
from vlpet_jax.data.synthetic.io import write_json
from vlpet_jax.data.synthetic.pools import ImagePool, image_pools, stream_rng
from vlpet_jax.data.synthetic.scenes import IMAGE_LATTICE, sample_scene
from vlpet_jax.data.synthetic.sizes import make_sizes

PREFIX = "synth_vlp"
MANIFEST = "vl_pretraining.json"


def caption_pretraining_pool(seed: int, images: int, **sizes: Any) -> ImagePool:
    """``images`` scenes, none equal to a scene of the benchmark made with ``seed`` and ``sizes``."""
    config = make_sizes(**sizes)
    taken = {scene for pool in image_pools(seed, **sizes).values() for _, scene in pool}
    rng = stream_rng(seed, "scenes", PREFIX)
    pool: ImagePool = []
    while len(pool) < images:
        scene = sample_scene(rng, IMAGE_LATTICE, config.objects_per_image)
        if scene not in taken:
            pool.append((f"{PREFIX}_{len(pool):06d}", scene))
    return pool


def ensure_caption_pretraining(
    root: str | Path, seed: int, images: int, **sizes: Any
) -> dict[str, Any]:
    """Write the pretraining captions and features at ``root`` unless already there (built in a
    temporary sibling and renamed into place); returns the manifest. A tree made with other
    settings is an error."""
    root = Path(root)
    expected = {"seed": seed, "images": images, "sizes": make_sizes(**sizes).to_dict()}
    if not root.exists():
        root.parent.mkdir(parents=True, exist_ok=True)
        staging = root.with_name(f".{root.name}.tmp-{uuid.uuid4().hex}")
        try:
            config = make_sizes(**sizes)
            pool = caption_pretraining_pool(seed, images, **sizes)
            doc = coco_images(
                [("train", pool)], stream_rng(seed, "captions", PREFIX), config.captions_per_image
            )
            write_json(staging / "COCO" / "dataset_coco.json", doc)
            extractor = FeatureExtractor(config.image_feat_dim, config.video_feat_dim)
            _write_image_features(pool, staging / "COCO" / IMAGE_FEATURES, extractor, seed)
            write_json(staging / MANIFEST, expected)
            try:
                staging.rename(root)
            except OSError:
                if not (root / MANIFEST).is_file():
                    raise
        finally:
            if staging.exists():
                shutil.rmtree(staging)
    found = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    if found != expected:
        raise ValueError(
            f"{root} holds pretraining images made with {found}, not {expected}; remove it"
        )
    return found
