"""Text as it is scored and measured: spoken words only, lowercase, numbers and dates in words.

The one form in which a sentence and what a listener (or a speech recogniser) heard are compared, and
in which the length of a text is counted to judge whether its audio is plausibly long.
"""

from __future__ import annotations

import re

from .normalize import normalize_text, ordinal_words

_JOINED = re.compile(r"['\u2019.]")  # "o'clock" -> "oclock", "p.m." -> "pm"
_NOT_WORD = re.compile(r"[^a-z0-9]+")
_MONTHS = ("January", "February", "March", "April", "May", "June", "July", "August", "September",
           "October", "November", "December")
# "July 4" is said "July fourth" (and Whisper writes what it hears as "July 4"): a day after a
# (capitalised) month name is an ordinal, unless it is already one or is a time ("May 4:30").
_MONTH_DAY = re.compile(rf"\b({'|'.join(_MONTHS)})\s+([0-9]{{1,2}})\b(?![:.,]?[0-9]|st|nd|rd|th)")


def _month_day(m: re.Match) -> str:
    day = int(m.group(2))
    return f"{m.group(1)} {ordinal_words(day)}" if 1 <= day <= 31 else m.group(0)


def scoring_text(text: str) -> str:
    """The form both the sentence and the transcript take before scoring.

    Numbers, ordinals, years, money, percentages and times become words (``normalize_text``; a day
    after a month name is read as an ordinal, "July 4" as "July fourth"), then
    everything is lowercased, apostrophes and dots vanish inside words, and any other punctuation
    (hyphens included: "forty-two" is "forty two") separates words.

    >>> scoring_text("In 1969, Dr. Smith paid $3.50 at 10:05 pm!")
    'in nineteen sixty nine doctor smith paid three dollars and fifty cents at ten oh five pm'
    """
    text = normalize_text(_MONTH_DAY.sub(_month_day, text)).lower()
    text = _JOINED.sub("", text)
    return _NOT_WORD.sub(" ", text).strip()
