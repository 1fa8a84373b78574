"""Evaluation metrics and server prediction files of the VL-PET tasks (SPEC §7).

`vqa` (official VQA v2 accuracy), `exact_match` (GQA, TVQA / How2QA), `nlvr2` (accuracy,
consistency, true/false logit read-out), `captions` (pycocoevalcap BLEU / METEOR / ROUGE-L /
CIDEr-D; needs Java, imported lazily) and `value_writers` (VALUE test-server files).
"""

from vlpet_jax.eval.captions import (
    CAPTION_METRICS,
    CaptionEvaluator,
    caption_metrics,
    reported_caption_metrics,
    require_java,
)
from vlpet_jax.eval.exact_match import (
    AccuracyResult,
    choice_target,
    gqa_accuracy,
    parse_choice,
    video_qa_accuracy,
)
from vlpet_jax.eval.nlvr2 import (
    NLVR2Result,
    nlvr2_group,
    nlvr2_metrics,
    nlvr2_metrics_by_uid,
    nlvr2_predict_from_logits,
)
from vlpet_jax.eval.value_writers import (
    atomic_write_text,
    choice_indices_from_generations,
    value_prediction_filename,
    write_value_caption_predictions,
    write_value_qa_predictions,
)
from vlpet_jax.eval.vqa import (
    VQAAccuracy,
    index_vqa_annotations,
    vqa_accuracy,
    vqa_question_accuracy,
)
from vlpet_jax.eval.vqa_normalize import (
    normalize_vqa_prediction,
    process_digit_article,
    process_punctuation,
)

__all__ = [
    "CAPTION_METRICS",
    "AccuracyResult",
    "CaptionEvaluator",
    "NLVR2Result",
    "VQAAccuracy",
    "atomic_write_text",
    "caption_metrics",
    "choice_indices_from_generations",
    "choice_target",
    "gqa_accuracy",
    "index_vqa_annotations",
    "nlvr2_group",
    "nlvr2_metrics",
    "nlvr2_metrics_by_uid",
    "nlvr2_predict_from_logits",
    "normalize_vqa_prediction",
    "parse_choice",
    "process_digit_article",
    "process_punctuation",
    "reported_caption_metrics",
    "require_java",
    "value_prediction_filename",
    "video_qa_accuracy",
    "vqa_accuracy",
    "vqa_question_accuracy",
    "write_value_caption_predictions",
    "write_value_qa_predictions",
]
