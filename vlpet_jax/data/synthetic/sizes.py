"""How big the synthetic benchmark is: one frozen record of every size knob, with checked overrides.

The defaults generate the image half in seconds on two CPU cores and are still large enough for a
tiny model to learn every task (thousands of training questions over a few hundred scenes). Tests
pass smaller values; the feature dimensions can shrink too (a tiny variant with the official
layout), though the defaults are the official CLIP ones (SPEC.md §2).
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

Range = tuple[int, int]  # inclusive


@dataclass(frozen=True)
class BenchmarkSizes:
    """Every size of the benchmark. Tuples of splits are in the order named in the comment."""

    image_feat_dim: int = 2048
    video_feat_dim: int = 512
    # Images (scenes on the 4×4 lattice).
    objects_per_image: Range = (2, 5)
    coco_images: tuple[int, int, int, int] = (300, 40, 50, 50)  # train, restval, val, test
    captions_per_image: int = 5
    vqa_cap: int = 25  # most questions per (question string, answer)
    vqa_label_noise: float = 0.1  # chance that one of the ten annotators answers wrongly
    gqa_images: tuple[int, int, int] = (300, 50, 50)  # train, valid, testdev
    gqa_objects_per_image: Range = (3, 6)  # relations need company
    gqa_cap: int = 100  # most questions per (template, answer)
    nlvr_images: tuple[int, int, int] = (300, 60, 60)  # train, valid, test image pools
    nlvr_groups: tuple[int, int, int] = (250, 40, 40)  # statements per split
    nlvr_pairs_per_group: int = 4  # image pairs per statement, half of them true
    # Videos (scenes on the 3×3 lattice with events). fps sets the time stamps.
    fps: float = 2.0
    video_objects: Range = (2, 3)
    tv_videos: tuple[int, int] = (500, 80)  # train, val: TVQA and TVC share them
    tv_frames: Range = (8, 24)
    tv_events: Range = (1, 2)
    how2_videos: tuple[int, int] = (300, 60)
    how2_frames: Range = (8, 24)
    how2_events: Range = (1, 2)
    yc2_videos: tuple[int, int] = (200, 40)
    yc2_frames: Range = (48, 80)  # long: some are pooled to 64 tokens, some padded
    yc2_events: Range = (1, 2)

    def __post_init__(self) -> None:
        for name in ("image_feat_dim", "video_feat_dim"):
            value = getattr(self, name)
            if value < 2 or value % 2:
                raise ValueError(f"{name} must be an even number >= 2, got {value}")
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if isinstance(value, tuple) and any(v < 0 for v in value):
                raise ValueError(f"{f.name} must not be negative, got {value}")
        if min(self.coco_images[2:]) < 1 or min(self.gqa_images) < 1:
            raise ValueError("every VQA/GQA split needs at least one image")
        if min(self.nlvr_images) < 2 or min(self.nlvr_groups) < 1:
            raise ValueError("every NLVR2 split needs >= 2 images and >= 1 statement")

    def to_dict(self) -> dict[str, Any]:
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def make_sizes(**overrides: Any) -> BenchmarkSizes:
    """``BenchmarkSizes`` with ``overrides``; an unknown name lists the known ones."""
    known = {f.name for f in dataclasses.fields(BenchmarkSizes)}
    unknown = sorted(set(overrides) - known)
    if unknown:
        raise TypeError(
            f"unknown benchmark size(s) {', '.join(unknown)}; known: {', '.join(sorted(known))}"
        )
    fixed = {k: tuple(v) if isinstance(v, list) else v for k, v in overrides.items()}
    return BenchmarkSizes(**fixed)
