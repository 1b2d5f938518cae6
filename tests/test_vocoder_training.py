"""A cheaper vocoder made from a trained one: pruning the residual blocks, and the `vocoder` trainer."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from safetensors import safe_open

from tests.corpus import make_corpus
from tests.tiny import tiny_flow_modules
from tts.checkpoints import UNIVERSAL_HIFIGAN, load_component, load_hifigan, save_component
from tts.errors import TTSError
from tts.models.hifigan import HifiGanConfig, HifiGanGenerator, keep_resblocks
from tts.pipeline import TextToSpeech
from tts.train.export import export_model
from tts.train.run import train
from tts.train.discriminator import MultiPeriodCritic, MultiResolutionCritic
from tts.train.tasks import stage_outputs, stft_loss

CONFIG = Path(__file__).resolve().parents[1] / "configs" / "vocoder.toml"


def tiny_generator() -> HifiGanGenerator:
    torch.manual_seed(0)
    return HifiGanGenerator(replace(HifiGanConfig.universal(), upsample_initial_channel=32)).eval()


def test_keeping_one_kernel_per_stage_takes_those_blocks_weights():
    base = tiny_generator()
    config, weights = keep_resblocks(base.state_dict(), base.config, [7])
    assert config.resblock_kernel_sizes == [7] and len(config.resblock_dilations) == 1
    pruned = HifiGanGenerator(config)
    pruned.load_state_dict(weights)  # strict: every tensor present, none left over
    per_stage = len(base.config.resblock_kernel_sizes)
    for stage in range(len(base.config.upsample_rates)):  # the 7-tap block is the second of each stage
        kept, source = pruned.resblocks[stage], base.resblocks[stage * per_stage + 1]
        assert torch.equal(kept.convs1[0].weight, source.convs1[0].weight)
    assert torch.equal(pruned.ups[0].weight, base.ups[0].weight)


def test_keeping_every_kernel_is_the_same_generator():
    base = tiny_generator()
    config, weights = keep_resblocks(base.state_dict(), base.config, [3, 7, 11])
    same = HifiGanGenerator(config)
    same.load_state_dict(weights)
    mel = torch.randn(1, 80, 6)
    with torch.no_grad():
        assert torch.equal(same.eval()(mel), base(mel))


def test_keeping_a_kernel_the_generator_lacks_is_an_error():
    base = tiny_generator()
    with pytest.raises(TTSError, match="not \\[5\\]"):
        keep_resblocks(base.state_dict(), base.config, [5])


def test_stft_loss_is_zero_for_the_same_audio_and_grows_with_noise():
    torch.manual_seed(0)
    wav = torch.randn(2, 4096)
    assert stft_loss(wav, wav).item() == pytest.approx(0.0, abs=1e-6)
    assert stft_loss(wav + 0.1 * torch.randn_like(wav), wav) < stft_loss(wav + torch.randn_like(wav), wav)


def test_vocoder_run_prunes_the_base_trains_and_exports_a_hifigan_component(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    base = tmp_path / "base.safetensors"
    save_component(base, "hifigan", tiny_generator())
    out = tmp_path / "run"
    train("vocoder", str(CONFIG), [f'task.base="{base}"', f'data.corpus="{corpus}"', "data.batch_size=2",
                                   "data.crop_seconds=0.1", "optim.steps=2", "optim.warmup=1", "data.val_batches=1",
                                   "run.log_every=1", "run.val_every=1", f'run.out="{out}"'])
    exported = load_component(out / "model.safetensors", "hifigan")
    assert exported.config.resblock_kernel_sizes == [3]
    original = load_component(base, "hifigan")
    assert torch.equal(exported.ups[0].weight, original.ups[0].weight)  # frozen by the config
    assert not torch.equal(exported.ups[2].weight, original.ups[2].weight)  # trained
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert any(k.startswith("resblocks.") for k in f.keys())
    header = (out / "log.csv").read_text().splitlines()[0]
    assert "mel_l1" in header and "stft" in header


def test_vocoder_run_refuses_model_fields_other_than_the_kernels(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    with pytest.raises(TTSError, match="only resblock_kernel_sizes"):
        train("vocoder", str(CONFIG), [f'data.corpus="{corpus}"', "model.upsample_initial_channel=64",
                                       f'run.out="{tmp_path / "run"}"'])


def test_a_vocoder_made_from_the_universal_one_stores_only_what_training_changed(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    out = tmp_path / "run"
    train("vocoder", str(CONFIG), [f'data.corpus="{corpus}"', "data.batch_size=2", "data.crop_seconds=0.1",
                                   "optim.steps=1", "optim.warmup=1", "data.val_batches=1", f'run.out="{out}"'])
    path = out / "model.safetensors"
    with safe_open(str(path), "pt") as f:
        stored, meta = set(f.keys()), f.metadata()
    assert meta["weights_base"] == UNIVERSAL_HIFIGAN
    assert not any(k.startswith(("conv_pre.", "ups.0.", "ups.1.")) for k in stored)  # frozen: the base's
    assert "ups.2.weight" in stored and "resblocks.0.convs1.0.weight" in stored
    vocoder = load_component(path, "hifigan")
    universal = load_hifigan(UNIVERSAL_HIFIGAN)
    assert torch.equal(vocoder.ups[0].weight, universal.ups[0].weight)

    model_dir = export_model(tmp_path / "model", None, None, tiny_dvae(tmp_path), vocoder_path=path)
    card = json.loads((model_dir / "model.json").read_text())
    assert card["components"]["vocoder"] == "vocoder.safetensors"
    with safe_open(str(model_dir / "vocoder.safetensors"), "pt") as f:  # float16, still without the base's
        assert "ups.0.weight" not in f.keys() and f.get_tensor("ups.2.weight").dtype == torch.float16
    tts = TextToSpeech(model_dir)
    mel = torch.full((1, 80, 8), -5.0)
    with torch.no_grad():
        assert tts.models.vocoder(mel).shape == (1, 1, 8 * 256)


def tiny_dvae(tmp_path: Path) -> Path:
    path = tmp_path / "dvae.safetensors"
    save_component(path, "dvae", tiny_flow_modules()["dvae"])
    return path


def test_an_unknown_weights_base_is_an_error(tmp_path):
    generator = tiny_generator()
    generator.weights_base = "elsewhere:model"
    with pytest.raises(TTSError, match="unknown weights base 'elsewhere:model'"):
        save_component(tmp_path / "v.safetensors", "hifigan", generator)


def test_stage_outputs_are_the_inputs_of_each_later_upsampler_and_of_conv_post():
    generator = tiny_generator()
    with torch.no_grad(), stage_outputs(generator) as stages:
        generator(torch.randn(1, 80, 5))
    assert [tuple(s.shape) for s in stages] == [(1, 16, 40), (1, 8, 320), (1, 4, 640), (1, 2, 1280)]
    with torch.no_grad():
        generator(torch.randn(1, 80, 5))
    assert len(stages) == 4  # the hooks are gone after the block


def test_vocoder_run_with_the_teachers_stage_outputs_logs_that_term(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    base = tmp_path / "base.safetensors"
    save_component(base, "hifigan", tiny_generator())
    out = tmp_path / "run"
    train("vocoder", str(CONFIG), [f'task.base="{base}"', "task.features=1.0", f'data.corpus="{corpus}"',
                                   "data.batch_size=2", "data.crop_seconds=0.1", "optim.steps=1", "optim.warmup=1",
                                   "data.val_batches=1", "run.log_every=1", "run.val_every=1", f'run.out="{out}"'])
    header = (out / "log.csv").read_text().splitlines()[0].split(",")
    assert "features" in header and "val_features" in header
    with safe_open(str(out / "model.safetensors"), "pt") as f:  # the teacher is not part of the export
        assert len(list(f.keys())) == len(HifiGanGenerator(load_component(out / "model.safetensors").config).state_dict())


def test_load_hifigan_reads_a_component_file_or_names_the_universal_one(tmp_path):
    path = tmp_path / "v.safetensors"
    save_component(path, "hifigan", tiny_generator())
    assert load_hifigan(path).config.upsample_initial_channel == 32
    assert load_hifigan(UNIVERSAL_HIFIGAN).config.upsample_initial_channel == 512
    with pytest.raises(TTSError, match="missing model file"):
        load_hifigan(tmp_path / "none.safetensors")


def test_freezing_a_layer_the_vocoder_lacks_is_an_error(tmp_path):
    corpus = make_corpus(tmp_path / "corpus")
    with pytest.raises(TTSError, match="no parameters named ups.9"):
        train("vocoder", str(CONFIG), [f'data.corpus="{corpus}"', 'task.freeze=["ups.9"]', f'run.out="{tmp_path / "run"}"'])


def test_the_period_critics_fold_the_audio_by_their_period_and_judge_any_length():
    critic = MultiPeriodCritic(periods=(2, 3), channels=2)
    judged = critic(torch.randn(2, 1001))  # not a multiple of either period: padded by reflection
    assert len(judged) == 2
    for period, (scores, features) in zip((2, 3), judged):
        assert scores.shape[0] == 2 and scores.shape[-1] == period
        assert len(features) == 5 and features[0].shape[1] == 2


def test_the_spectrogram_critics_judge_each_resolution_over_bins_and_frames():
    critic = MultiResolutionCritic(((64, 16), (128, 32)), channels=2)
    judged = critic(torch.randn(2, 1000))
    assert len(judged) == 2
    for n_fft, hop, (scores, features) in zip((64, 128), (16, 32), judged):
        bins, frames = n_fft // 2 + 1, 1000 // hop + 1
        assert features[0].shape == (2, 2, (bins + 1) // 2, frames)  # the first layer halves the bins
        assert scores.shape[:2] == (2, 1) and scores.shape[-1] == frames and len(features) == 5


@pytest.mark.parametrize("spectrum", [False, True])
def test_vocoder_run_with_a_critic_warms_it_up_then_trains_against_it_and_exports_no_critic(tmp_path, spectrum):
    corpus = make_corpus(tmp_path / "corpus")
    base = tmp_path / "base.safetensors"
    save_component(base, "hifigan", tiny_generator())
    out = tmp_path / "run"
    train("vocoder", str(CONFIG), [f'task.base="{base}"', "task.adversarial=0.1", "task.critic_warmup=1",
                                   f'data.corpus="{corpus}"', "data.batch_size=2", "data.crop_seconds=0.1",
                                   "optim.steps=3", "optim.warmup=1", "data.val_batches=1", "run.log_every=1",
                                   "run.val_every=3", f'run.out="{out}"', f"task.spectrum_critic={str(spectrum).lower()}"])
    rows = [line.split(",") for line in (out / "log.csv").read_text().splitlines()]
    header, by_step = rows[0], {row[0]: dict(zip(rows[0], row)) for row in rows[1:]}
    assert "critic" in header and "gan" in header
    assert by_step["1"]["gan"] == "" and by_step["2"]["gan"] != ""  # step 0 is the critic's warm-up alone
    state = torch.load(out / "checkpoint.pt", weights_only=False)
    assert any(".critic." in k or k.startswith("critic.") for k in state["model"])  # resumable with its critic
    assert any(k.startswith("spectrum_critic.") for k in state["model"]) == spectrum
    with safe_open(str(out / "model.safetensors"), "pt") as f:
        assert not any("critic" in k for k in f.keys())


def test_the_committed_restart_point_is_the_pruned_vocoder_on_the_universal_base():
    root = Path(__file__).resolve().parents[1]
    path = root / "checkpoints" / "training" / "vocoder.safetensors"
    with safe_open(str(path), "pt") as f:
        assert f.metadata()["weights_base"] == UNIVERSAL_HIFIGAN
    vocoder = load_hifigan(path)
    assert vocoder.config.resblock_kernel_sizes == [3]
    assert 'base = "checkpoints/training/vocoder.safetensors"' in (root / "configs" / "vocoder-gan.toml").read_text()
