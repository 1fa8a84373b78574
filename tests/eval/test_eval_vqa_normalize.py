"""The official VQA answer normalisation, rule by rule (SPEC §7). Expected strings are worked out
by hand from the official script's rules."""

import pytest

from vlpet_jax.eval.vqa_normalize import (
    CONTRACTIONS,
    PUNCTUATION,
    normalize_vqa_prediction,
    process_digit_article,
    process_punctuation,
)


def test_tables_have_the_official_sizes():
    # Counted by hand in the official script: 21 punctuation marks, 120 contraction entries.
    assert len(PUNCTUATION) == 21
    assert len(set(PUNCTUATION)) == 21
    assert len(CONTRACTIONS) == 120
    for kept in (".", "'", ":", "#", "*", "%"):
        assert kept not in PUNCTUATION


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # A mark touching no space becomes a space.
        ("t-shirt", "t shirt"),
        ("yes!", "yes "),
        ("Yes!", "Yes "),  # no lower-casing in this step
        # A mark touching a space anywhere in the text is deleted.
        ("red, white", "red white"),
        ("dogs/cats, birds", "dogs cats birds"),
        ("dogs / cats", "dogs  cats"),
        # Digit-comma-digit anywhere switches every mark to deletion.
        ("1,000", "1000"),
        ("1,000 dogs/cats", "1000 dogscats"),
        # Periods: deleted unless a digit follows.
        ("1.5", "1.5"),
        (".5", ".5"),
        ("3.", "3"),
        ("yes.", "yes"),
        ("a.m.", "am"),
        ("st. louis", "st louis"),
        # Not punctuation here: colon, apostrophe.
        ("10:30", "10:30"),
        ("don't", "don't"),
        # The official call deletes at most 32 periods (re.UNICODE passed as count).
        ("." * 40, "." * 8),
    ],
)
def test_process_punctuation(text, expected):
    assert process_punctuation(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Two Dogs", "2 dogs"),
        ("none", "0"),
        ("zero", "0"),
        ("ten", "10"),
        ("eleven", "eleven"),
        ("the cat", "cat"),
        ("An apple", "apple"),
        ("a", ""),
        ("a one", "1"),
        ("dont", "don't"),
        ("isnt it", "isn't it"),
        ("Im", "im"),  # capitalised table keys can never fire after lower-casing
        ("somebody'd", "somebodyd"),  # the official table's reversed entry
        ("  several   spaces ", "several spaces"),
    ],
)
def test_process_digit_article(text, expected):
    assert process_digit_article(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("  The Two\tdogs.\n", "2 dogs"),
        ("Yes!", "yes"),
        ("T-Shirt", "t shirt"),
        # Each mark decides on its own: "," touches a space (deleted), "-" does not (space).
        ("Ice-cream, please", "ice cream please"),
        ("1,000 Dollars", "1000 dollars"),
        ("They're", "they're"),
        ("theyre", "they're"),
    ],
)
def test_normalize_vqa_prediction(text, expected):
    assert normalize_vqa_prediction(text) == expected
