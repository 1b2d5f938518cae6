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

    python benchmarks/narrate.py --voice NAME --model-dir DIR --ray local:1 --ray local:2 [--ray HOST:PORT]

adds one run per --ray cluster (a fresh output directory each; local:N starts and stops a Ray cluster
of N workers on this machine) beside the single-process run: the whole run's wall time (cluster
start and model loading in the workers included), the speed, the workers' busy time and the
driver's time per chunk (fetching a chunk's audio from the object store, writing its file, its
loudness and its manifest row). From those it estimates a cluster of K GPUs, one worker each:
K x the speed of one uncontended worker (the --ray run with the fewest workers), until the driver,
which writes every chunk, is the limit: audio seconds per chunk / driver seconds per chunk.
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


def run_on_ray(model_dir: str, voice: str, text: str, cluster: str, preset_name: str = "fast",
               device: str | None = None, voices_dir: str | None = None, fmt: str = "flac",
               duration_check: bool = True, cpus_per_worker: float = 1.0, **overrides) -> dict:
    """One narration of `text` with its chunks made on the Ray cluster `cluster` (see the module docstring)."""
    from tts.narrate import DurationCheck, narrate_books
    from tts.narrate.cluster import ClusterSpec

    spec = ClusterSpec.parse(cluster, cpus_per_worker)
    with tempfile.TemporaryDirectory(prefix="narrate-bench-ray-") as scratch:
        source = Path(scratch) / "chapter.txt"
        source.write_text(text, encoding="utf-8")
        start = time.perf_counter()
        (summary,) = narrate_books([([source], Path(scratch) / "out")], voice, model_dir=model_dir,
                                   device=device or "auto", voices_dir=voices_dir, preset_name=preset_name,
                                   overrides=overrides, fmt=fmt, seed=0, cluster=spec, retries=1,
                                   check=DurationCheck() if duration_check else DurationCheck(0, 0))
        wall = time.perf_counter() - start
    made, timings = summary.progress, summary.timings
    speech = made.audio_seconds if made else 0.0
    chunks = max(timings.get("chunks", 0), 1)
    return {
        "cluster": cluster,
        "workers": spec.local,
        "chunks": summary.chunks,
        "failed_chunks": len(summary.failures),
        "wall_seconds": round(wall, 3),
        "connect_seconds": round(timings.get("connect", 0.0), 3),
        "worker_startup_seconds": round(timings.get("startup") or 0.0, 3),
        "synthesis_seconds": round(made.elapsed, 3) if made else 0.0,
        "speech_seconds": round(speech, 3),
        "x_real_time": round(speech / made.elapsed, 4) if made and made.elapsed else None,
        "x_real_time_after_startup": round(speech / (made.elapsed - (timings.get("startup") or 0.0)), 4)
        if made and made.elapsed > (timings.get("startup") or 0.0) else None,
        "x_real_time_whole_run": round(speech / wall, 4) if wall else None,
        "worker_busy_seconds": round(timings.get("worker", 0.0), 3),
        "x_real_time_per_worker": round(speech / timings["worker"], 4) if timings.get("worker") else None,
        "driver_seconds_per_chunk": round(timings.get("driver", 0.0) / chunks, 5),
        "speech_seconds_per_chunk": round(speech / chunks, 4),
        "workers_lost": timings.get("lost", 0),
    }


def scaling(ray_results: list[dict], sizes=(1, 2, 4, 8, 16, 32, 64, 128)) -> dict:
    """Estimated x real time of a cluster of K one-worker GPUs: K times the uncontended worker's speed, at
    most what one driver can write (speech per chunk / driver seconds per chunk)."""
    usable = [r for r in ray_results if r["x_real_time_per_worker"] and r["driver_seconds_per_chunk"]]
    if not usable:
        return {}
    base = min(usable, key=lambda r: r["workers"] or 1 << 30)
    per_worker = base["x_real_time_per_worker"]
    driver = max(r["driver_seconds_per_chunk"] for r in usable)  # the most a chunk cost the driver
    ceiling = base["speech_seconds_per_chunk"] / driver
    return {"from": base["cluster"], "x_real_time_per_worker": per_worker, "driver_seconds_per_chunk": driver,
            "driver_ceiling_x_real_time": round(ceiling, 1), "workers_to_saturate_driver": round(ceiling / per_worker, 1),
            "estimate": {k: round(min(k * per_worker, ceiling), 2) for k in sizes}}


def ray_table(single: dict, ray_results: list[dict], estimate: dict) -> str:
    lines = ["", "| run | chunks | wall time (whole run) | worker start | speed (x real time) | after start | "
                 "per worker busy | driver per chunk |", "|---|---|---|---|---|---|---|---|",
             f"| single process | {single['chunks']} | {single['wall_seconds'] + single['load_seconds']:.1f} s "
             f"(model load {single['load_seconds']:.1f} s) | | {single['x_real_time']} | | | |"]
    for r in ray_results:
        lines.append(f"| --ray {r['cluster']} | {r['chunks']} | {r['wall_seconds']:.1f} s "
                     f"(cluster {r['connect_seconds']:.1f} s) | {r['worker_startup_seconds']:.1f} s | "
                     f"{r['x_real_time']} | {r['x_real_time_after_startup']} | {r['x_real_time_per_worker']} | "
                     f"{r['driver_seconds_per_chunk'] * 1000:.1f} ms |")
    if estimate:
        lines += ["", f"estimated cluster of K GPUs (one worker each; per-worker speed from --ray {estimate['from']}: "
                      f"{estimate['x_real_time_per_worker']}x; the driver writes at most "
                      f"{estimate['driver_ceiling_x_real_time']}x, reached at K = {estimate['workers_to_saturate_driver']}):",
                  "| K | " + " | ".join(str(k) for k in estimate["estimate"]) + " |",
                  "|---|" + "---|" * len(estimate["estimate"]),
                  "| x real time | " + " | ".join(str(v) for v in estimate["estimate"].values()) + " |"]
    return "\n".join(lines)


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
    parser.add_argument("--ray", action="append", default=[], metavar="CLUSTER",
                        help="also narrate on this Ray cluster (local:N, auto, HOST:PORT); repeatable")
    parser.add_argument("--ray-cpus-per-worker", type=float, default=1.0)
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    try:
        text = first_words(Path(args.text).read_text(encoding="utf-8"), args.limit_words)
        overrides = dict(text_batch=args.text_batch, candidates=args.candidates, diffusion_steps=args.diffusion_steps,
                         sampler=args.sampler, max_mel_tokens=args.max_tokens)
        result = run(args.model_dir, args.voice, text, args.preset, args.device, args.voices_dir, args.keep,
                     args.format, not args.no_duration_check, **overrides)
        if args.ray:
            result["ray"] = [run_on_ray(args.model_dir, args.voice, text, cluster, args.preset,
                                        None if args.device == "cpu" else args.device, args.voices_dir, args.format,
                                        not args.no_duration_check, args.ray_cpus_per_worker, **overrides)
                             for cluster in args.ray]
            result["ray_scaling"] = scaling(result["ray"])
        if args.json:
            write_text_atomic(args.json, json.dumps(result, indent=2) + "\n")
    except TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except OSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(table(result))
    if args.ray:
        print(ray_table(result, result["ray"], result["ray_scaling"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
