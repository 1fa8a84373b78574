"""Answer normalisation of the official VQA evaluation (SPEC §7).

The official VQA v2 evaluation script normalises answers in two steps, and the accuracy that
papers report depends on both of them, quirks included:

1. `process_punctuation`: each of 21 punctuation characters is deleted outright when it touches a
   space somewhere in the text (or when the text holds a digit-comma-digit such as "1,000"),
   otherwise it is replaced by a space; then every period not followed by a digit is deleted.
2. `process_digit_article`: lower-case, split on whitespace, number words "none"/"zero"..."ten"
   become digits, the articles "a"/"an"/"the" are dropped, and contraction spellings without an
   apostrophe ("dont") get one ("don't").

The prediction gets the whole treatment (`normalize_vqa_prediction`); the human answers get only
step 1, and only when the ten of a question are not all identical (see `vqa.py`).

The tables below are written from the official script's behaviour (its latest version, with
ASCII apostrophes). Entries that can never fire are kept on purpose so the table is the official
one: keys with capitals ("Im", "Ive", ...) since the text is lower-cased before the look-up, and
the reversed entry "somebody'd" -> "somebodyd" is the official mapping, typo included.
"""

import re

# Deleted or turned into a space by `process_punctuation`. Neither the period (handled by its own
# rule), the apostrophe (needed by contractions), the colon, nor "#$%&*^|~" are in the list.
PUNCTUATION: tuple[str, ...] = (
    ";",
    "/",
    "[",
    "]",
    '"',
    "{",
    "}",
    "(",
    ")",
    "=",
    "+",
    "\\",
    "_",
    "-",
    ">",
    "<",
    "@",
    "`",
    ",",
    "?",
    "!",
)

NUMBER_WORDS: dict[str, str] = {
    "none": "0",
    "zero": "0",
    "one": "1",
    "two": "2",
    "three": "3",
    "four": "4",
    "five": "5",
    "six": "6",
    "seven": "7",
    "eight": "8",
    "nine": "9",
    "ten": "10",
}

ARTICLES: frozenset[str] = frozenset({"a", "an", "the"})

# One "spelling canonical" pair per line.
_CONTRACTION_PAIRS = """
aint ain't
arent aren't
cant can't
couldve could've
couldnt couldn't
couldn'tve couldn't've
couldnt've couldn't've
didnt didn't
doesnt doesn't
dont don't
hadnt hadn't
hadnt've hadn't've
hadn'tve hadn't've
hasnt hasn't
havent haven't
hed he'd
hed've he'd've
he'dve he'd've
hes he's
howd how'd
howll how'll
hows how's
Id've I'd've
I'dve I'd've
Im I'm
Ive I've
isnt isn't
itd it'd
itd've it'd've
it'dve it'd've
itll it'll
let's let's
maam ma'am
mightnt mightn't
mightnt've mightn't've
mightn'tve mightn't've
mightve might've
mustnt mustn't
mustve must've
neednt needn't
notve not've
oclock o'clock
oughtnt oughtn't
ow's'at 'ow's'at
'ows'at 'ow's'at
'ow'sat 'ow's'at
shant shan't
shed've she'd've
she'dve she'd've
she's she's
shouldve should've
shouldnt shouldn't
shouldnt've shouldn't've
shouldn'tve shouldn't've
somebody'd somebodyd
somebodyd've somebody'd've
somebody'dve somebody'd've
somebodyll somebody'll
somebodys somebody's
someoned someone'd
someoned've someone'd've
someone'dve someone'd've
someonell someone'll
someones someone's
somethingd something'd
somethingd've something'd've
something'dve something'd've
somethingll something'll
thats that's
thered there'd
thered've there'd've
there'dve there'd've
therere there're
theres there's
theyd they'd
theyd've they'd've
they'dve they'd've
theyll they'll
theyre they're
theyve they've
twas 'twas
wasnt wasn't
wed've we'd've
we'dve we'd've
weve we've
werent weren't
whatll what'll
whatre what're
whats what's
whatve what've
whens when's
whered where'd
wheres where's
whereve where've
whod who'd
whod've who'd've
who'dve who'd've
wholl who'll
whos who's
whove who've
whyll why'll
whyre why're
whys why's
wont won't
wouldve would've
wouldnt wouldn't
wouldnt've wouldn't've
wouldn'tve wouldn't've
yall y'all
yall'll y'all'll
y'allll y'all'll
yall'd've y'all'd've
y'alld've y'all'd've
y'all'dve y'all'd've
youd you'd
youd've you'd've
you'dve you'd've
youll you'll
youre you're
youve you've
"""

CONTRACTIONS: dict[str, str] = dict(
    line.split(" ") for line in _CONTRACTION_PAIRS.strip().splitlines()
)

# Any digit, comma, digit: its presence switches every punctuation character to deletion.
_DIGIT_COMMA_DIGIT = re.compile(r"\d,\d")
# A period not followed by a digit ("1.5" keeps its period, "yes." and "a.m." lose theirs).
# The official pattern opens with "(?!<=\d)", a look-ahead (not the look-behind it resembles) that
# always holds in front of a period, so this is the same set of matches.
_PERIOD = re.compile(r"\.(?!\d)")
# The official call passes `re.UNICODE` (== 32) in the position of `count`, so at most 32 periods
# are deleted per answer. Kept for exactness; it only matters for pathological strings.
_MAX_PERIODS_DELETED = 32


def process_punctuation(text: str) -> str:
    """The official punctuation step (SPEC §7), applied to predictions and human answers alike.

    The "touches a space" test and the digit-comma-digit test look at the text as given, not at the
    partly processed one, exactly as the official script does.
    """
    delete_all = _DIGIT_COMMA_DIGIT.search(text) is not None
    out = text
    for mark in PUNCTUATION:
        if delete_all or (mark + " ") in text or (" " + mark) in text:
            out = out.replace(mark, "")
        else:
            out = out.replace(mark, " ")
    return _PERIOD.sub("", out, count=_MAX_PERIODS_DELETED)


def process_digit_article(text: str) -> str:
    """The official word step (SPEC §7): lower-case, number words, articles, contractions.

    Only predictions get this step. Number words are mapped before the article test, and the
    contraction map is applied last, word by word.
    """
    words = [NUMBER_WORDS.get(word, word) for word in text.lower().split()]
    words = [CONTRACTIONS.get(word, word) for word in words if word not in ARTICLES]
    return " ".join(words)


def normalize_vqa_prediction(text: str) -> str:
    """Full normalisation of a generated answer, as the official script applies to results.

    Newlines and tabs become spaces, the ends are stripped, then punctuation and word steps.
    """
    text = text.replace("\n", " ").replace("\t", " ").strip()
    return process_digit_article(process_punctuation(text))
