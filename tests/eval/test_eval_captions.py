"""Caption metrics equal a direct pycocoevalcap computation on the same inputs (SPEC §7).

Java and the METEOR paraphrase table are slow to start (~8 s), so one METEOR process is started
per module and shared by our evaluator and the direct reference computation.
"""

import pytest
from pycocoevalcap.bleu.bleu import Bleu
from pycocoevalcap.cider.cider import Cider
from pycocoevalcap.meteor.meteor import Meteor
from pycocoevalcap.rouge.rouge import Rouge
from pycocoevalcap.tokenizer.ptbtokenizer import PTBTokenizer

from vlpet_jax.eval import captions
from vlpet_jax.eval.captions import (
    CAPTION_METRICS,
    CaptionEvaluator,
    caption_metrics,
    reported_caption_metrics,
)

PREDICTIONS = {
    391895: "A man riding a motorcycle down a dirt road.",
    522418: "a woman cutting a cake with a knife",
    184613: "Two dogs are playing in the snow!",
    "clip-7": "a kitchen with a stove, and a sink",
}
REFERENCES = {
    391895: [
        "A man with a red helmet on a small moped on a dirt road.",
        "Man riding a motor bike on a dirt road on the countryside.",
        "A man riding on the back of a motorcycle.",
    ],
    522418: [
        "A woman wearing a net on her head cutting a cake.",
        "A woman cutting a large white sheet cake.",
    ],
    184613: ["Two dogs play in the snow.", "A pair of dogs running through snow"],
    "clip-7": ["A kitchen with a stove and a sink.", "A small kitchen area with a sink."],
}


@pytest.fixture(scope="module")
def meteor():
    scorer = Meteor()
    yield scorer
    scorer.meteor_p.stdin.close()
    scorer.meteor_p.kill()
    scorer.meteor_p.wait()


@pytest.fixture(scope="module")
def evaluator(meteor):
    with CaptionEvaluator(meteor=meteor) as ready:
        yield ready


def direct_pycocoevalcap(meteor, predictions, references):
    """The reference: pycocoevalcap's tokenizer and scorers called the way COCO eval calls them."""
    tokenizer = PTBTokenizer()
    gts = tokenizer.tokenize({k: [{"caption": c} for c in refs] for k, refs in references.items()})
    res = tokenizer.tokenize({k: [{"caption": predictions[k]}] for k in references})
    bleu, _ = Bleu(4).compute_score(gts, res, verbose=0)
    return {
        "Bleu_1": bleu[0],
        "Bleu_2": bleu[1],
        "Bleu_3": bleu[2],
        "Bleu_4": bleu[3],
        "METEOR": meteor.compute_score(gts, res)[0],
        "ROUGE_L": Rouge().compute_score(gts, res)[0],
        "CIDEr": Cider().compute_score(gts, res)[0],
    }


def test_equals_direct_pycocoevalcap(evaluator, meteor):
    ours = evaluator(PREDICTIONS, REFERENCES)
    expected = direct_pycocoevalcap(meteor, PREDICTIONS, REFERENCES)
    assert set(ours) == set(CAPTION_METRICS)
    for name in CAPTION_METRICS:
        assert ours[name] == pytest.approx(expected[name], rel=1e-12, abs=1e-12), name
    # Not a degenerate comparison: these captions overlap their references partly.
    assert 0.0 < ours["Bleu_4"] < ours["Bleu_1"] < 1.0
    assert ours["CIDEr"] > 0.0


def test_ptb_tokenisation_lowercases_and_drops_punctuation(evaluator):
    # After PTB tokenisation "A man, riding a horse." is "a man riding a horse": a perfect match.
    scores = evaluator({1: "A man, riding a horse."}, {1: ["a man riding a horse"]})
    assert scores["ROUGE_L"] == pytest.approx(1.0)
    assert scores["Bleu_1"] == pytest.approx(1.0)
    assert scores["Bleu_4"] == pytest.approx(1.0)


def test_shared_meteor_survives_close(meteor):
    with CaptionEvaluator(meteor=meteor):
        pass
    assert meteor.meteor_p.poll() is None


def test_caption_metrics_without_meteor():
    scores = caption_metrics(
        {1: "a dog runs", 2: "a red car"}, {1: ["a dog runs"], 2: ["a cat"]}, use_meteor=False
    )
    assert "METEOR" not in scores
    # ROUGE-L (beta 1.2), mean over images. Image 1 is identical: 1.0. Image 2:
    # LCS("a red car", "a cat") = 1 -> P = 1/3, R = 1/2,
    # F = (1 + 1.2^2) P R / (R + 1.2^2 P) = 2.44 * (1/6) / (0.5 + 0.48) = 0.41497
    assert scores["ROUGE_L"] == pytest.approx((1.0 + 2.44 / 6 / 0.98) / 2)


def test_input_errors(evaluator):
    with pytest.raises(ValueError, match=r"prediction ids have no references, e\.g\. \['x'\]"):
        evaluator({1: "a", "x": "b"}, {1: ["a"]})
    with pytest.raises(ValueError, match=r"references but no prediction, e\.g\. \[2\]"):
        evaluator({1: "a"}, {1: ["a"], 2: ["b"]})
    with pytest.raises(ValueError, match="references for id 1 must be a non-empty list"):
        evaluator({1: "a"}, {1: []})
    with pytest.raises(ValueError, match="no predictions"):
        evaluator({}, {1: ["a"]})
    with pytest.raises(ValueError, match="prediction for id 1 must be a string"):
        evaluator({1: None}, {1: ["a"]})


def test_missing_java_says_how_to_install(monkeypatch):
    monkeypatch.setattr(captions.shutil, "which", lambda name: None)
    with pytest.raises(RuntimeError, match="apt-get install -y default-jre-headless"):
        caption_metrics({1: "a"}, {1: ["a"]})


def test_reported_scale():
    assert reported_caption_metrics({"CIDEr": 1.217, "Bleu_4": 0.349}) == pytest.approx(
        {"CIDEr": 121.7, "Bleu_4": 34.9}
    )
