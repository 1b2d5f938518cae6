"""tools.make_voices: which speakers a name asks for (nothing is synthesised here)."""

import pytest

from tools.make_voices import held_out_speakers, resampled_speaker, shipped_name
from tts.data import voices
from tts.data.corpus import SPEED_VARIANTS, plan_speakers


def test_a_resampled_voice_is_a_corpus_voice_at_a_speed_the_corpus_never_has():
    speaker = resampled_speaker("joe@0.77")
    assert speaker.name == "joe-x77" and speaker.voice.name == "joe" and speaker.speed == 0.77
    assert speaker.speed not in SPEED_VARIANTS.values()
    assert shipped_name(resampled_speaker("kokoro-kumo@1.25").name) == "kumo-x125"


@pytest.mark.parametrize("name", ["nobody@1.2", "joe@3", "joe@0.1", "joe@fast"])
def test_a_bad_resampled_voice_is_refused_in_one_line(name):
    with pytest.raises(SystemExit, match=name):
        resampled_speaker(name)


def test_held_out_speakers_are_never_corpus_speakers():
    corpus = {s.name for s in plan_speakers()}
    held = held_out_speakers()
    assert len(held) == len(voices.KOKORO_HELD_OUT) and not {s.name for s in held} & corpus
