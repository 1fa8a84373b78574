"""TFDS builders for the annotation side of the eight tasks (SPEC.md §6), as ``array_record``.

Each record is one :class:`~vlpet_jax.data.examples.Example` exactly as the task reader produces
it (the training form for ``train``, the evaluation form for the other splits), in the reader's
order, so a TFDS-backed pipeline sees the same examples, and with the same seed the same batches,
as the JSON readers. Visual features stay in their HDF5 / npz (or consolidated) files;
``feature_keys`` name them. Building and reading need no TensorFlow::

    import tensorflow_datasets as tfds
    from vlpet_jax.data.tfds_builders import VlpetAnnotations, TfdsExamples

    builder = VlpetAnnotations(config="vqa", data_dir="tfds")
    builder.download_and_prepare(
        file_format="array_record",
        download_config=tfds.download.DownloadConfig(manual_dir="datasets"),  # VL-T5 tree
    )
    source = tfds.data_source("vlpet_annotations/vqa", data_dir="tfds")["train"]
    examples = TfdsExamples(source, task="vqa")   # a Sequence[Example] for TaskSource

:class:`TaskAnnotations` holds everything but where the ``datasets/`` tree comes from:
:class:`VlpetAnnotations` reads it from TFDS's manual directory (or ``root=``), and the synthetic
benchmark's builder (``vlpet_jax.data.synthetic.tfds_builder``) generates it. Text fields come back
as bytes and ``references`` as a JSON string. TFDS keys a built dataset by name, config and
version only: build other reader ``options`` (e.g. ``{"prompt": "gqa: "}``) into another
``data_dir``.

This module imports ``tensorflow_datasets``; the rest of the package does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any, ClassVar, overload

import numpy as np
import tensorflow_datasets as tfds

from vlpet_jax.data.examples import Example
from vlpet_jax.data.tasks import get_task, task_names

# The splits each task is built with by default: those SPEC.md §6 names (a reader's split name).
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


def example_to_record(example: Example) -> dict[str, Any]:
    """The TFDS feature dict of ``example`` (``task`` is the builder config, not a field)."""
    return {
        "uid": example.uid,
        "input_text": example.input_text,
        "targets": list(example.targets),
        "target_scores": list(example.target_scores),
        "score_weighted": example.score_weighted,
        "feature_keys": list(example.feature_keys),
        "references": json.dumps(example.references, sort_keys=True),
    }


def record_to_example(task: str, record: Mapping[str, Any]) -> Example:
    """Inverse of :func:`example_to_record` for a record read back by ``tfds.data_source``."""

    def text(value: Any) -> str:
        return value.decode() if isinstance(value, bytes) else str(value)

    return Example(
        task=task,
        uid=text(record["uid"]),
        input_text=text(record["input_text"]),
        targets=tuple(text(t) for t in record["targets"]),
        target_scores=tuple(float(s) for s in record["target_scores"]),
        score_weighted=bool(record["score_weighted"]),
        feature_keys=tuple(text(k) for k in record["feature_keys"]),
        references=json.loads(text(record["references"])),
    )


class TfdsExamples(Sequence[Example]):
    """A ``tfds.data_source`` split seen as a lazy ``Sequence[Example]`` (``TaskSource.examples``).

    Records are decoded on access, so an epoch reads only the examples it batches.
    """

    def __init__(self, source: Any, task: str) -> None:
        get_task(task)  # an unknown task fails here, listing the known ones
        self.source = source
        self.task = task

    def __len__(self) -> int:
        return len(self.source)

    @overload
    def __getitem__(self, index: int) -> Example: ...
    @overload
    def __getitem__(self, index: slice) -> list[Example]: ...
    def __getitem__(self, index: int | slice) -> Example | list[Example]:
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} {self.task} examples")
        return record_to_example(self.task, self.source[int(index) % len(self)])


class TaskAnnotations(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Shared base: one config per task, records in the reader's order (module docstring).

    Args:
      root: the VL-T5 ``datasets/`` tree; None lets the subclass find it (:meth:`_default_root`).
      options: keyword options of the task reader, e.g. ``{"raw_answers": True}`` for VQA.
      splits: reader split names to build; default ``TASK_SPLITS[task]``.
    """

    VERSION = tfds.core.Version("1.0.0")
    BUILDER_CONFIGS: ClassVar[list[tfds.core.BuilderConfig]] = [
        tfds.core.BuilderConfig(name=task, description=f"The {task} task") for task in task_names()
    ]
    DESCRIPTION: ClassVar[str] = "vlpet_jax task annotations"

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
        options: Mapping[str, Any] | None = None,
        splits: Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        self._root = Path(root) if root is not None else None
        self._options = dict(options or {})
        self._splits = tuple(splits) if splits is not None else None
        super().__init__(**kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        text = tfds.features.Text()
        return tfds.core.DatasetInfo(
            builder=self,
            description=self.DESCRIPTION,
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
            # Records keep the reader's order (integer keys), so a seeded iterator over the TFDS
            # split draws the same batches as one over the reader's list.
            disable_shuffling=True,
        )

    def _default_root(self, dl_manager: Any) -> Path:
        """Where the ``datasets/`` tree is when ``root`` was not given."""
        raise NotImplementedError

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict]]]:
        task = self.builder_config.name
        root = self._root if self._root is not None else self._default_root(dl_manager)
        splits = self._splits or TASK_SPLITS[task]
        return {split: self._generate_examples(root, split) for split in splits}

    def _generate_examples(self, root: Path, split: str) -> Iterator[tuple[int, dict]]:
        task = get_task(self.builder_config.name)
        examples = task.load(root, split, train=split == "train", **self._options)
        for index, example in enumerate(examples):
            yield index, example_to_record(example)


class VlpetAnnotations(TaskAnnotations):
    """The eight real tasks from the VL-T5 / VL-Adapter ``datasets/`` tree (TFDS manual dir)."""

    name = "vlpet_annotations"
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "Eight tasks in the reader's Example form."}
    DESCRIPTION = "VL-PET task annotations (VQAv2, GQA, NLVR2, COCO, TVQA, How2QA, TVC, YC2C)"
    MANUAL_DOWNLOAD_INSTRUCTIONS = """\
    Point the manual directory (tfds.download.DownloadConfig(manual_dir=...)) at the VL-T5 /
    VL-Adapter `datasets/` tree: vqa/karpathy_{train,val,test}.json, GQA/{train,valid,testdev}.json,
    nlvr/{train,valid,test}.json, COCO/dataset_coco.json, and video/ann/ with the VALUE
    annotations and subtitles (SPEC.md §6). Only the chosen task's files are read.
    """

    def _default_root(self, dl_manager: Any) -> Path:
        return Path(dl_manager.manual_dir)
