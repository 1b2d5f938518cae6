"""Synthesise the reference clips of the shipped voices from the corpus speakers.

    python -m tools.make_voices OUT [SPEAKER ...]

Writes OUT/<voice>/<n>.flac, where a Kokoro speaker ``kokoro-NAME`` ships as voice ``NAME``: three
clips per speaker, read by the same engine and processing as
the corpus (tts.data.corpus.make_item), from sentences that are neither in the corpus's text pool
style nor in the evaluation set. The held-out Kokoro speakers (``kokoro-tebualpha``,
``kokoro-kumo-gongitsune``, ``kokoro-gongitsune-alpha``: never in the corpus) are made only when named,
as voices of out-of-corpus speakers for measuring cloning (benchmarks/finetune.py), and so is
``VOICE@FACTOR``, a corpus voice resampled to a pitch the corpus never has (:func:`resampled_speaker`).
"""

import shutil
import sys
import tempfile
from pathlib import Path

from tts.data.corpus import Job, Speaker, make_item, plan_speakers
from tts.data.voices import KOKORO_HELD_OUT, VOICES, KokoroEngine, VoiceSpec
from tts.data.texts import Sentence

REFERENCE_SENTENCES = (
    "My grandmother kept a small garden behind the house, full of tomatoes, beans and bright yellow flowers.",
    "When the evening bus finally arrived, everyone climbed aboard quietly and found a seat near the window.",
    "Could you tell me whether the museum stays open late on Fridays, or should we go in the morning?",
)


def shipped_name(speaker: str) -> str:
    return speaker.removeprefix("kokoro-")


def held_out_speakers() -> list[Speaker]:
    """The Kokoro recipes never trained on (tts.data.voices.KOKORO_HELD_OUT), as `kokoro-NAME`: voices of
    out-of-corpus speakers, for measuring cloning (benchmarks/finetune.py); never shipped."""
    return [Speaker(f"kokoro-{name}", VoiceSpec(f"kokoro-{name}", KokoroEngine, {"recipe": recipe}, variants=False))
            for name, recipe in KOKORO_HELD_OUT.items()]


def resampled_speaker(name: str) -> Speaker:
    """``VOICE@FACTOR`` (e.g. ``joe@0.77``): the voice read FACTOR times faster by resampling, so that
    its pitch and formants move together, as the corpus's ``-up``/``-down`` copies (x1.15, x0.87) do;
    beyond those (below 0.85 or above 1.2) Resemblyzer hears a speaker the model was never trained
    on. Named ``VOICE-xPERCENT`` (``joe-x77``: voice names have no dots); never in the corpus."""
    voice, _, factor = name.partition("@")
    try:
        speed = float(factor)
    except ValueError:
        raise SystemExit(f"{name}: the speed factor must be a number, e.g. joe@0.77") from None
    if not 0.5 <= speed <= 2.0:
        raise SystemExit(f"{name}: the speed factor must be within 0.5-2.0")
    base = next((s for s in plan_speakers() if s.name == voice), None)
    if base is None:
        raise SystemExit(f"{name}: no corpus speaker {voice!r}")
    return Speaker(f"{voice}-x{round(speed * 100)}", base.voice, speed)


def main(out: str, names: list[str]) -> None:
    speakers = [s for s in plan_speakers() + held_out_speakers() if s.name in names
                or (not names and s.voice.name in VOICES)]
    speakers += [resampled_speaker(n) for n in names if "@" in n]
    with tempfile.TemporaryDirectory() as scratch:
        for speaker in speakers:
            for n, text in enumerate(REFERENCE_SENTENCES, 1):
                job = Job(f"{speaker.name}-{n}", speaker, Sentence(text, "reference"), Path(scratch))
                record = make_item(job)
                target = Path(out) / shipped_name(speaker.name) / f"{n}.flac"
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(Path(scratch) / record["audio"], target)
                print(f"{target}: {record['duration']:.1f} s", file=sys.stderr)


if __name__ == "__main__":
    if len(sys.argv) < 2:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2:])
