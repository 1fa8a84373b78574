"""Image files to ask a model about: render an example of the built-in benchmark (the demo's data)
to PNG files, with the question that comes with it.

    render_example("demo_run/data", "vqa", out_dir="demo_run/ask")
    -> {"images": ["demo_run/ask/synth_coco_val_000000.png"], "question": "...", "answer": "..."}

The scenes are the benchmark's own (rebuilt from its manifest's seed and sizes), rendered with
fresh pixel noise, so the files are new images of the same scenes the split's features describe.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from vlpet_jax.data.synthetic.pools import image_pools, video_pools
from vlpet_jax.data.synthetic.render import render_scene, to_uint8
from vlpet_jax.data.synthetic.scenes import IMAGE_LATTICE

MANIFEST = "synthetic_benchmark.json"
# task -> (annotation file under the root, scene pool, how to read the example)
_SPLITS = {
    "vqa": ("vqa/karpathy_val.json", "coco/val"),
    "gqa": ("GQA/valid.json", "gqa/valid"),
    "nlvr": ("nlvr/valid.json", "nlvr/valid"),
    "caption": ("vqa/karpathy_val.json", "coco/val"),
    "tvqa": ("video/ann/tvqa/tvqa_val.jsonl", "tv/val"),
    "how2qa": ("video/ann/how2qa/how2qa_val_release.jsonl", "how2/val"),
}


def _save(pixels: np.ndarray, path: Path) -> str:
    from PIL import Image

    Image.fromarray(to_uint8(pixels)).save(path)
    return str(path)


def _records(path: Path) -> list[dict[str, Any]]:
    if path.suffix == ".jsonl":
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]
    return json.loads(path.read_text())


def render_example(
    root: str | Path,
    task: str,
    index: int = 0,
    out_dir: str | Path = ".",
    name: str | None = None,
    seed: int = 1,
) -> dict[str, Any]:
    """Render example `index` of `task`'s validation split of the benchmark at `root` into
    `out_dir`: `<name>.png` (NLVR2: `<name>_0.png`, `<name>_1.png`; videos: a folder `<name>/`
    of frames), by default named after the benchmark's image or video ids."""
    root, out_dir = Path(root), Path(out_dir)
    manifest_path = root / MANIFEST
    if not manifest_path.is_file():
        raise FileNotFoundError(
            f"{manifest_path}: not found; `root` is a synthetic benchmark (e.g. demo_run/data)"
        )
    if task not in _SPLITS:
        raise KeyError(f"unknown task {task!r}; known: {', '.join(_SPLITS)}")
    manifest = json.loads(manifest_path.read_text())
    sizes = {k: tuple(v) if isinstance(v, list) else v for k, v in manifest["sizes"].items()}
    annotation, pool_name = _SPLITS[task]
    records = _records(root / annotation)
    if not 0 <= index < len(records):
        raise IndexError(f"{root / annotation} has {len(records)} examples, not #{index}")
    record = records[index]
    out_dir.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(seed)
    if task in ("tvqa", "how2qa"):
        video = dict(video_pools(manifest["seed"], **sizes)[pool_name])[record["vid_name"]]
        folder = out_dir / (name or record["vid_name"])
        folder.mkdir(exist_ok=True)
        for t, frame in enumerate(video.render(rng)):
            _save(frame, folder / f"frame_{t:04d}.png")
        count = 5 if task == "tvqa" else 4
        return {
            "videos": [str(folder)],
            "question": record["q"],
            "choices": [record[f"a{i}"] for i in range(count)],
            "ts": record["ts"],
            "answer": f"a{record['answer_idx']}",
        }
    scenes = dict(image_pools(manifest["seed"], **sizes)[pool_name])
    keys = ("img0", "img1") if task == "nlvr" else ("img_id",)
    names = [name if len(keys) == 1 else f"{name}_{i}" for i in range(len(keys))]
    images = [
        _save(
            render_scene(scenes[record[k]], IMAGE_LATTICE, rng),
            out_dir / f"{names[i] if name else record[k]}.png",
        )
        for i, k in enumerate(keys)
    ]
    if task == "nlvr":
        return {"images": images, "statement": record["sent"],
                "answer": "true" if record["label"] else "false"}  # fmt: skip
    if task == "caption":
        return {"images": images}
    return {"images": images, "question": record["sent"], "answer": max(
        record["label"], key=record["label"].get)}  # fmt: skip
