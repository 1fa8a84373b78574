"""A TFDS builder for the benchmark's annotation side: one config per task, ``array_record`` files.

Each record is one model-facing :class:`~vlpet_jax.data.examples.Example` as the task reader
produces it (training form for ``train``, evaluation form for the other splits), so a TFDS-based
input pipeline sees exactly what the JSON readers give. Visual features stay in their HDF5 / npz
files (``feature_keys`` name them). Building and reading need no TensorFlow::

    from vlpet_jax.data.synthetic.tfds_builder import SyntheticBenchmark
    builder = SyntheticBenchmark(config="vqa", data_dir="tfds", root="datasets")  # or root=None
    builder.download_and_prepare(file_format="array_record")
    source = tfds.data_source("synthetic_benchmark/vqa", data_dir="tfds")["train"]

With ``root=None`` the builder generates the benchmark itself (``seed``, ``sizes``) under TFDS's
download directory. Text fields come back as bytes, ``references`` as a JSON string. TFDS keys a built
dataset by name, config and version only: build other seeds or sizes into another ``data_dir``.

This module imports ``tensorflow_datasets``; the rest of the package does not.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import tensorflow_datasets as tfds

from vlpet_jax.data.synthetic.generate import generate_benchmark
from vlpet_jax.data.tasks import get_task, task_names

TASK_SPLITS = {
    "vqa": ("train", "val", "test"),
    "gqa": ("train", "valid", "testdev"),
    "nlvr": ("train", "valid", "test"),
    "caption": ("train", "val", "test"),
    "tvqa": ("train", "val"),
    "how2qa": ("train", "val"),
    "tvc": ("train", "val"),
    "yc2c": ("train", "val"),
}


class SyntheticBenchmark(tfds.core.GeneratorBasedBuilder):
    """The eight tasks of the synthetic benchmark as TFDS datasets (annotations only)."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Eight tasks in the reader's Example form."}
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=task, description=f"The {task} task") for task in task_names()
    ]

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> None:
        """No checksums file to locate (nothing is downloaded). Overridden because TFDS's lookup
        of a builder's source inside a package needs the ``importlib_resources`` backport, which
        is not a dependency of this project."""
        return None

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        seed: int = 0,
        sizes: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._root = Path(root) if root is not None else None
        self._seed = seed
        self._sizes = dict(sizes or {})
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description="vlpet_jax synthetic vision-and-language benchmark (annotations)",
            features=tfds.features.FeaturesDict(
                {
                    "uid": text,
                    "input_text": text,
                    "targets": tfds.features.Sequence(tfds.features.Text()),
                    "target_scores": tfds.features.Sequence(np.float32),
                    "score_weighted": np.bool_,
                    "feature_keys": tfds.features.Sequence(tfds.features.Text()),
                    "references": text,
                }
            ),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[str, dict]]]:
        task = self.builder_config.name
        root = self._root
        if root is None:  # generate it, in TFDS's download cache where raw data belongs
            kind = "video" if get_task(task).visual == "video" else "image"
            root = Path(dl_manager.download_dir) / "vlpet_synthetic" / f"{kind}-seed{self._seed}"
            if root.exists():
                shutil.rmtree(root)  # sizes may differ from an earlier build
            generate_benchmark(root, seed=self._seed, kind=kind, **self._sizes)
        return {split: self._generate_examples(root, split) for split in TASK_SPLITS[task]}

    def _generate_examples(self, root: Path, split: str) -> Iterator[tuple[str, dict]]:
        task = self.builder_config.name
        for example in get_task(task).load(root, split, train=split == "train"):
            yield (
                example.uid,
                {
                    "uid": example.uid,
                    "input_text": example.input_text,
                    "targets": list(example.targets),
                    "target_scores": list(example.target_scores),
                    "score_weighted": example.score_weighted,
                    "feature_keys": list(example.feature_keys),
                    "references": json.dumps(example.references, sort_keys=True),
                },
            )
