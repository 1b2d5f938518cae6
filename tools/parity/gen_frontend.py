"""Reference outputs of the Tortoise audio front-ends: AR/CLVP mel, UnivNet mel, 22.05 -> 24 kHz resampling.

Runs in the reference environment (see make_fixtures.sh). The mels are float32. The resampler is also
recorded in float64 on the first RESAMPLE_F64_SAMPLES samples: its windowed-sinc filter is computed in
the signal's precision, and in float32 that computation alone moves the output by about 3e-6, too
close to the tests' tolerance for a float32 comparison to hold on every CPU.
"""

import math

import torch
import torchaudio
from tortoise.models.arch_util import TorchMelSpectrogram
from tortoise.utils.audio import wav_to_univnet_mel

from tools.parity.fixture import save_fixture

RESAMPLE_F64_SAMPLES = 4000


def test_signal(seconds: float, sample_rate: int, seed: int) -> torch.Tensor:
    """A voiced-like signal: harmonics of a gliding pitch plus a little noise, (1, S)."""
    g = torch.Generator().manual_seed(seed)
    t = torch.arange(int(seconds * sample_rate)) / sample_rate
    f0 = 120 + 40 * torch.sin(2 * math.pi * 0.7 * t)
    phase = 2 * math.pi * torch.cumsum(f0, 0) / sample_rate
    wav = sum(0.3 / k * torch.sin(k * phase) for k in range(1, 12))
    return (wav + 0.01 * torch.randn(t.shape, generator=g)).unsqueeze(0).float()


def main() -> None:
    torch.set_num_threads(1)
    wav22 = test_signal(1.5, 22050, seed=1)
    ar_mel = TorchMelSpectrogram()(wav22)  # (1, 80, T), divided by mel_norms
    mel_norms = TorchMelSpectrogram().mel_norms
    wav24 = torchaudio.functional.resample(wav22, 22050, 24000)
    univnet_mel = wav_to_univnet_mel(wav24, do_normalization=False, device="cpu")
    wav24_f64 = torchaudio.functional.resample(wav22[:, :RESAMPLE_F64_SAMPLES].double(), 22050, 24000)
    save_fixture(
        "frontend",
        {"wav22": wav22, "ar_mel": ar_mel, "mel_norms": mel_norms, "wav24": wav24, "univnet_mel": univnet_mel,
         "wav24_f64": wav24_f64},
        {"source": "tortoise-tts 3.0.0 TorchMelSpectrogram, wav_to_univnet_mel, torchaudio resample",
         "resample_f64_samples": RESAMPLE_F64_SAMPLES},
    )


if __name__ == "__main__":
    main()
