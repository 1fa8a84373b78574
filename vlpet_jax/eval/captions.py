"""Caption metrics: BLEU-1..4, METEOR, ROUGE-L, CIDEr-D via pycocoevalcap (SPEC §7).

The numbers papers report for COCO, TVC and YC2C come from the `pycocoevalcap` scorers fed with
captions tokenised by its Stanford PTB tokenizer (lower-cased, punctuation tokens dropped), so
this module calls exactly those, nothing re-implemented. pycocoevalcap's `Cider` is CIDEr-D (the
length penalty with sigma 6, clipped counts, ×10), the CIDEr of the COCO caption leaderboard.

Units: the scorers return fractions (CIDEr-D around 1.2 for a good COCO model); VL-T5, VL-PET and
the VALUE server report every caption metric ×100 (CIDEr 121.7, BLEU-4 34.9, ...). `caption_metrics`
returns the raw fractions; `reported_caption_metrics` gives the ×100 numbers to put in a table.

Needs Java (the PTB tokenizer and METEOR are jars shipped inside the pycocoevalcap wheel; nothing
is downloaded). METEOR starts a JVM that loads a 60 MB paraphrase table (~8 s), so keep one
`CaptionEvaluator` open across evaluations instead of calling `caption_metrics` repeatedly.
SPICE is not offered: it needs Stanford CoreNLP models that pycocoevalcap downloads on first use.
"""

import os
import shutil
from collections.abc import Hashable, Mapping, Sequence
from typing import Any

BLEU_METRICS = ("Bleu_1", "Bleu_2", "Bleu_3", "Bleu_4")
CAPTION_METRICS = (*BLEU_METRICS, "METEOR", "ROUGE_L", "CIDEr")

_JAVA_HELP = (
    "pycocoevalcap's PTB tokenizer and METEOR run on Java, and no `java` executable is on PATH. "
    "Install a Java runtime (8 or newer), e.g. `apt-get install -y default-jre-headless` on "
    "Debian/Ubuntu or `conda install -c conda-forge openjdk`, and make sure `java -version` works."
)


def require_java() -> str:
    """Path of the `java` executable; raises a RuntimeError saying how to install it if absent."""
    java = shutil.which("java")
    if java is None:
        raise RuntimeError(_JAVA_HELP)
    return java


def _check_inputs(
    predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
) -> None:
    if not predictions:
        raise ValueError("caption metrics: no predictions given")
    if not references:
        raise ValueError("caption metrics: no references given")
    unknown = [key for key in predictions if key not in references]
    if unknown:
        raise ValueError(
            f"caption metrics: {len(unknown)} prediction ids have no references, "
            f"e.g. {unknown[:5]!r}"
        )
    missing = [key for key in references if key not in predictions]
    if missing:
        raise ValueError(
            f"caption metrics: {len(missing)} ids have references but no prediction, "
            f"e.g. {missing[:5]!r} (every id needs exactly one prediction)"
        )
    for key, prediction in predictions.items():
        if not isinstance(prediction, str):
            raise ValueError(
                f"caption metrics: prediction for id {key!r} must be a string, "
                f"found {type(prediction).__name__}"
            )
        refs = references[key]
        if isinstance(refs, str) or not isinstance(refs, Sequence) or len(refs) == 0:
            raise ValueError(
                f"caption metrics: references for id {key!r} must be a non-empty list of "
                f"strings, found {refs!r}"
            )
        for ref in refs:
            if not isinstance(ref, str):
                raise ValueError(
                    f"caption metrics: a reference for id {key!r} is not a string: {ref!r}"
                )


def _tokenizer_dir() -> str:
    from pycocoevalcap.tokenizer import ptbtokenizer

    return os.path.dirname(os.path.abspath(ptbtokenizer.__file__))


class CaptionEvaluator:
    """pycocoevalcap scorers kept ready between evaluations (the METEOR JVM stays up).

    Use as a context manager, or call `close()`, so the METEOR subprocess ends. `meteor` lets a
    caller share an already started `pycocoevalcap.meteor.meteor.Meteor`; with `use_meteor=False`
    no METEOR process is started and the result has no "METEOR" key.
    """

    def __init__(self, use_meteor: bool = True, meteor: Any = None) -> None:
        require_java()
        from pycocoevalcap.bleu.bleu import Bleu
        from pycocoevalcap.cider.cider import Cider
        from pycocoevalcap.meteor.meteor import Meteor
        from pycocoevalcap.rouge.rouge import Rouge
        from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

        # The PTB wrapper writes its input to a temp file beside its jar before running Java.
        tokenizer_dir = _tokenizer_dir()
        if not os.access(tokenizer_dir, os.W_OK):
            raise RuntimeError(
                f"pycocoevalcap's PTB tokenizer writes a temporary file into {tokenizer_dir}, "
                f"which is not writable here; install pycocoevalcap into a writable environment"
            )
        self._tokenizer = PTBTokenizer()
        self._bleu = Bleu(4)
        self._rouge = Rouge()
        self._cider = Cider()
        self._owns_meteor = use_meteor and meteor is None
        self._meteor = (meteor if meteor is not None else Meteor()) if use_meteor else None

    def __call__(
        self, predictions: Mapping[Hashable, str], references: Mapping[Hashable, Sequence[str]]
    ) -> dict[str, float]:
        """Corpus-level scores (fractions, not ×100) keyed by the names in CAPTION_METRICS."""
        _check_inputs(predictions, references)
        gts = self._tokenizer.tokenize(
            {key: [{"caption": ref} for ref in refs] for key, refs in references.items()}
        )
        res = self._tokenizer.tokenize({key: [{"caption": predictions[key]}] for key in references})
        scores: dict[str, float] = {}
        bleu, _ = self._bleu.compute_score(gts, res, verbose=0)
        scores.update(zip(BLEU_METRICS, (float(value) for value in bleu)))
        if self._meteor is not None:
            scores["METEOR"] = float(self._meteor.compute_score(gts, res)[0])
        scores["ROUGE_L"] = float(self._rouge.compute_score(gts, res)[0])
        scores["CIDEr"] = float(self._cider.compute_score(gts, res)[0])
        return scores

    def close(self) -> None:
        """Ends the METEOR subprocess if this evaluator started it."""
        if self._meteor is not None and self._owns_meteor:
            process = self._meteor.meteor_p
            if process.poll() is None:
                process.stdin.close()
                process.kill()
                process.wait()
        self._meteor = None

    def __enter__(self) -> "CaptionEvaluator":
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def caption_metrics(
    predictions: Mapping[Hashable, str],
    references: Mapping[Hashable, Sequence[str]],
    use_meteor: bool = True,
) -> dict[str, float]:
    """One-off caption scoring (SPEC §7): id -> prediction, id -> references; fractions out."""
    with CaptionEvaluator(use_meteor=use_meteor) as evaluator:
        return evaluator(predictions, references)


def reported_caption_metrics(scores: Mapping[str, float]) -> dict[str, float]:
    """The ×100 convention of the papers and the VALUE server (CIDEr 1.217 -> 121.7)."""
    return {name: 100.0 * value for name, value in scores.items()}
