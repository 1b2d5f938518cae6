"""Throughput of `tts narrate`: one ~2,000-word chapter from text to a finished audiobook.

    python benchmarks/narrate.py --voice NAME [--model-dir DIR] [--preset fast] [--device cpu|cuda]
        [--limit-words N] [--text-batch N] [--threads N] [--json out.json] [--keep DIR]

The model is loaded first (timed on its own); then :func:`tts.narrate.narrate` runs on
`benchmarks/chapter.txt` (an original 2,048-word story chapter, free to use) into a fresh output
directory: voice conditioning, every chunk through the pipeline in batches, loudness
normalisation and the book file. Reported: wall time of the whole run and of synthesis alone,
seconds of speech made (chunk audio) and of the finished book (with pauses), and the speed in
x real time (speech seconds per wall second of synthesis; above 1 is faster than real time).
Chunks failing the duration check are retried once, as in `tts narrate`, and counted.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import torch

from tts.errors import TTSError
from tts.fileio import write_text_atomic
from tts.sampling.options import PRESETS, SAMPLERS

CHAPTER = Path(__file__).resolve().parent / "chapter.txt"


def first_words(text: str, limit: int | None) -> str:
    """The text cut after the sentence that reaches `limit` words (all of it without a limit)."""
    if not limit:
        return text
    for count, match in enumerate(re.finditer(r"\S+", text), 1):
        if count >= limit and re.search(r"[.!?]['\"\u201d]?$", match.group(0)):
            return text[:match.end()] + "\n"
    return text


def run(model_dir: str | None, voice: str, text: str, preset_name: str = "fast", device: str = "cpu",
        voices_dir: str | None = None, outdir: str | None = None, fmt: str = "flac", duration_check: bool = True,
        **overrides) -> dict:
    from tts.narrate import DurationCheck, narrate
    from tts.pipeline import TextToSpeech

    start = time.perf_counter()
    tts = TextToSpeech(model_dir, device=device)
    load_seconds = time.perf_counter() - start
    with tempfile.TemporaryDirectory(prefix="narrate-bench-") as scratch:
        source = Path(scratch) / "chapter.txt"
        source.write_text(text, encoding="utf-8")
        target = Path(outdir) if outdir else Path(scratch) / "out"
        start = time.perf_counter()
        summary = narrate([source], target, voice, voices_dir=voices_dir, preset_name=preset_name,
                          overrides=overrides, fmt=fmt, seed=0, tts=tts,
                          check=DurationCheck() if duration_check else DurationCheck(0, 0), retries=1)
        wall = time.perf_counter() - start
    made = summary.progress
    speech = made.audio_seconds if made else 0.0
    synthesis = made.elapsed if made else 0.0
    return {
        "model_dir": str(model_dir) if model_dir else "(bundled default)",
        "model_id": tts.models.model_id,
        "voice": voice,
        "options": {"preset": preset_name, **{k: v for k, v in overrides.items() if v is not None}},
        "device": str(tts.device),
        "torch_threads": torch.get_num_threads(),
        "machine": f"{platform.machine()}, {platform.python_version()}, torch {torch.__version__}",
        "words": len(text.split()),
        "chunks": summary.chunks,
        "failed_chunks": len(summary.failures),
        "load_seconds": round(load_seconds, 3),
        "wall_seconds": round(wall, 3),
        "synthesis_seconds": round(synthesis, 3),
        "speech_seconds": round(speech, 3),
        "book_seconds": round(summary.rendered.book_seconds, 3) if summary.rendered else None,
        "x_real_time": round(speech / synthesis, 4) if synthesis else None,
        "x_real_time_whole_run": round(speech / wall, 4) if wall else None,
    }


def table(result: dict) -> str:
    rows = [
        ("model", f"{result['model_dir']} ({result['model_id'][:12]})"),
        ("device / threads", f"{result['device']} / {result['torch_threads']}"),
        ("options", ", ".join(f"{k}={v}" for k, v in result["options"].items())),
        ("text", f"{result['words']} words, {result['chunks']} chunks ({result['failed_chunks']} failed)"),
        ("model load", f"{result['load_seconds']:.2f} s"),
        ("wall time", f"{result['wall_seconds']:.1f} s (synthesis {result['synthesis_seconds']:.1f} s)"),
        ("speech made", f"{result['speech_seconds']:.1f} s (book with pauses: {result['book_seconds'] or 0:.1f} s)"),
        ("speed", f"{result['x_real_time']}x real time ({result['x_real_time_whole_run']}x for the whole run)"),
    ]
    width = max(len(name) for name, _ in rows)
    return "\n".join(f"{name:<{width}}  {value}" for name, value in rows)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir", default=None, help="model directory (default: the bundled model)")
    parser.add_argument("--voice", required=True)
    parser.add_argument("--voices-dir", default=None)
    parser.add_argument("--text", default=str(CHAPTER), help="text file to narrate (default: the benchmark chapter)")
    parser.add_argument("--limit-words", type=int, default=None, help="only the first N words (a quick run)")
    parser.add_argument("--preset", default="fast", choices=list(PRESETS))
    parser.add_argument("--text-batch", type=int, default=None, help="chunks sampled together by the GPT")
    parser.add_argument("--candidates", type=int, default=None)
    parser.add_argument("--diffusion-steps", type=int, default=None)
    parser.add_argument("--sampler", default=None, choices=list(SAMPLERS))
    parser.add_argument("--max-tokens", type=int, default=None, help="speech codes per chunk at most")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--format", default="flac", choices=["wav", "flac", "mp3", "m4b"])
    parser.add_argument("--no-duration-check", action="store_true",
                        help="keep every chunk whatever its length (random test models never stop)")
    parser.add_argument("--keep", default=None, help="write the output here instead of a temporary directory")
    parser.add_argument("--json", default=None, help="also write the figures to this JSON file")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        text = first_words(Path(args.text).read_text(encoding="utf-8"), args.limit_words)
        result = run(args.model_dir, args.voice, text, args.preset, args.device, args.voices_dir, args.keep,
                     args.format, not args.no_duration_check, text_batch=args.text_batch, candidates=args.candidates,
                     diffusion_steps=args.diffusion_steps, sampler=args.sampler, max_mel_tokens=args.max_tokens)
        if args.json:
            write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    except TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    return 0


if __name__ == "__main__":
    sys.exit(main())
