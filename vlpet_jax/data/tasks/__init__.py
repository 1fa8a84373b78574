"""One reader per task in its official annotation format (SPEC.md §6), behind a registry.

Importing this package registers the eight tasks: ``vqa``, ``gqa``, ``nlvr``, ``caption`` (image)
and ``tvqa``, ``how2qa``, ``tvc``, ``yc2c`` (video). ``get_task(name).load(root, split, train=...)``
reads a split into :class:`~vlpet_jax.data.examples.Example` records.
"""

from vlpet_jax.data.tasks import coco_caption, gqa, nlvr2, tvqa, video_caption, vqa
from vlpet_jax.data.tasks.registry import TaskSpec, get_task, get_tasks, register, task_names

__all__ = [
    "TaskSpec",
    "coco_caption",
    "get_task",
    "get_tasks",
    "gqa",
    "nlvr2",
    "register",
    "task_names",
    "tvqa",
    "video_caption",
    "vqa",
]
