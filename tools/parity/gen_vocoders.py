"""Golden fixtures for the vocoders: Tortoise's UnivNet and its v3 HiFi-GAN latent decoder.

Runs in the reference environment (tortoise-tts 3.0.0); see make_fixtures.sh. Both models are built
at their full Tortoise configuration (15M and 18M parameters, small enough to store nothing but
inputs and outputs) and filled with seeded weights in the checkpoint layout (weight_g/weight_v).

- univnet: `UnivNetGenerator.eval(inference=True)` (which removes weight norm, as api.py does), then
  `inference(mel, z)` on a batch of two 20-frame mels with fixed noise, in float32. With plain
  seeded weights this network is chaotic (last-bit differences grow to a 10-20% different
  waveform), so its kernel predictor and output convolution are scaled down (seeded.UNIVNET_SCALES)
  until float32 rounding moves its output by less than 1e-6.
- hifigan_decoder: `HifiganGenerator.inference(latents, conditioning)`, the call api_fast makes, on
  12 latents, in float64 (model and inputs cast): in float32 its rounding moves the output by about
  1e-6, too close to the tests' tolerance to hold on every CPU. That method sends its input to
  "cuda"; on this CPU-only machine the move is turned into a no-op for the duration of the call,
  so the reference code runs unchanged otherwise.
"""

from __future__ import annotations

import contextlib

import torch
from tortoise.models.hifigan_decoder import HifiganGenerator
from tortoise.models.vocoder import UnivNetGenerator

from tools.parity.fixture import save_fixture
from tools.parity.seeded import UNIVNET_SCALES, parameter_shapes, seeded_noise, seeded_state_dict

UNIVNET_BATCH, UNIVNET_FRAMES = 2, 20
LATENT_FRAMES = 12


@contextlib.contextmanager
def cuda_moves_stay_on_cpu():
    """Within the block, `tensor.to("cuda")` returns the tensor itself (other moves are untouched)."""
    original = torch.Tensor.to

    def to(self, *args, **kwargs):
        if len(args) == 1 and not kwargs and isinstance(args[0], str) and args[0].startswith("cuda"):
            return self
        return original(self, *args, **kwargs)

    torch.Tensor.to = to
    try:
        yield
    finally:
        torch.Tensor.to = original


def univnet_fixture() -> None:
    model = UnivNetGenerator()  # Tortoise's configuration (api.py builds it with the defaults)
    model.load_state_dict(seeded_state_dict(parameter_shapes(model), scales=UNIVNET_SCALES), strict=True)
    model.eval(inference=True)  # folds weight norm
    mel = -5.0 + 2.0 * seeded_noise((UNIVNET_BATCH, 100, UNIVNET_FRAMES), seed=11)
    z = seeded_noise((UNIVNET_BATCH, 64, UNIVNET_FRAMES + 10), seed=12)
    with torch.no_grad():
        wav = model.inference(mel, z)  # (B, 1, 256 T)
    print(f"univnet: wav {tuple(wav.shape)} rms {wav.pow(2).mean().sqrt():.4f} "
          f"saturated {(wav.abs() >= 0.999).float().mean():.4f}")
    save_fixture(
        "univnet",
        {"mel": mel, "z": z, "wav": wav[:, 0]},
        {"model": "UnivNetGenerator()", "call": "eval(inference=True); inference(mel, z)", "seed": 0,
         "scales": UNIVNET_SCALES, "dtype": "float32"},
    )


def hifigan_decoder_fixture() -> None:
    model = HifiganGenerator(  # the arguments api_fast.py uses
        in_channels=1024, out_channels=1, resblock_type="1",
        resblock_dilation_sizes=[[1, 3, 5], [1, 3, 5], [1, 3, 5]], resblock_kernel_sizes=[3, 7, 11],
        upsample_kernel_sizes=[16, 16, 4, 4], upsample_initial_channel=512, upsample_factors=[8, 8, 2, 2],
        cond_channels=1024,
    ).eval()
    model.load_state_dict(seeded_state_dict(parameter_shapes(model)), strict=True)
    model.double()
    latents = seeded_noise((1, LATENT_FRAMES, 1024), seed=21)  # (B, T_lat, 1024) from the GPT
    conditioning = seeded_noise((1, 1024), seed=22)  # (1, 1024) AR conditioning latent
    with cuda_moves_stay_on_cpu():
        wav = model.inference(latents.double(), conditioning.double())  # (1, 1, S) float64
    print(f"hifigan_decoder: wav {tuple(wav.shape)} rms {wav.pow(2).mean().sqrt():.4f} "
          f"saturated {(wav.abs() >= 0.999).float().mean():.4f}")
    save_fixture(
        "hifigan_decoder",
        {"latents": latents, "conditioning": conditioning, "wav": wav[:, 0]},
        {"model": "HifiganGenerator(api_fast v3 arguments)", "call": "inference(latents, conditioning)",
         "seed": 0, "dtype": "float64"},
    )


if __name__ == "__main__":
    torch.set_num_threads(1)
    univnet_fixture()
    hifigan_decoder_fixture()
