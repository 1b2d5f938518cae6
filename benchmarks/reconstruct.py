"""Speed and memory of `tts reconstruct`: speech -> codes -> DVAE coarse mel -> flow decoder -> HiFi-GAN.

    python benchmarks/reconstruct.py [--model-dir DIR] [--steps 8] [--runs 3] [--threads 2] [--json out.json]
        [--input clip.wav ...]

Loads the model once, then reconstructs each input (default: the shipped voices' clips, 4-8 s
each) after one warm-up, and reports the real-time factor per stage (encode, DVAE decode, flow,
vocoder; seconds of work per second of audio, below 1 is faster than real time) and in all, and
the peak resident memory of the process.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from benchmarks.speak import peak_rss_mib
from tts import audio
from tts.errors import TTSError
from tts.fileio import write_text_atomic

VOICES_DIR = Path(__file__).resolve().parent.parent / "voices"


def default_inputs() -> list[Path]:
    return sorted(VOICES_DIR.glob("*/1.flac"))


def run(model_dir: str | None, inputs: list[Path], steps: int, runs: int) -> dict:
    from tts.pipeline import TextToSpeech

    start = time.perf_counter()
    tts = TextToSpeech(model_dir)
    load_seconds = time.perf_counter() - start
    wavs = [audio.load_audio(p, tts.sample_rate) for p in inputs]
    total_audio = sum(len(w) for w in wavs) / tts.sample_rate
    stage_names = ("encode", "conditioning", "dvae", "flow", "vocoder")
    rounds = []
    for i in range(1 + runs):
        stages = dict.fromkeys(stage_names, 0.0)
        for wav in wavs:
            t0 = time.perf_counter()
            codes = tts.encode_speech(wav)
            t1 = time.perf_counter()
            cond = tts.conditioning_from_clips([wav])
            t2 = time.perf_counter()
            generator = torch.Generator().manual_seed(0)
            with tts.inference():
                dvae, flow = tts.models.dvae, tts.models.flow
                coarse = dvae.decode(codes, cond.dvae_speaker)
                t3 = time.perf_counter()
                mel = flow.generate(coarse, codes, steps=steps, generator=generator, speaker=cond.flow_speaker) \
                    if flow is not None else coarse
                t4 = time.perf_counter()
                tts.vocode(audio.denormalize_mel(mel), generator)
            t5 = time.perf_counter()
            for name, seconds in zip(stage_names, (t1 - t0, t2 - t1, t3 - t2, t4 - t3, t5 - t4)):
                stages[name] += seconds
        if i > 0:  # the first round warms up
            rounds.append(stages)
    per_stage = {name: round(statistics.median(r[name] for r in rounds) / total_audio, 4) for name in stage_names}
    return {
        "model_dir": str(model_dir) if model_dir else "(bundled default)",
        "inputs": [str(p) for p in inputs],
        "audio_seconds": round(total_audio, 2),
        "steps": steps,
        "torch_threads": torch.get_num_threads(),
        "load_seconds": round(load_seconds, 2),
        "real_time_factor": round(sum(per_stage.values()), 4),
        "real_time_factor_by_stage": per_stage,
        "peak_rss_mib": round(peak_rss_mib(), 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--input", action="append", default=None, help="a recording (repeatable)")
    parser.add_argument("--steps", type=int, default=8)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=None)
    parser.add_argument("--json", default=None)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        inputs = [Path(p) for p in args.input] if args.input else default_inputs()
        if not inputs:
            raise TTSError("no inputs: pass --input FILE")
        result = run(args.model_dir, inputs, args.steps, args.runs)
    except TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    stages = ", ".join(f"{k} {v}" for k, v in result["real_time_factor_by_stage"].items())
    print(f"{result['audio_seconds']} s of audio in {len(inputs)} files, {args.steps} flow steps, "
          f"{result['torch_threads']} threads: RTF {result['real_time_factor']} ({stages}); "
          f"load {result['load_seconds']} s; peak RSS {result['peak_rss_mib']:.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
