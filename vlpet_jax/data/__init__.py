"""Data pipeline: feature stores, task readers, batching, the multi-task round-robin, prefetch.

Typical training use::

    from vlpet_jax import data

    collator = data.TextCollator(tokenizer, family="t5")
    sizes = data.task_batch_sizes(["vqa", "gqa", "nlvr", "caption"], base_batch=300)
    sources = [data.load_task_source(t, "datasets", split, train=True, batch_size=sizes[t])
               for t, split in [("vqa", "train"), ("gqa", "train"), ("nlvr", "train"),
                                ("caption", "train")]]
    it = data.MultitaskIterator(sources, collator, seed=42, process_index=jax.process_index(),
                                process_count=jax.process_count())
    for batch in data.Prefetcher(it):      # batch.arrays -> the model; batch.state -> checkpoint
        ...
"""

from vlpet_jax.data.annotations import DataFormatError
from vlpet_jax.data.batching import (
    IGNORE_ID,
    BartFormat,
    Batch,
    T5Format,
    TextCollator,
    bucket_length,
    build_batch,
    sequence_format,
)
from vlpet_jax.data.examples import Example, best_target, draw_target
from vlpet_jax.data.features import (
    ImageFeatureStore,
    ImageVisuals,
    LRUCache,
    VideoFeatureStore,
    VideoVisuals,
    VisualTokens,
    adaptive_max_pool_1d,
    adaptive_max_pool_2d,
    image_pair_tokens,
    image_tokens,
    pool_image_grid,
    resize_video,
    video_tokens,
)
from vlpet_jax.data.multitask import (
    MultitaskIterator,
    TaskSource,
    eval_batches,
    load_task_source,
    task_batch_sizes,
)
from vlpet_jax.data.prefetch import Prefetcher
from vlpet_jax.data.tasks import TaskSpec, get_task, task_names

__all__ = [
    "IGNORE_ID",
    "BartFormat",
    "Batch",
    "DataFormatError",
    "Example",
    "ImageFeatureStore",
    "ImageVisuals",
    "LRUCache",
    "MultitaskIterator",
    "Prefetcher",
    "T5Format",
    "TaskSource",
    "TaskSpec",
    "TextCollator",
    "VideoFeatureStore",
    "VideoVisuals",
    "VisualTokens",
    "adaptive_max_pool_1d",
    "adaptive_max_pool_2d",
    "best_target",
    "bucket_length",
    "build_batch",
    "draw_target",
    "eval_batches",
    "get_task",
    "image_pair_tokens",
    "image_tokens",
    "load_task_source",
    "pool_image_grid",
    "resize_video",
    "sequence_format",
    "task_batch_sizes",
    "task_names",
    "video_tokens",
]
