"""Whether synthesised audio is usable for its text: some audio, finite samples, not silent, and a
length plausible for the text.

One duration check serves narration (a chunk outside it is made again, then failed) and evaluation
(a sentence outside it is reported). Its bounds are per character of the text's scoring form
(:func:`tts.text.scoring.scoring_text`: spoken words, numbers in words). Measured on a real voice
(piper joe, the 30 public sentences, three runs), speech takes 0.049-0.068 s a character; the
bounds are far wider, to catch only a model that stopped early, rambled or went silent-looping.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .silence import SILENT_RMS_DBFS, is_silent, rms
from .text.scoring import scoring_text

MIN_SECONDS_PER_CHAR = 0.02
MAX_SECONDS_PER_CHAR = 0.3
DURATION_SLACK_SECONDS = 2.0  # added to the upper bound: pauses at the ends of a short text


@dataclass(frozen=True)
class DurationCheck:
    """Audio far too short or too long for its text. Use 0 to switch a bound off."""

    min_seconds_per_char: float = MIN_SECONDS_PER_CHAR
    max_seconds_per_char: float = MAX_SECONDS_PER_CHAR
    slack_seconds: float = DURATION_SLACK_SECONDS  # added to the upper bound

    def bounds(self, text: str) -> tuple[float, float]:
        """(shortest, longest) plausible seconds of speech for `text`; the longest is inf when switched off."""
        chars = len(scoring_text(text))
        high = self.max_seconds_per_char * chars + self.slack_seconds if self.max_seconds_per_char else float("inf")
        return self.min_seconds_per_char * chars, high

    def problem(self, text: str, seconds: float) -> str | None:
        """Why `seconds` of audio are implausible for `text` (a message), or None when they are not."""
        found = self.judge(text, seconds)
        return found.message if found else None

    def judge(self, text: str, seconds: float) -> Problem | None:
        """What is wrong with `seconds` of audio for `text` ("too_short" or "too_long"), or None."""
        low, high = self.bounds(text)
        chars = len(scoring_text(text))
        if seconds < low:
            return Problem("too_short", f"too short: {seconds:.2f} s for {chars} characters "
                                        f"(at least {low:.1f} s expected)")
        if seconds > high:
            return Problem("too_long", f"too long: {seconds:.2f} s for {chars} characters "
                                       f"(at most {high:.1f} s expected)")
        return None


class Problem(NamedTuple):
    kind: str  # "empty", "non_finite", "silent", "too_short" or "too_long"
    message: str

    def __str__(self) -> str:
        return self.message


UNUSABLE = frozenset({"empty", "non_finite", "silent"})  # nothing worth listening to or judging


def audio_problems(wav: np.ndarray, sample_rate: int, text: str, check: DurationCheck = DurationCheck(),
                   silent: bool = True) -> list[Problem]:
    """What is wrong with the audio made for `text` (none: fine). An unusable clip (UNUSABLE kinds) is
    not checked further. `silent=False` leaves out the silence test."""
    wav = np.asarray(wav).reshape(-1)
    if wav.size == 0:
        return [Problem("empty", "no audio")]
    if not np.all(np.isfinite(wav)):
        return [Problem("non_finite", "invalid (NaN or infinite) samples")]
    if silent and is_silent(wav):
        level = 20 * np.log10(rms(wav)) if rms(wav) > 0 else -np.inf
        return [Problem("silent", f"near-silent audio ({level:.0f} dBFS RMS, below {SILENT_RMS_DBFS:g})")]
    problem = check.judge(text, wav.size / sample_rate)
    return [problem] if problem else []
