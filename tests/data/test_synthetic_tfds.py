"""The TFDS builder of the synthetic benchmark: array_record files that ``tfds.data_source`` reads
back (without TensorFlow) as exactly the examples the JSON readers produce."""

from __future__ import annotations

import json

import pytest
import tensorflow_datasets as tfds

from vlpet_jax.data import tasks
from vlpet_jax.data.synthetic import generate_benchmark
from vlpet_jax.data.synthetic.tfds_builder import TASK_SPLITS, SyntheticBenchmark

TINY = dict(
    image_feat_dim=8,
    video_feat_dim=8,
    coco_images=(4, 0, 4, 4),
    gqa_images=(4, 4, 4),
    nlvr_images=(8, 8, 8),
    nlvr_groups=(3, 2, 2),
    tv_videos=(5, 3),
    how2_videos=(2, 2),
    yc2_videos=(3, 2),
    yc2_frames=(12, 16),
)


def _records(data_dir, task):
    sources = tfds.data_source(f"synthetic_benchmark/{task}", data_dir=str(data_dir))
    assert set(sources) == set(TASK_SPLITS[task])
    return {split: [source[i] for i in range(len(source))] for split, source in sources.items()}


def _as_example_fields(record):
    return (
        record["uid"].decode(),
        record["input_text"].decode(),
        tuple(t.decode() for t in record["targets"]),
        tuple(float(s) for s in record["target_scores"]),
        tuple(k.decode() for k in record["feature_keys"]),
        json.loads(record["references"]),
    )


def _reader_fields(root, task, split):
    examples = tasks.get_task(task).load(root, split, train=split == "train")
    return sorted(
        (e.uid, e.input_text, e.targets, e.target_scores, e.feature_keys,
         json.loads(json.dumps(dict(e.references))))
        for e in examples
    )  # fmt: skip


@pytest.mark.parametrize("task", ["nlvr", "tvqa"])
def test_builder_from_a_generated_tree(tmp_path, task):
    root = tmp_path / "datasets"
    generate_benchmark(root, seed=0, kind="both", **TINY)
    builder = SyntheticBenchmark(config=task, data_dir=str(tmp_path / "tfds"), root=root)
    builder.download_and_prepare(file_format="array_record")
    for split, records in _records(tmp_path / "tfds", task).items():
        got = sorted(_as_example_fields(r) for r in records)
        assert got and got == _reader_fields(root, task, split)


def test_builder_generates_the_benchmark_itself(tmp_path):
    builder = SyntheticBenchmark(config="yc2c", data_dir=str(tmp_path / "tfds"), seed=1, sizes=TINY)
    builder.download_and_prepare(file_format="array_record")
    reference = tmp_path / "reference"
    generate_benchmark(reference, seed=1, kind="video", **TINY)
    for split, records in _records(tmp_path / "tfds", "yc2c").items():
        assert sorted(_as_example_fields(r) for r in records) == _reader_fields(
            reference, "yc2c", split
        )
