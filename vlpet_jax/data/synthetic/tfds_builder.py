"""A TFDS builder for the benchmark's annotation side: one config per task, ``array_record`` files.

The record format, order and decoding are those of every task builder
(:class:`vlpet_jax.data.tfds_builders.TaskAnnotations`); this one only adds where the ``datasets/``
tree comes from. Building and reading need no TensorFlow::

    from vlpet_jax.data.synthetic.tfds_builder import SyntheticBenchmark
    builder = SyntheticBenchmark(config="vqa", data_dir="tfds", root="datasets")  # or root=None
    builder.download_and_prepare(file_format="array_record")
    source = tfds.data_source("synthetic_benchmark/vqa", data_dir="tfds")["train"]

With ``root=None`` the builder generates the benchmark itself (``seed``, ``sizes``) under TFDS's
download directory. TFDS keys a built dataset by name, config and version only: build other seeds
or sizes into another ``data_dir``.

This module imports ``tensorflow_datasets``; the rest of the package does not.
"""

from __future__ import annotations

import shutil
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import tensorflow_datasets as tfds

from vlpet_jax.data.synthetic.generate import generate_benchmark
from vlpet_jax.data.tasks import get_task
from vlpet_jax.data.tfds_builders import TASK_SPLITS, TaskAnnotations

__all__ = ["TASK_SPLITS", "SyntheticBenchmark"]


class SyntheticBenchmark(TaskAnnotations):
    """The eight tasks of the synthetic benchmark as TFDS datasets (annotations only)."""

    VERSION = tfds.core.Version("1.1.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {
        "1.0.0": "Eight tasks in the reader's Example form.",
        "1.1.0": "Records keep the reader's order (shared TaskAnnotations base).",
    }
    DESCRIPTION = "vlpet_jax synthetic vision-and-language benchmark (annotations)"

    def __init__(
        self,
        *,
        root: str | Path | None = None,
        seed: int = 0,
        sizes: Mapping[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        self._seed = seed
        self._sizes = dict(sizes or {})
        super().__init__(root=root, **kwargs)

    def _default_root(self, dl_manager: Any) -> Path:
        """Generate the benchmark in TFDS's download cache, where raw data belongs."""
        kind = "video" if get_task(self.builder_config.name).visual == "video" else "image"
        root = Path(dl_manager.download_dir) / "vlpet_synthetic" / f"{kind}-seed{self._seed}"
        if root.exists():
            shutil.rmtree(root)  # sizes may differ from an earlier build
        generate_benchmark(root, seed=self._seed, kind=kind, **self._sizes)
        return root
