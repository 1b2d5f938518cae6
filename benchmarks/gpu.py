"""The GPU fast path, measured, and the reference (tortoise-tts 3.0.0, kv_cache=True, half=True) beside it.

    python benchmarks/gpu.py --device cuda [--reference-python PY] [--model-dir DIR] [--out benchmarks/RESULTS.md]
    python benchmarks/gpu.py --device cpu --small          # smoke test: small random models, a minute on a CPU

All models have random weights (Tortoise's sizes, or small ones with --small), so the GPT never stops by
itself: its stop logit is pushed down and every run decodes a fixed number of tokens. Figures:

- copy bandwidth: a large device-to-device copy (bytes read + written per second);
- AR ms per token at batch 1 and 16: the eager static-cache loop, and the CUDA-graph step
  (tts.sampling.ar_graph); per token = (time for N2 tokens - time for N1 tokens) / (N2 - N1), so
  prefill and capture drop out; and the AR floor: bytes read per step (weights, plus the KV cache)
  over the measured copy bandwidth;
- diffusion ms per step (conditioning-free guidance, both passes batched), eager and graph-replayed;
- vocoder ms per second of audio: UnivNet and the HiFi-GAN latent decoder, float32 and half;
- end-to-end real-time factor per preset (TextToSpeech.synthesize; below 1 is faster than real time);
- time to first audio when streaming through the latent decoder (TextToSpeech.stream);
- peak GPU memory of each part.

With --reference-python, the same figures for tortoise-tts 3.0.0 come from benchmarks/gpu_reference.py
run by that interpreter (a separate environment with transformers 4.40.2; see benchmarks/gpu_setup.sh),
in the same run on the same device, with ratios reference / ours. The table goes to --out (the section
for this kind of run is replaced; the other is kept) and to standard output.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime
import json
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tts.device import resolve_device
from tts.models.diffusion import DiffusionConfig, DiffusionDecoder
from tts.models.gpt import GPTConfig, SpeechGPT
from tts.models.hifigan import HifiGanConfig, HifiGanGenerator, decode_latents
from tts.models.univnet import UnivNet, UnivNetConfig
from tts.precision import autocast, prepare
from tts.sampling.diffusion import SAMPLERS, NoiseSchedule, sample_loop
from tts.sampling.diffusion_graph import DiffusionRunner
from tts.sampling.generate import sample_codes
from tts.sampling.logits import SamplingParams

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "RESULTS.md"
SENTENCE = "Please call Stella and ask her to bring these things with her from the store."  # 15 words
STOP_BIAS = -1e4  # added to the stop code's logit bias: random-weight GPTs then never stop


@dataclass
class Sizes:
    """What one kind of run measures."""

    gpt: GPTConfig
    diffusion: DiffusionConfig
    univnet: UnivNetConfig
    latent_decoder: HifiGanConfig
    text_tokens: int = 40  # text ids in the AR prefix
    ar_tokens: tuple[int, int] = (16, 144)  # N1, N2 tokens decoded
    batches: tuple[int, ...] = (1, 16)
    diffusion_frames: int = 435  # 100 GPT latents: about 4.6 s of audio
    diffusion_steps: tuple[int, int] = (4, 12)
    vocoder_seconds: float = 10.0
    copy_mib: int = 2048
    presets: tuple[str, ...] = ("ultra_fast", "fast", "standard", "high_quality")
    max_mel_tokens: int = 200  # AR tokens per candidate end to end (random weights: always all of them)
    overrides: dict = field(default_factory=dict)  # preset overrides (the smoke test's small candidate counts)
    repeats: int = 3

    @classmethod
    def full(cls) -> Sizes:
        return cls(GPTConfig.tortoise(), DiffusionConfig.tortoise(), UnivNetConfig.tortoise(),
                   HifiGanConfig.tortoise_latent_decoder())

    @classmethod
    def small(cls) -> Sizes:
        width = 128
        return cls(
            gpt=GPTConfig(layers=2, model_dim=width, heads=2, conditioning_blocks=1),
            diffusion=DiffusionConfig(model_channels=width, num_layers=1, in_latent_channels=width, num_heads=2,
                                      code_converter_blocks=1, latent_conditioner_blocks=1,
                                      contextual_embedder_blocks=1, integrator_layers=1, plain_resblocks=1),
            univnet=UnivNetConfig(channels=8, kpnet_hidden_channels=16),
            latent_decoder=dataclasses.replace(HifiGanConfig.tortoise_latent_decoder(), in_channels=width,
                                               cond_channels=width, upsample_initial_channel=32),
            text_tokens=20, ar_tokens=(4, 20), batches=(1, 4), diffusion_frames=60, diffusion_steps=(2, 4),
            vocoder_seconds=1.0, copy_mib=64, presets=("ultra_fast", "fast"), max_mel_tokens=80,
            overrides={"candidates": 2, "batch_size": 2, "diffusion_steps": 4}, repeats=2,
        )


# ---- timing ----------------------------------------------------------------------------------------


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, repeats: int = 3, warmup: int = 1) -> float:
    """Median wall seconds of `fn()` over `repeats` runs after `warmup` runs (device synchronised)."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def per_unit_ms(run: Callable[[int], object], counts: tuple[int, int], device: torch.device, repeats: int) -> float:
    """Milliseconds per unit: (time of run(N2) - time of run(N1)) / (N2 - N1); fixed costs cancel."""
    short, long = (timed(lambda n=n: run(n), device, repeats) for n in counts)
    return 1000 * (long - short) / (counts[1] - counts[0])


@contextlib.contextmanager
def peak_memory(device: torch.device, into: dict, key: str):
    """Record the peak GPU memory (MiB) allocated inside the block as into[key] (CUDA only)."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        torch.cuda.reset_peak_memory_stats(device)
    yield
    if device.type == "cuda":
        torch.cuda.synchronize(device)
        into[key] = round(torch.cuda.max_memory_allocated(device) / 2**20)


# ---- pieces ------------------------------------------------------------------------------------------


def copy_bandwidth_gbs(device: torch.device, mib: int) -> float:
    """GB/s of a device-to-device copy, counting bytes read and written."""
    src = torch.randn(mib * 2**20 // 4, device=device)
    dst = torch.empty_like(src)
    seconds = timed(lambda: dst.copy_(src), device, repeats=10, warmup=3)
    return 2 * src.numel() * 4 / seconds / 1e9


def suppress_stop(gpt: SpeechGPT) -> None:
    with torch.no_grad():
        gpt.mel_head.bias[gpt.config.stop_mel_token] += STOP_BIAS


def ar_bytes_per_step(gpt: SpeechGPT, batch: int, context: int) -> tuple[int, int]:
    """(weight bytes, KV-cache bytes) one decode step must read at `context` cached positions."""
    cfg = gpt.config
    blocks = sum(p.numel() * p.element_size() for p in gpt.gpt.h.parameters())
    heads = sum(p.numel() * p.element_size() for m in (gpt.gpt.ln_f, gpt.final_norm, gpt.mel_head)
                for p in m.parameters())
    element = gpt.mel_head.weight.element_size()
    kv = 2 * cfg.layers * batch * context * cfg.model_dim * element
    return blocks + heads, kv


def measure_ar(gpt: SpeechGPT, sizes: Sizes, device: torch.device, precision: str, bandwidth: float,
               caches: tuple[str, ...]) -> dict:
    cfg = gpt.config
    g = torch.Generator(device).manual_seed(0)
    cond = torch.randn(cfg.model_dim, device=device, generator=g)
    text = torch.randint(1, cfg.number_text_tokens, (sizes.text_tokens,), device=device, generator=g)
    params = SamplingParams()
    out = {}
    for batch in sizes.batches:
        for cache in caches:
            def run(tokens: int, batch=batch, cache=cache) -> None:
                with torch.no_grad(), autocast(device, precision):
                    sample_codes(gpt, cond, text, num_samples=batch, batch_size=batch, max_tokens=tokens,
                                 params=params, generator=torch.Generator(device).manual_seed(1), cache=cache)
            with peak_memory(device, out, f"ar_peak_mib_b{batch}_{cache}"):
                out[f"ar_ms_b{batch}_{cache}"] = round(per_unit_ms(run, sizes.ar_tokens, device, sizes.repeats), 3)
        weights, kv = ar_bytes_per_step(gpt, batch, sizes.text_tokens + 4 + sum(sizes.ar_tokens) // 2)
        out[f"ar_floor_ms_b{batch}"] = round(1000 * weights / (bandwidth * 1e9), 3)
        out[f"ar_floor_kv_ms_b{batch}"] = round(1000 * (weights + kv) / (bandwidth * 1e9), 3)
    out["ar_weight_mib"] = round(ar_bytes_per_step(gpt, 1, 0)[0] / 2**20)
    return out


def measure_diffusion(model: DiffusionDecoder, sizes: Sizes, device: torch.device, precision: str,
                      graph_modes: tuple[bool, ...]) -> dict:
    cfg = model.config
    g = torch.Generator(device).manual_seed(0)
    with torch.no_grad(), autocast(device, precision):
        latents = torch.randn(1, sizes.diffusion_frames * 22050 // (4 * 24000) + 1, cfg.in_latent_channels,
                              device=device, generator=g)
        cond = torch.randn(1, 2 * cfg.model_channels, device=device, generator=g)
        precomputed = model.timestep_independent(latents, cond, sizes.diffusion_frames)
    x = torch.randn(1, cfg.in_channels, sizes.diffusion_frames, device=device, generator=g)
    out = {}
    for graphs in graph_modes:
        runner = DiffusionRunner(model, graphs=graphs)
        name = "graph" if graphs else "eager"

        def run(steps: int, runner=runner) -> None:
            with torch.no_grad(), autocast(device, precision):
                runner.sample(precomputed, x, steps=steps, sampler="ddpm", cond_free=True,
                              generator=torch.Generator(device).manual_seed(2))
        with peak_memory(device, out, f"diffusion_peak_mib_{name}"):
            out[f"diffusion_ms_{name}"] = round(per_unit_ms(run, sizes.diffusion_steps, device, sizes.repeats), 3)

    def two_calls(steps: int) -> None:  # the reference's form: two model calls per step, eager
        from tts.sampling.diffusion import DecoderDenoiser

        with torch.no_grad(), autocast(device, precision):
            sample_loop(DecoderDenoiser(model, precomputed, True), NoiseSchedule.respaced(steps), x,
                        SAMPLERS["ddpm"](), torch.Generator(device).manual_seed(2), cond_free_k=2.0)
    out["diffusion_ms_two_calls"] = round(per_unit_ms(two_calls, sizes.diffusion_steps, device, sizes.repeats), 3)
    out["diffusion_frames"] = sizes.diffusion_frames
    return out


def measure_vocoders(univnet: UnivNet, hifigan: HifiGanGenerator, sizes: Sizes, device: torch.device,
                     half: str) -> dict:
    out = {}
    frames = int(sizes.vocoder_seconds * univnet.config.sample_rate / univnet.config.hop_length)
    g = torch.Generator(device).manual_seed(0)
    mel = torch.randn(1, univnet.config.mel_channels, frames, device=device, generator=g) * 2 - 6
    latents = torch.randn(1, int(sizes.vocoder_seconds * 22050 / 1024), hifigan.config.in_channels, device=device,
                          generator=g)
    cond = torch.randn(1, hifigan.config.cond_channels, device=device, generator=g)
    for precision in ("fp32", half):
        def univ(precision=precision) -> None:
            with torch.no_grad(), autocast(device, precision):
                univnet.vocode(mel, generator=torch.Generator(device).manual_seed(0))

        def hifi(precision=precision) -> None:
            with torch.no_grad(), autocast(device, precision):
                decode_latents(hifigan, latents, cond)
        seconds = latents.shape[1] * 1024 / 22050
        out[f"univnet_ms_per_s_{precision}"] = round(1000 * timed(univ, device, sizes.repeats) / sizes.vocoder_seconds, 2)
        out[f"hifigan_ms_per_s_{precision}"] = round(1000 * timed(hifi, device, sizes.repeats) / seconds, 2)
    return out


def make_model_dir(path: Path, sizes: Sizes, small: bool) -> Path:
    """A Tortoise-layout directory with random weights: the tiny test models, or full size (about 4 GB)."""
    if small:
        from tests.tiny import make_tiny_tortoise_dir

        return make_tiny_tortoise_dir(path)
    from tools.make_random_tortoise import main as make_full

    make_full(str(path))
    return path


def measure_pipeline(model_dir: Path, sizes: Sizes, device: torch.device, precision: str, voices_dir: Path) -> dict:
    from tts.pipeline import TextToSpeech
    from tts.sampling.options import resolve
    from tts.streaming import StreamSettings
    from tts.voices import VoiceLibrary

    out = {}
    tts = TextToSpeech(model_dir, device=str(device), precision=precision, cache=voices_dir.parent / "cache")
    suppress_stop(tts.models.gpt)
    voice = VoiceLibrary(voices_dir).get("bench")
    cond = tts.conditioning(voice)
    # one warm-up synthesis (graph captures, kernel selection), then each preset once
    tts.synthesize(SENTENCE, cond, resolve(sizes.presets[0], tts.models.card, seed=0,
                                           max_mel_tokens=sizes.max_mel_tokens, **sizes.overrides))
    for name in sizes.presets:
        options = resolve(name, tts.models.card, seed=0, max_mel_tokens=sizes.max_mel_tokens, **sizes.overrides)
        audio = {}

        def run(options=options, audio=audio) -> None:
            audio["samples"] = len(tts.synthesize(SENTENCE, cond, options))
        with peak_memory(device, out, f"rtf_peak_mib_{name}"):
            seconds = timed(run, device, repeats=1, warmup=0)
        out[f"rtf_{name}"] = round(seconds / (audio["samples"] / tts.sample_rate), 4)
        out[f"seconds_{name}"] = round(seconds, 3)
    if tts.models.latent_decoder is not None:
        options = resolve("ultra_fast", tts.models.card, seed=0, max_mel_tokens=sizes.max_mel_tokens)
        for label, settings in (("", StreamSettings()), ("_first60", StreamSettings(first_tokens=60))):
            first = time_to_first_audio(tts, SENTENCE, cond, options, settings)  # warm-up (captures graphs)
            first = time_to_first_audio(tts, SENTENCE, cond, options, settings)
            out[f"ttfa_s{label}"] = first["first_chunk_s"]
            out[f"stream_total_s{label}"] = first["total_s"]
            out[f"stream_audio_s{label}"] = first["audio_s"]
    return out


def time_to_first_audio(tts, text: str, voice, options, settings=None) -> dict:
    """Seconds from calling TextToSpeech.stream until its first chunk and until its last, and audio seconds."""
    device = tts.device
    synchronize(device)
    start = time.perf_counter()
    first, samples, chunks = None, 0, 0
    for chunk in tts.stream(text, voice, options, settings=settings):
        if first is None:
            first = time.perf_counter() - start
        samples += len(chunk)
        chunks += 1
    synchronize(device)
    return {"first_chunk_s": round(first, 4), "total_s": round(time.perf_counter() - start, 4),
            "audio_s": round(samples / tts.sample_rate, 3), "chunks": chunks}


def run_reference(python: str, args: dict) -> dict:
    """benchmarks/gpu_reference.py in the reference interpreter; its JSON figures."""
    script = ROOT / "benchmarks" / "gpu_reference.py"
    done = subprocess.run([python, str(script), json.dumps(args)], capture_output=True, text=True, cwd=ROOT,
                          check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the reference run failed:\n{done.stderr[-4000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


# ---- the report ---------------------------------------------------------------------------------------

ROWS = [  # (label, our key, the reference's key, unit)
    ("copy bandwidth (read + write)", "copy_gbs", None, "GB/s"),
    ("AR ms/token, batch 1, eager static cache", "ar_ms_b1_static", "ar_ms_b1", "ms"),
    ("AR ms/token, batch 1, static-shape step (CUDA graph on a GPU)", "ar_ms_b1_graph", "ar_ms_b1", "ms"),
    ("AR floor, batch 1: weights / bandwidth", "ar_floor_ms_b1", None, "ms"),
    ("AR floor, batch 1: weights + KV cache", "ar_floor_kv_ms_b1", None, "ms"),
    ("AR ms/token, batch {b}, eager static cache", "ar_ms_b{b}_static", "ar_ms_b{b}", "ms"),
    ("AR ms/token, batch {b}, static-shape step (CUDA graph on a GPU)", "ar_ms_b{b}_graph", "ar_ms_b{b}", "ms"),
    ("AR floor, batch {b}: weights + KV cache", "ar_floor_kv_ms_b{b}", None, "ms"),
    ("diffusion ms/step ({f} frames, guidance), two calls, eager", "diffusion_ms_two_calls", "diffusion_ms", "ms"),
    ("diffusion ms/step, batched, eager", "diffusion_ms_eager", "diffusion_ms", "ms"),
    ("diffusion ms/step, batched, CUDA graph", "diffusion_ms_graph", "diffusion_ms", "ms"),
    ("UnivNet ms per audio second, fp32", "univnet_ms_per_s_fp32", "univnet_ms_per_s", "ms"),
    ("UnivNet ms per audio second, {h}", "univnet_ms_per_s_{h}", "univnet_ms_per_s", "ms"),
    ("HiFi-GAN latent decoder ms per audio second, fp32", "hifigan_ms_per_s_fp32", "hifigan_ms_per_s", "ms"),
    ("HiFi-GAN latent decoder ms per audio second, {h}", "hifigan_ms_per_s_{h}", "hifigan_ms_per_s", "ms"),
    ("real-time factor, ultra_fast", "rtf_ultra_fast", "rtf_ultra_fast", ""),
    ("real-time factor, fast", "rtf_fast", "rtf_fast", ""),
    ("real-time factor, standard", "rtf_standard", "rtf_standard", ""),
    ("real-time factor, high_quality", "rtf_high_quality", "rtf_high_quality", ""),
    ("time to first audio, streaming (first chunk after 20 tokens)", "ttfa_s", "ttfa_s", "s"),
    ("time to first audio, streaming (after 60 tokens, as api_fast)", "ttfa_s_first60", "ttfa_s", "s"),
    ("peak GPU memory, AR batch {b} (graph)", "ar_peak_mib_b{b}_graph", "ar_peak_mib_b{b}", "MiB"),
    ("peak GPU memory, diffusion (graph)", "diffusion_peak_mib_graph", "diffusion_peak_mib", "MiB"),
    ("peak GPU memory, end to end (high_quality)", "rtf_peak_mib_high_quality", "rtf_peak_mib_high_quality", "MiB"),
]


def table(ours: dict, reference: dict | None, sizes: Sizes, half: str) -> str:
    b = max(sizes.batches)
    lines = ["| measure | ours | reference | reference / ours |", "|---|---|---|---|"]
    for label, key, ref_key, unit in ROWS:
        fill = {"b": b, "f": sizes.diffusion_frames, "h": half}
        key, label = key.format(**fill), label.format(**fill)
        if key not in ours:
            continue
        value = ours[key]
        ref = reference.get(ref_key.format(**fill)) if reference and ref_key else None
        ratio = f"{ref / value:.2f}x" if ref is not None and value else ""
        ref_text = "" if ref is None else f"{ref} {unit}".strip()
        lines.append(f"| {label} | {value} {unit} | {ref_text} | {ratio} |".replace("  ", " "))
    return "\n".join(lines)


def write_section(path: Path, marker: str, text: str) -> None:
    """Replace the block between `<!-- marker -->` and `<!-- /marker -->` in `path` (appended if absent)."""
    start, end = f"<!-- {marker} -->", f"<!-- /{marker} -->"
    old = path.read_text(encoding="utf-8") if path.is_file() else "# GPU fast path: benchmark results\n"
    block = f"{start}\n{text.rstrip()}\n{end}"
    if start in old and end in old:
        new = old[:old.index(start)] + block + old[old.index(end) + len(end):]
    else:
        new = old.rstrip() + "\n\n" + block + "\n"
    from tts.fileio import write_text_atomic

    write_text_atomic(path, new if new.endswith("\n") else new + "\n")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"{platform.processor() or platform.machine()} CPU, {torch.get_num_threads()} thread(s)"


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--small", action="store_true", help="small random models (the CPU smoke test)")
    parser.add_argument("--precision", default=None, help="fp16 / bf16 / fp32 (default: fp16 on CUDA, fp32 on CPU)")
    parser.add_argument("--model-dir", default=None, help="a random-weight Tortoise directory (made if absent)")
    parser.add_argument("--reference-python", default=None, help="interpreter of the tortoise-tts 3.0.0 environment")
    parser.add_argument("--skip", default="", help="comma-separated parts to skip: ar,diffusion,vocoders,pipeline")
    parser.add_argument("--presets", default=None, help="comma-separated presets to time end to end (default: all "
                        "four; the small mode: ultra_fast,fast)")
    parser.add_argument("--merge", default=None, help="JSON written by an earlier --json run whose figures this "
                        "run's table includes (to split the work over two device calls)")
    parser.add_argument("--out", default=str(RESULTS), help="results file (markdown); '' for none")
    parser.add_argument("--json", default=None, help="also write every figure to this JSON file")
    args = parser.parse_args(argv)
    device = resolve_device(args.device)
    sizes = Sizes.small() if args.small else Sizes.full()
    precision = args.precision or ("fp16" if device.type == "cuda" else "fp32")
    half = "fp16" if device.type == "cuda" else "bf16"
    skip = set(filter(None, args.skip.split(",")))
    if args.presets:
        sizes = dataclasses.replace(sizes, presets=tuple(filter(None, args.presets.split(","))))
    torch.manual_seed(0)

    ours: dict = {"copy_gbs": round(copy_bandwidth_gbs(device, sizes.copy_mib), 1)}
    caches = ("static", "graph")
    if "ar" not in skip:
        gpt = prepare(SpeechGPT(sizes.gpt).eval().to(device), precision)
        suppress_stop(gpt)
        ours.update(measure_ar(gpt, sizes, device, precision, ours["copy_gbs"], caches))
        del gpt
    if "diffusion" not in skip:
        diffusion = prepare(DiffusionDecoder(sizes.diffusion).eval().to(device), precision)
        ours.update(measure_diffusion(diffusion, sizes, device, precision, (False, True) if device.type == "cuda"
                                      else (False,)))
        del diffusion
    if "vocoders" not in skip:
        ours.update(measure_vocoders(UnivNet(sizes.univnet).eval().to(device),
                                     HifiGanGenerator(sizes.latent_decoder).eval().to(device), sizes, device, half))
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        model_dir = Path(args.model_dir) if args.model_dir else scratch / "model"
        if "pipeline" not in skip or args.reference_python:
            if not (model_dir / "autoregressive.pth").is_file():
                make_model_dir(model_dir, sizes, args.small)
            from tests.tiny import make_voice

            make_voice(scratch / "voices", "bench", clips=2, seconds=6.0)
        if "pipeline" not in skip:
            ours.update(measure_pipeline(model_dir, sizes, device, precision, scratch / "voices"))
        reference = None
        if args.reference_python:
            reference = run_reference(args.reference_python, {
                "device": str(device), "small": args.small, "model_dir": str(model_dir),
                "voice_dir": str(scratch / "voices" / "bench"), "text": SENTENCE, "half": device.type == "cuda",
                "sizes": {"text_tokens": sizes.text_tokens, "ar_tokens": sizes.ar_tokens, "batches": sizes.batches,
                          "diffusion_frames": sizes.diffusion_frames, "diffusion_steps": sizes.diffusion_steps,
                          "vocoder_seconds": sizes.vocoder_seconds, "presets": sizes.presets,
                          "max_mel_tokens": sizes.max_mel_tokens, "repeats": sizes.repeats,
                          "gpt": dataclasses.asdict(sizes.gpt), "diffusion": dataclasses.asdict(sizes.diffusion),
                          "univnet": dataclasses.asdict(sizes.univnet),
                          "latent_decoder": dataclasses.asdict(sizes.latent_decoder)},
                "skip": sorted(skip),
            })

    if args.merge:  # figures of an earlier part of the same benchmark; this run's win where both have one
        earlier = json.loads(Path(args.merge).read_text(encoding="utf-8"))
        ours = {**earlier.get("ours", {}), **ours}
        if earlier.get("reference") or reference:
            reference = {**(earlier.get("reference") or {}), **(reference or {})}
    kind = "small random models (smoke test)" if args.small else "Tortoise-size random-weight models"
    overrides = f", overrides {json.dumps(sizes.overrides)}" if sizes.overrides else ""
    header = [
        (f"Device: **{device_name(device)}**; torch {torch.__version__}; {kind}; precision {precision}; "
         f"{datetime.date.today().isoformat()}."),
        f"Command: `python benchmarks/gpu.py {' '.join(argv if argv is not None else sys.argv[1:])}`",
        (f"AR: {sizes.text_tokens} text tokens, ms/token from {sizes.ar_tokens[0]} vs {sizes.ar_tokens[1]} tokens; "
         f"diffusion: {sizes.diffusion_frames} frames, cond-free, ms/step from {sizes.diffusion_steps[0]} vs "
         f"{sizes.diffusion_steps[1]} steps; end to end: the 15-word sentence, {sizes.max_mel_tokens} AR tokens "
         f"per candidate{overrides}."),
    ]
    if reference is None:
        header.append("Reference (tortoise-tts 3.0.0): not run in this invocation.")
    else:
        versions = reference.get("versions", {})
        header.append(f"Reference: tortoise-tts 3.0.0 (torch {versions.get('torch')}, transformers "
                      f"{versions.get('transformers')}), kv_cache=True, half={device.type == 'cuda'}, on the same device in a "
                      "subprocess right after ours; ratios are reference time / ours (above 1: ours is faster).")
        if args.small:
            header.append("Small mode: the reference's components are built at these widths but keep their own "
                          "fixed inner block counts, so they are only roughly comparable; its end-to-end and "
                          "streaming classes build full-size models only and are not run.")
    text = "\n".join(header) + "\n\n" + table(ours, reference, sizes, half) + "\n"
    print(text)
    if args.out:
        marker = "cpu-smoke" if args.small else ("gpu" if device.type == "cuda" else "cpu-full")
        title = {"cpu-smoke": "## CPU smoke test (not GPU figures)", "gpu": "## GPU",
                 "cpu-full": "## CPU, Tortoise-size models"}[marker]
        write_section(Path(args.out), marker, f"{title}\n\n{text}")
    if args.json:
        from tts.fileio import write_text_atomic

        write_text_atomic(args.json, json.dumps({"ours": ours, "reference": reference}, indent=2) + "\n")
    return {"ours": ours, "reference": reference}


if __name__ == "__main__":
    main()
