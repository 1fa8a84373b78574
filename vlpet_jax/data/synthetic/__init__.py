"""The built-in synthetic vision-and-language benchmark (DESIGN.md "Built-in benchmark").

No dataset or pretrained weight can be downloaded on the build machines, and a user's first run
should need none, so the project ships a benchmark generated on the fly, deterministic from a seed:
rendered scenes of coloured shapes (and short videos of them changing), features from a fixed
extractor in the official CLIP layouts, and the eight VL-PET tasks written in their official
annotation formats. The task readers of ``vlpet_jax.data.tasks`` load it unchanged::

    from vlpet_jax.data import synthetic

    summary = synthetic.generate_benchmark("datasets", seed=0, kind="both")
    # or, once per work directory, the benchmark plus a tokenizer per family:
    synthetic.ensure_benchmark("work/synthetic", seed=0, kind="image")
    tokenizer_dir = synthetic.tokenizer_path("work/synthetic", family="bart")
    corpus = synthetic.text_corpus("datasets")              # denoising pre-training text
    tokenizer = synthetic.train_tokenizer(
        synthetic.tokenizer_texts("datasets") + corpus, "tokenizers/t5", family="t5"
    )

Files with one job each: ``vocab`` (the closed word list), ``scenes`` / ``render`` / ``video``
(what is shown), ``extractor`` (pixels -> features), ``grammar`` and ``image_questions`` (questions
that answer themselves on a scene), ``image_tasks`` / ``video_tasks`` (official records), ``io``
(byte-stable writers), ``pools`` (everything re-creatable from the seed), ``sizes``, ``generate``,
``corpus`` (text and tokenizer), ``ensure`` (build once per work directory), ``pretraining``
(captioned images disjoint from every task, for the demo's vision-and-language pretraining).
"""

from vlpet_jax.data.synthetic.corpus import (
    task_pairs,
    text_corpus,
    tokenizer_texts,
    train_tokenizer,
)
from vlpet_jax.data.synthetic.ensure import ensure_benchmark, tokenizer_path
from vlpet_jax.data.synthetic.extractor import FeatureExtractor
from vlpet_jax.data.synthetic.generate import MANIFEST, generate_benchmark
from vlpet_jax.data.synthetic.grammar import Template, balance, solve
from vlpet_jax.data.synthetic.image_questions import GQA_TEMPLATES, NLVR_TEMPLATES, VQA_TEMPLATES
from vlpet_jax.data.synthetic.pools import image_pools, stream_rng, video_pools
from vlpet_jax.data.synthetic.pretraining import (
    caption_pretraining_pool,
    ensure_caption_pretraining,
)
from vlpet_jax.data.synthetic.render import render_scene
from vlpet_jax.data.synthetic.scenes import (
    IMAGE_LATTICE,
    VIDEO_LATTICE,
    Lattice,
    Scene,
    SceneObject,
    sample_scene,
)
from vlpet_jax.data.synthetic.sizes import BenchmarkSizes, make_sizes
from vlpet_jax.data.synthetic.video import Event, Video, sample_video

__all__ = [
    "GQA_TEMPLATES",
    "IMAGE_LATTICE",
    "MANIFEST",
    "NLVR_TEMPLATES",
    "VIDEO_LATTICE",
    "VQA_TEMPLATES",
    "BenchmarkSizes",
    "Event",
    "FeatureExtractor",
    "Lattice",
    "Scene",
    "SceneObject",
    "Template",
    "Video",
    "balance",
    "caption_pretraining_pool",
    "ensure_benchmark",
    "ensure_caption_pretraining",
    "generate_benchmark",
    "image_pools",
    "make_sizes",
    "render_scene",
    "sample_scene",
    "sample_video",
    "solve",
    "stream_rng",
    "task_pairs",
    "text_corpus",
    "tokenizer_path",
    "tokenizer_texts",
    "train_tokenizer",
    "video_pools",
]
