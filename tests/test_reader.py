"""The code reader: scoring code sequences by how they read, ranking a model's candidates with it,
and shipping it with a model."""

import pytest
import torch

from tests.tiny import READ_CODES, hand_reader, make_tiny_flow_model_dir, tiny_flow_modules
from tts.errors import TTSError
from tts.text.phonemes import PhonemeTokenizer

A, B, K = READ_CODES  # the codes that read as a, b, k


@pytest.fixture(scope="module")
def tokenizer():
    return PhonemeTokenizer()


def test_phone_ids_keep_the_sounds_only(tokenizer):
    ids = tokenizer.encode_phonemes("ɐ lˈoʊf, ˈeɪt.", add_start_stop=True)
    assert tokenizer.decode(tokenizer.phone_ids(ids)) == "ɐloʊfeɪt"
    assert tokenizer.phone_ids(torch.tensor(ids)) == tokenizer.phone_ids(ids)


def test_scores_prefer_the_sequence_that_reads_as_the_text(tokenizer):
    dvae = tiny_flow_modules()["dvae"]
    reader = hand_reader(dvae).eval()
    book = dvae.quantizer.codebook
    phones = tokenizer.encode_phonemes("abk")
    codes = torch.tensor([[A, B, K, 0], [K, B, A, 0], [A, 0, B, K], [A, B, 0, 0], [A, B, K, K]])  # (5, 4)
    lengths = torch.tensor([3, 3, 4, 1, 2])
    scores = reader.scores(book[codes].transpose(1, 2), lengths, phones)
    assert scores[0] > -0.01 and scores[2] > -0.01  # reads "abk" (a blank code between is no harm)
    assert scores[1] < -1.0  # "kba"
    assert scores[3] == float("-inf")  # one code is two CTC frames: three phones do not fit
    assert scores[4] < -1.0  # the k is past the end of the sequence
    assert torch.equal(reader.scores(book[codes].transpose(1, 2), lengths, []), torch.zeros(5))


def test_the_pipeline_ranks_candidates_by_the_reader(tmp_path, tokenizer):
    from tts.pipeline import TextToSpeech

    tts = TextToSpeech(make_tiny_flow_model_dir(tmp_path / "model", reader=True), cache=tmp_path / "cache")
    assert tts.models.reader is not None
    stop = tts.gpt.config.stop_mel_token
    text = torch.tensor(tokenizer.encode_phonemes("ˈab.") + [tokenizer.stop_id])
    candidates = torch.tensor([[B, A, stop, stop], [A, stop, stop, stop], [A, 0, B, stop], [B, B, A, A]])
    assert tts.rerank(text, candidates) == 2
    assert tts.rerank(text, candidates[:1]) == 0  # one candidate: nothing to rank


def test_export_ships_the_reader_of_the_dvae(tmp_path):
    from tts.checkpoints import load_model_dir, save_component
    from tts.models.reader import CodeReader, ReaderConfig
    from tts.train.export import export_model

    modules = tiny_flow_modules()
    for role in ("gpt", "dvae"):
        save_component(tmp_path / f"{role}.safetensors", role, modules[role])
    save_component(tmp_path / "reader.safetensors", "reader", hand_reader(modules["dvae"]))
    model = export_model(tmp_path / "model", tmp_path / "gpt.safetensors", None, tmp_path / "dvae.safetensors",
                         reader_path=tmp_path / "reader.safetensors")
    assert isinstance(load_model_dir(model).reader, CodeReader)
    wrong = CodeReader(ReaderConfig(codebook_dim=8, classes=PhonemeTokenizer().vocab_size))
    save_component(tmp_path / "wrong.safetensors", "reader", wrong)
    with pytest.raises(TTSError, match="8-wide codes"):
        export_model(tmp_path / "model2", tmp_path / "gpt.safetensors", None, tmp_path / "dvae.safetensors",
                     reader_path=tmp_path / "wrong.safetensors")
    assert not (tmp_path / "model2").exists()


def test_mel_reader_reads_two_frames_to_a_ctc_frame_and_round_trips(tmp_path):
    from tts.checkpoints import load_component, save_component
    from tts.models.reader import MelReader, MelReaderConfig

    reader = MelReader(MelReaderConfig(classes=7, channels=8, dilations=(1, 2))).eval()
    mel = torch.randn(2, 80, 11)
    log_probs = reader(mel)
    assert log_probs.shape == (6, 2, 7) and int(MelReader.frames(torch.tensor(11))) == 6
    torch.testing.assert_close(log_probs.exp().sum(-1), torch.ones(6, 2))
    save_component(tmp_path / "r.safetensors", "mel_reader", reader)
    loaded = load_component(tmp_path / "r.safetensors", "mel_reader")
    torch.testing.assert_close(loaded(mel), log_probs)


def test_a_dvae_with_more_codes_a_second_gets_as_many_seconds_a_chunk(tmp_path):
    """The options' cap of 500 codes was set for 4 mel frames a code; a DVAE with 2 a code gets 1,000
    (within the GPT's positions), written into every preset of the exported card."""
    import dataclasses

    from tts.checkpoints import load_model_dir, save_component
    from tts.models.dvae import DVAE
    from tts.models.gpt import SpeechGPT
    from tts.train.export import export_model, max_chunk_codes

    assert max_chunk_codes(4, 1022) == 500
    assert max_chunk_codes(2, 1022) == 1000
    assert max_chunk_codes(2, 600) == 600
    modules = tiny_flow_modules()
    gpt = SpeechGPT(dataclasses.replace(modules["gpt"].config, mel_positions=1100))
    dvae = DVAE(dataclasses.replace(modules["dvae"].config, downsamples=1))
    save_component(tmp_path / "gpt.safetensors", "gpt", gpt)
    save_component(tmp_path / "dvae.safetensors", "dvae", dvae)
    model = export_model(tmp_path / "model", tmp_path / "gpt.safetensors", None, tmp_path / "dvae.safetensors")
    presets = load_model_dir(model).card.presets
    assert presets and all(p["max_mel_tokens"] == 1000 for p in presets.values())
