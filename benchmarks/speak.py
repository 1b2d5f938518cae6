"""Speed and memory of `tts speak`: load a model once, then time synthesis of one sentence.

    python benchmarks/speak.py --model-dir DIR --voice NAME [--runs 3] [--preset fast] [--json out.json]

Reports the model load time and the voice's conditioning time separately, then one warm-up run and
N timed runs of `TextToSpeech.synthesize` on a 15-word sentence: the median real-time factor
(synthesis seconds / audio seconds; below 1 is faster than real time), the same with the model's
load added (what a cold `tts speak` costs beyond Python and torch's own start), peak resident memory
of the process (ru_maxrss) after loading and at the end, peak GPU memory on CUDA, torch's thread
count and the precision the vocoder ran at (`--vocoder-precision`, default auto).
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tts.errors import TTSError
from tts.fileio import write_text_atomic
from tts.precision import VOCODER_PRECISIONS
from tts.sampling.options import PRESETS, SAMPLERS

SENTENCE = "Please call Stella and ask her to bring these things with her from the store."  # 15 words
WARMUP_RUNS = 1


def peak_rss_mib() -> float:
    """Peak resident set size of this process so far (Linux reports KiB)."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / (1024 * 1024) if sys.platform == "darwin" else peak / 1024


def run(model_dir: str | None, voice_name: str, text: str = SENTENCE, runs: int = 3, preset_name: str = "fast",
        device: str = "cpu", voices_dir: str | None = None, vocoder_precision: str = "auto",
        **overrides) -> dict:
    """Time loading and `runs` syntheses of `text` (after a warm-up); return the figures as a dict."""
    from tts.pipeline import TextToSpeech
    from tts.sampling.options import resolve
    from tts.voices import VoiceLibrary

    voice = VoiceLibrary(voices_dir).get(voice_name)
    start = time.perf_counter()
    tts = TextToSpeech(model_dir, device=device, vocoder_precision=vocoder_precision)
    load_seconds = time.perf_counter() - start
    rss_after_load = peak_rss_mib()
    options = resolve(preset_name, tts.models.card, **overrides)  # what was asked wins over the model's own
    start = time.perf_counter()
    tts.conditioning(voice)
    conditioning_seconds = time.perf_counter() - start
    if tts.device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(tts.device)

    timings = []
    for i in range(WARMUP_RUNS + runs):
        if tts.device.type == "cuda":
            torch.cuda.synchronize(tts.device)
        start = time.perf_counter()
        wav = tts.synthesize(text, voice, options)
        if tts.device.type == "cuda":
            torch.cuda.synchronize(tts.device)
        seconds = time.perf_counter() - start
        if i >= WARMUP_RUNS:
            audio_seconds = len(wav) / tts.sample_rate
            timings.append({"synthesis_seconds": round(seconds, 3), "audio_seconds": round(audio_seconds, 3),
                            "real_time_factor": round(seconds / audio_seconds, 4) if audio_seconds else None})
    rtfs = [t["real_time_factor"] for t in timings if t["real_time_factor"] is not None]
    median_synthesis = statistics.median(t["synthesis_seconds"] for t in timings)
    median_audio = statistics.median(t["audio_seconds"] for t in timings)
    return {
        "model_dir": str(model_dir) if model_dir else "(bundled default)",
        "model_id": tts.models.model_id,
        "voice": voice_name,
        "text": text,
        "words": len(text.split()),
        "options": {"preset": preset_name, **{k: v for k, v in overrides.items() if v is not None}},
        "device": str(tts.device),
        "vocoder_precision": tts.vocoder_precision,
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}",
        "load_seconds": round(load_seconds, 3),
        "conditioning_seconds": round(conditioning_seconds, 3),
        "warmup_runs": WARMUP_RUNS,
        "runs": timings,
        "median_real_time_factor": round(statistics.median(rtfs), 4) if rtfs else None,
        "median_synthesis_seconds": round(median_synthesis, 3),
        # a cold `tts speak`: loading the model, then one synthesis
        "real_time_factor_with_load": round((load_seconds + median_synthesis) / median_audio, 4)
        if median_audio else None,
        "peak_rss_mib_after_load": round(rss_after_load, 1),
        "peak_rss_mib": round(peak_rss_mib(), 1),
        "peak_cuda_mib": round(torch.cuda.max_memory_allocated(tts.device) / 2**20, 1)
        if tts.device.type == "cuda" else None,
    }


def table(result: dict) -> str:
    rows = [
        ("model", f"{result['model_dir']} ({result['model_id'][:12]})"),
        ("device / threads", f"{result['device']} / {result['torch_threads']}"),
        ("vocoder precision", result["vocoder_precision"]),
        ("options", ", ".join(f"{k}={v}" for k, v in result["options"].items())),
        ("text", f"{result['words']} words"),
        ("model load", f"{result['load_seconds']:.2f} s"),
        ("voice conditioning", f"{result['conditioning_seconds']:.2f} s"),
    ]
    for i, t in enumerate(result["runs"], 1):
        timing = f"{t['synthesis_seconds']:.2f} s for {t['audio_seconds']:.2f} s audio (RTF {t['real_time_factor']})"
        rows.append((f"run {i}", timing))
    rows += [
        ("median RTF", f"{result['median_real_time_factor']}"),
        ("RTF with load", f"{result['real_time_factor_with_load']}"),
        ("peak RSS after load", f"{result['peak_rss_mib_after_load']:.0f} MiB"),
        ("peak RSS", f"{result['peak_rss_mib']:.0f} MiB"),
    ]
    if result["peak_cuda_mib"] is not None:
        rows.append(("peak CUDA memory", f"{result['peak_cuda_mib']:.0f} MiB"))
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="model directory (default: the bundled model)")
    parser.add_argument("--voice", required=True)
    parser.add_argument("--voices-dir", default=None)
    parser.add_argument("--text", default=SENTENCE, help="sentence to say (default: a 15-word sentence)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up")
    parser.add_argument("--preset", default="fast", choices=list(PRESETS))
    parser.add_argument("--candidates", type=int, default=None)
    parser.add_argument("--diffusion-steps", type=int, default=None)
    parser.add_argument("--sampler", default=None, choices=list(SAMPLERS))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--vocoder-precision", default="auto", choices=list(VOCODER_PRECISIONS))
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error("--runs must be at least 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        result = run(args.model_dir, args.voice, args.text, args.runs, args.preset, args.device, args.voices_dir,
                     args.vocoder_precision, candidates=args.candidates, diffusion_steps=args.diffusion_steps,
                     sampler=args.sampler, seed=args.seed)
        if args.json:
            write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    except TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
