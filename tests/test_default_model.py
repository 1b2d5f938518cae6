"""The bundled default model (checkpoints/default): the README's main command speaks with it."""

import numpy as np
import soundfile as sf
from click.testing import CliRunner

from cli import main
from tts.pipeline import TextToSpeech


def test_the_bundled_model_is_ours_with_a_reader_and_the_stop_rule():
    tts = TextToSpeech()  # no model_dir: the bundled one
    card, models = tts.models.card, tts.models
    assert card.tokenizer == "phonemes" and models.gpt is not None and models.dvae is not None
    assert models.reader is not None  # its candidates are ranked by how their codes read
    assert card.codes_per_text_token and all(p["min_length_ratio"] > 0 for p in card.presets.values())
    # long sentences are read in clauses no longer than its training utterances, not babbled past them
    assert tts.splitter.max_tokens == card.chunk_tokens < tts.gpt.config.max_text_tokens - 1


def test_the_readme_command_speaks_without_a_model_dir(tmp_path):
    out = tmp_path / "hello.wav"
    result = CliRunner().invoke(main, ["speak", "Hello, world.", "--voice", "joe", "--preset", "ultra_fast",
                                       "--seed", "0", "-o", str(out)])
    assert result.exit_code == 0, result.output
    wav, rate = sf.read(out, dtype="float32")
    seconds = len(wav) / rate
    assert 0.4 < seconds < 5.0, seconds  # two words, said: not cut off, not babbling on
    assert np.all(np.isfinite(wav)) and np.sqrt(np.mean(wav ** 2)) > 1e-3  # not silence


def test_loading_the_bundled_model_stays_off_the_slow_imports():
    """A cold load is part of every `tts speak`: it must not import transformers (our GPT-2 blocks are
    written out) or torch._dynamo (which any op on a meta tensor imports): 2-4 s between them."""
    import subprocess
    import sys

    code = ("import sys; from tts.pipeline import TextToSpeech; TextToSpeech(); "
            "slow = [m for m in ('transformers', 'torch._dynamo') if m in sys.modules]; "
            "assert not slow, f'imported {slow}'")
    subprocess.run([sys.executable, "-c", code], check=True)
