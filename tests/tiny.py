"""Tiny random models with Tortoise's structure, written through the same public savers/loaders the
real models use, plus synthetic voice clips. Shared by the pipeline, CLI and checkpoint tests."""

from __future__ import annotations

import math
from pathlib import Path

import numpy as np
import torch

from tts import audio
from tts.checkpoints import ModelCard, save_model_dir, save_tortoise_dir
from tts.models.clvp import CLVP, CLVPConfig
from tts.models.diffusion import DiffusionConfig, DiffusionDecoder
from tts.models.gpt import GPTConfig, SpeechGPT
from tts.models.hifigan import HifiGanConfig, HifiGanGenerator
from tts.models.univnet import UnivNet, UnivNetConfig

FIXTURES = Path(__file__).parent / "fixtures"
TOKENIZER = FIXTURES / "tortoise" / "tokenizer.json"
WIDTH = 64  # one 64-wide attention head, as Tortoise's configuration inference assumes


def tiny_tortoise_modules(seed: int = 0, text_positions: int = 404) -> dict[str, torch.nn.Module]:
    """Randomly initialised models with Tortoise vocabularies and widths cut to 64; `text_positions` sets
    the GPT's text limit (Tortoise's 404 rows: 400 tokens a chunk)."""
    torch.manual_seed(seed)
    gpt = SpeechGPT(GPTConfig(layers=1, model_dim=WIDTH, heads=1, conditioning_blocks=1, text_positions=text_positions))
    diffusion = DiffusionDecoder(DiffusionConfig(
        model_channels=WIDTH, num_layers=1, in_latent_channels=WIDTH, num_heads=1, code_converter_blocks=1,
        latent_conditioner_blocks=1, contextual_embedder_blocks=1, integrator_layers=1, plain_resblocks=1))
    clvp = CLVP(dataclass_replace(CLVPConfig.tortoise(), dim_text=WIDTH, dim_speech=WIDTH, dim_latent=WIDTH,
                                  text_depth=1, speech_depth=1, text_heads=1, speech_heads=1))
    vocoder = UnivNet(UnivNetConfig(channels=8, kpnet_hidden_channels=16))
    latent_decoder = HifiGanGenerator(dataclass_replace(
        HifiGanConfig.tortoise_latent_decoder(), in_channels=WIDTH, cond_channels=WIDTH, upsample_initial_channel=32))
    return {"gpt": gpt, "diffusion": diffusion, "clvp": clvp, "vocoder": vocoder, "latent_decoder": latent_decoder}


def dataclass_replace(obj, **changes):
    import dataclasses

    return dataclasses.replace(obj, **changes)


def mel_norms() -> torch.Tensor:
    """Plausible per-channel norms (Tortoise's span about -9.5 .. -1.6)."""
    return torch.linspace(-9.5, -1.6, 80)


def make_tiny_tortoise_dir(path: Path, seed: int = 0) -> Path:
    """A model directory in Tortoise's original layout: five .pth files, tokenizer.json, mel_norms.pth."""
    return save_tortoise_dir(path, TOKENIZER, mel_norms(), **tiny_tortoise_modules(seed))


def make_tiny_model_dir(path: Path, seed: int = 0, text_positions: int = 404) -> Path:
    """The same tiny models in our layout (safetensors + model.json)."""
    return save_model_dir(path, ModelCard(name="tiny"), tokenizer_file=TOKENIZER, mel_norms=mel_norms(),
                          **tiny_tortoise_modules(seed, text_positions))


def speech_like(seconds: float, sample_rate: int = audio.TORTOISE_SAMPLE_RATE, f0: float = 130.0,
                seed: int = 0) -> np.ndarray:
    """Harmonics of a gliding pitch with syllable-rate amplitude modulation and a little noise."""
    rng = np.random.default_rng(seed)
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    pitch = f0 * (1 + 0.15 * np.sin(2 * math.pi * 0.8 * t))
    phase = 2 * math.pi * np.cumsum(pitch) / sample_rate
    wav = sum(np.sin(k * phase) / k for k in range(1, 15))
    envelope = 0.5 + 0.5 * np.sin(2 * math.pi * 4 * t) ** 2
    wav = 0.3 * wav / np.abs(wav).max() * envelope + 0.003 * rng.standard_normal(t.shape)
    return wav.astype(np.float32)


def make_voice(voices_dir: Path, name: str, clips: int = 2, seconds: float = 3.0) -> Path:
    folder = voices_dir / name
    folder.mkdir(parents=True, exist_ok=True)
    for i in range(clips):
        audio.save_audio(folder / f"clip{i}.wav", speech_like(seconds, f0=120 + 20 * i, seed=i), audio.TORTOISE_SAMPLE_RATE)
    return folder


def tiny_flow_modules(seed: int = 0, residual_tokens: int = 0) -> dict[str, torch.nn.Module]:
    """Our small model's shape, tiny: phoneme GPT, speaker-conditioned pitched DVAE (with a residual
    codebook of `residual_tokens` entries), flow decoder, a HiFi-GAN on 80-band mels at 22.05 kHz."""
    from tts.models.dvae import DVAE, DVAEConfig
    from tts.models.flow import FlowConfig, FlowDecoder
    from tts.text.phonemes import PhonemeTokenizer

    torch.manual_seed(seed)
    phonemes = PhonemeTokenizer()
    codes = 64
    gpt = SpeechGPT(GPTConfig(layers=1, model_dim=WIDTH, heads=1, conditioning_blocks=1, text_positions=128,
                              mel_positions=128, number_text_tokens=phonemes.vocab_size,
                              stop_text_token=phonemes.stop_id, number_mel_codes=codes + 2, mel_channels=80,
                              samples_per_code=1024))
    dvae = DVAE(DVAEConfig(mel_channels=80, channels=32, num_tokens=codes, codebook_dim=16, resblocks=1,
                           speaker_dim=16, speaker_channels=16, context_blocks=1, pitch_bins=8,
                           residual_tokens=residual_tokens))
    if residual_tokens:  # entries of the residual's size (the random start is near zero)
        dvae.residuals[0].codebook.normal_(std=0.1)
    flow = FlowDecoder(FlowConfig(mel_channels=80, channels=32, layers=2, num_codes=codes, code_dim=8,
                                  speaker_dim=16, speaker_channels=16, time_dim=16))
    vocoder = HifiGanGenerator(dataclass_replace(HifiGanConfig.universal(), upsample_initial_channel=32))
    return {"gpt": gpt, "dvae": dvae, "flow": flow, "vocoder": vocoder}


READ_CODES = {1: "a", 2: "b", 3: "k"}  # what :func:`hand_reader` reads each of these codes as


def hand_reader(dvae) -> torch.nn.Module:
    """A code reader built by hand for `dvae` (whose codebook it edits): codes 1, 2, 3 get orthogonal
    vectors and read as the phones of :data:`READ_CODES`; every other code reads as the CTC blank."""
    from tts.models.reader import CodeReader, ReaderConfig
    from tts.text.phonemes import PhonemeTokenizer

    tokenizer = PhonemeTokenizer()
    dim = dvae.config.codebook_dim
    reader = CodeReader(ReaderConfig(codebook_dim=dim, classes=tokenizer.vocab_size, channels=len(READ_CODES)))
    with torch.no_grad():
        for p in reader.parameters():
            p.zero_()
        first, second, out = reader.net[0], reader.net[2], reader.net[4]
        book = dvae.quantizer.codebook
        book[:, :len(READ_CODES)] = 0  # every other code is orthogonal to the read ones
        book.copy_(torch.nn.functional.normalize(book, dim=1))
        for j, (code, phone) in enumerate(READ_CODES.items()):
            dvae.quantizer.codebook[code] = torch.nn.functional.one_hot(torch.tensor(j), dim).float()
            first.weight[j, :, 1] = 10 * dvae.quantizer.codebook[code]  # fires (3) on its code only
            second.weight[j, j, 1] = 1.0
            out.weight[tokenizer.encode_phonemes(phone)[0], j, 0] = 10.0
        first.bias.fill_(-7.0)
        out.bias[0] = 15.0  # the blank, where no code fires
    return reader


def make_tiny_flow_model_dir(path: Path, seed: int = 0, gpt: bool = True, live_flow: bool = False,
                             reader: bool = False, residual_tokens: int = 0) -> Path:
    """A tiny model directory of our own kind (phonemes, DVAE + flow decoder); without `gpt`, decoder-only.
    `live_flow`: the flow decoder's zero-initialised layers get small random weights (as training gives
    them), so that its output, and its gradients, depend on its inputs and speaker. `reader`: with
    :func:`hand_reader`. `residual_tokens`: the DVAE's residual codebook size (0: none)."""
    from tts.text.phonemes import PhonemeTokenizer
    from tts.train.export import SMALL_PRESETS

    modules = tiny_flow_modules(seed, residual_tokens)
    if not gpt:
        del modules["gpt"]
    if reader:
        modules["reader"] = hand_reader(modules["dvae"])
    if live_flow:
        with torch.no_grad():
            for p in modules["flow"].parameters():
                if not p.any():
                    p.normal_(std=0.05)
    samples = 3 * audio.HIFIGAN_SAMPLE_RATE
    card = ModelCard(name="tiny-flow", tokenizer="phonemes", phonemes=PhonemeTokenizer().to_dict(),
                     cond_mel=audio.HIFIGAN_MEL.name, cond_samples=samples, cond_norm="range",
                     diffusion_mel=audio.HIFIGAN_MEL.name, diffusion_cond_samples=samples, diffusion_input="codes",
                     silence_code=0, end_codes=(0, 0, 0), decoder="flow", presets=SMALL_PRESETS)
    return save_model_dir(path, card, **modules)
