"""Throughput and latency of `tts serve` under concurrent load, dynamic batching on and off, in one run.

    python benchmarks/serve.py [--model-dir DIR] [--voice joe] [--requests 32] [--concurrency 1,4,16]
        [--preset ultra_fast] [--candidates 2] [--diffusion-steps 4] [--max-tokens N] [--device cpu]
        [--json out.json]

The model is loaded once and served by two real uvicorns on 127.0.0.1 (free ports): batching off
(--max-batch 1) and on (--max-batch 16, a 50 ms window, all of a batch's candidates in one GPT call). At
each concurrency C, one after the other (so a busy machine weighs on both alike), C clients send
`--requests` requests in all, one sentence of
benchmarks/sentences.txt each, as pcm, each client waiting for its answer before the next; latency is from
sending a request to its last byte. Reported: requests per second, p50 and p95 latency, audio seconds per
second, and the mean number of requests per GPT batch (from the server's metrics).

Without --model-dir the default model (checkpoints/default) is used when it exists; otherwise a tiny random
model (tests/tiny.py), and the output says so: its figures show what batching does to the serving
machinery, not how fast a trained model serves. `--random default-architecture` builds a model of the
default model's sizes (configs/gpt.toml, configs/diffusion.toml, the universal HiFi-GAN) with random
weights: each step costs what a trained model's does, though a random GPT never stops (so --max-tokens
sets every chunk's length).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import math
import platform
import re
import sys
import tempfile
import threading
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import httpx
import torch

from tts.errors import TTSError
from tts.fileio import write_text_atomic

SENTENCES = Path(__file__).resolve().parent / "sentences.txt"
MODES = {"off": {"max_batch": 1, "batch_window_ms": 0.0}, "on": {"max_batch": 16, "batch_window_ms": 50.0}}
WARMUP_REQUESTS = 2
STAGE_REPEATS = 3


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered) + 0.5) - 1))]


def load(url: str, texts: list[str], voice: str, concurrency: int, requests: int) -> dict:
    """`concurrency` closed-loop clients sending `requests` requests in all."""
    latencies: list[float] = []
    audio_bytes = [0]
    failures: list[str] = []
    lock = threading.Lock()
    counter = iter(range(requests))

    def client() -> None:
        with httpx.Client(timeout=600) as http:
            while True:
                with lock:
                    index = next(counter, None)
                if index is None:
                    return
                body = {"model": "tts-1", "input": texts[index % len(texts)], "voice": voice, "response_format": "pcm"}
                start = time.perf_counter()
                response = http.post(url + "/v1/audio/speech", json=body)
                elapsed = time.perf_counter() - start
                with lock:
                    if response.status_code != 200:
                        failures.append(f"{response.status_code}: {response.text[:200]}")
                    else:
                        latencies.append(elapsed)
                        audio_bytes[0] += len(response.content)

    threads = [threading.Thread(target=client) for _ in range(concurrency)]
    start = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    wall = time.perf_counter() - start
    if failures:
        raise TTSError(f"{len(failures)} of {requests} requests failed, first: {failures[0]}")
    return {"concurrency": concurrency, "requests": requests, "wall_s": round(wall, 3),
            "requests_per_s": round(requests / wall, 3), "p50_s": round(percentile(latencies, 50), 3),
            "p95_s": round(percentile(latencies, 95), 3),
            "audio_s_per_s": round(audio_bytes[0] / 2 / 24000 / wall, 3)}


def batch_sizes(metrics_text: str) -> tuple[float, float]:
    """(sum, count) of the server's requests-per-GPT-batch histogram."""
    found = {m.group(1): float(m.group(2)) for m in re.finditer(r"^tts_batch_requests_(sum|count) (\S+)$",
                                                                 metrics_text, re.M)}
    return found.get("sum", 0.0), found.get("count", 0.0)


def make_default_architecture_dir(path: Path, seed: int = 0) -> Path:
    """A model directory laid out as `tts export-model` writes ours: a phoneme GPT and a code-conditioned
    diffusion decoder of the sizes in configs/, random weights, and the universal HiFi-GAN vocoder."""
    import tomllib

    from tts import audio
    from tts.checkpoints import UNIVERSAL_HIFIGAN, ModelCard, save_model_dir
    from tts.models.diffusion import DiffusionConfig, DiffusionDecoder
    from tts.models.gpt import GPTConfig, SpeechGPT
    from tts.text.phonemes import PhonemeTokenizer

    configs = Path(__file__).resolve().parent.parent / "configs"
    gpt_model = tomllib.loads((configs / "gpt.toml").read_text(encoding="utf-8"))["model"]
    diffusion_model = tomllib.loads((configs / "diffusion.toml").read_text(encoding="utf-8"))["model"]
    codes = 1024  # configs/dvae.toml's codebook
    tokenizer = PhonemeTokenizer()
    torch.manual_seed(seed)
    gpt = SpeechGPT(GPTConfig(**{k: v for k, v in gpt_model.items() if k in GPTConfig.__dataclass_fields__},
                              number_text_tokens=tokenizer.vocab_size, stop_text_token=tokenizer.stop_id,
                              number_mel_codes=codes + 2, mel_channels=audio.HIFIGAN_MEL.n_mels,
                              samples_per_code=audio.HOP_LENGTH * 4))
    diffusion = DiffusionDecoder(DiffusionConfig(
        **{k: v for k, v in diffusion_model.items() if k in DiffusionConfig.__dataclass_fields__},
        in_channels=audio.HIFIGAN_MEL.n_mels, out_channels=2 * audio.HIFIGAN_MEL.n_mels,
        in_latent_channels=gpt.config.model_dim, in_tokens=codes + 1))
    cond_samples = 3 * audio.HIFIGAN_SAMPLE_RATE
    card = ModelCard(name="random-default-architecture", tokenizer="phonemes", phonemes=tokenizer.to_dict(),
                     cond_mel=audio.HIFIGAN_MEL.name, cond_samples=cond_samples, cond_norm="range",
                     diffusion_mel=audio.HIFIGAN_MEL.name, diffusion_cond_samples=cond_samples,
                     diffusion_input="codes", silence_code=0, end_codes=(0, 0, 0))
    return save_model_dir(path, card, int8=False, gpt=gpt, diffusion=diffusion, vocoder=UNIVERSAL_HIFIGAN)


def measure_gpt_stage(engine, voice_name: str, texts: list[str], batch: int) -> dict:
    """Seconds per text of the GPT stage alone (`TextToSpeech.sample_candidates`) for 1 text and for `batch`
    texts sampled together: what batching saves where it applies (diffusion and vocoding are per chunk)."""
    import dataclasses

    from tts.voices import VoiceLibrary

    tts = engine.tts
    cond = tts.conditioning(VoiceLibrary().get(voice_name))
    options = dataclasses.replace(engine.options, batch_size=engine.options.candidates * batch)  # one GPT call
    out = {}
    tts.sample_candidates(texts[:1], [cond], options, tts.make_generator(options))  # warm-up
    for n in (1, batch):
        group = [texts[i % len(texts)] for i in range(n)]
        best = math.inf
        for _ in range(STAGE_REPEATS):  # the least disturbed run
            start = time.perf_counter()
            tts.sample_candidates(group, [cond] * n, options, tts.make_generator(options))
            best = min(best, time.perf_counter() - start)
        out[f"s_per_text_{n}"] = round(best / n, 4)
    return out


def run(model_dir: str | None, voice: str, requests: int, levels: list[int], preset_name: str, device: str,
        random_model: str | None = None, rounds: int = 1, **overrides) -> dict:
    from tts.pipeline import DEFAULT_MODEL_DIR
    from tts.serve.app import create_app, load_engine
    from tts.serve.config import ServerConfig
    from tts.serve.engine import Engine
    from tts.serve.server import running

    scratch = None
    if model_dir is None and random_model is None and (DEFAULT_MODEL_DIR / "model.json").is_file():
        model, model_dir = "default model (checkpoints/default)", str(DEFAULT_MODEL_DIR)
    elif model_dir is None:
        scratch = tempfile.TemporaryDirectory(prefix="serve-bench-")
        if random_model == "default-architecture":
            model_dir = str(make_default_architecture_dir(Path(scratch.name) / "default-architecture"))
            model = ("the default model's architecture (configs/gpt.toml, configs/diffusion.toml, universal HiFi-GAN) "
                     "with random weights: a trained model's costs per step, not its speech")
        else:
            from tests.tiny import make_tiny_tortoise_dir

            model_dir = str(make_tiny_tortoise_dir(Path(scratch.name) / "tiny"))
            model = "tiny random model (tests/tiny.py): figures of the serving machinery, not of a trained model"
        if not (DEFAULT_MODEL_DIR / "model.json").is_file():
            model += "; no default model exists yet"
    else:
        model = model_dir
    print(f"model: {model}", file=sys.stderr)
    base = ServerConfig(model_dir=model_dir, device=device, preset=preset_name, max_queue=max(64, 2 * max(levels)),
                        **{k: v for k, v in overrides.items() if v is not None})
    start = time.perf_counter()
    engine = load_engine(base)
    load_seconds = time.perf_counter() - start
    texts = [line.strip() for line in SENTENCES.read_text(encoding="utf-8").splitlines() if line.strip()]
    gpt_stage = measure_gpt_stage(engine, voice, texts, MODES["on"]["max_batch"])
    print(f"GPT stage alone: {gpt_stage}", file=sys.stderr)
    results: dict[str, list[dict]] = {mode: [] for mode in MODES}
    with contextlib.ExitStack() as servers:
        urls = {}
        for mode, settings in MODES.items():  # both up at once; only one is sent requests at a time
            config = base.replace(**settings)  # a whole batch in one GPT call (the server's default)
            mode_engine = Engine(engine.tts, config.options(engine.tts.models.card.presets))
            urls[mode] = servers.enter_context(running(create_app(mode_engine, config)))
            load(urls[mode], texts, voice, 1, WARMUP_REQUESTS)  # conditioning latents, first-call costs
        for level in levels:  # the two modes side by side at each level, so load on the machine hits both alike
            tries: dict[str, list[dict]] = {mode: [] for mode in MODES}
            for _ in range(rounds):
                for mode, url in urls.items():
                    before = batch_sizes(httpx.get(url + "/metrics").text)
                    figures = load(url, texts, voice, level, requests)
                    after = batch_sizes(httpx.get(url + "/metrics").text)
                    batches = after[1] - before[1]
                    figures["requests_per_batch"] = round((after[0] - before[0]) / batches, 2) if batches else None
                    tries[mode].append(figures)
                    print(f"batching {mode:>3}, concurrency {level:>2}: {figures['requests_per_s']:.2f} req/s, "
                          f"p50 {figures['p50_s']:.2f} s, p95 {figures['p95_s']:.2f} s, "
                          f"{figures['requests_per_batch']} requests per batch", file=sys.stderr)
            for mode, measured in tries.items():  # the least disturbed round: other work only slows a round down
                results[mode].append(max(measured, key=lambda f: f["requests_per_s"]))
    if scratch is not None:
        scratch.cleanup()
    options = engine.options
    return {
        "model": model, "device": str(engine.tts.device), "torch_threads": torch.get_num_threads(),
        "cpu": platform.processor() or platform.machine(), "load_seconds": round(load_seconds, 2),
        "options": {"preset": preset_name, "candidates": options.candidates, "diffusion_steps": options.diffusion_steps,
                    "max_mel_tokens": options.max_mel_tokens},
        "requests_per_level": requests, "rounds": rounds, "gpt_stage": gpt_stage, "results": results,
    }


def table(report: dict) -> str:
    lines = ["| concurrency | batching | requests/s | p50 latency | p95 latency | requests per GPT batch |",
             "|---|---|---|---|---|---|"]
    off = {r["concurrency"]: r for r in report["results"]["off"]}
    for on in report["results"]["on"]:
        level = on["concurrency"]
        for mode, figures in (("off", off[level]), ("on", on)):
            gain = f" (x{on['requests_per_s'] / off[level]['requests_per_s']:.2f})" if mode == "on" else ""
            lines.append(f"| {level} | {mode} | {figures['requests_per_s']:.2f}{gain} | {figures['p50_s']:.2f} s | "
                         f"{figures['p95_s']:.2f} s | {figures['requests_per_batch']} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> dict:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--random", dest="random_model", choices=["tiny", "default-architecture"], default=None,
                        help="a model with random weights instead of the default model (default: tiny when there "
                             "is no default model)")
    parser.add_argument("--voice", default="joe")
    parser.add_argument("--requests", type=int, default=32, help="requests at each concurrency")
    parser.add_argument("--concurrency", default="1,4,16")
    parser.add_argument("--rounds", type=int, default=1,
                        help="measure each pair this many times (alternating) and keep each mode's fastest round")
    parser.add_argument("--preset", default="ultra_fast")
    parser.add_argument("--candidates", type=int, default=2)
    parser.add_argument("--diffusion-steps", type=int, default=4)
    parser.add_argument("--max-tokens", type=int, default=None,
                        help="speech codes per chunk at most (default: the preset's; a random model never stops)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="also write the figures to this file")
    args = parser.parse_args(argv)
    levels = [int(x) for x in args.concurrency.split(",") if x.strip()]
    try:
        report = run(args.model_dir, args.voice, args.requests, levels, args.preset, args.device, args.random_model,
                     rounds=args.rounds, candidates=args.candidates, diffusion_steps=args.diffusion_steps,
                     max_tokens=args.max_tokens)
    except TTSError as exc:
        sys.exit(f"error: {exc}")
    print(f"{report['model']}; {report['device']}, {report['torch_threads']} torch threads; "
          f"{report['options']}; {args.requests} requests at each concurrency, best of {args.rounds} round(s)")
    stage = report["gpt_stage"]
    batch = MODES["on"]["max_batch"]
    print(f"GPT stage alone: {stage['s_per_text_1']:.3f} s per text alone, {stage[f's_per_text_{batch}']:.3f} s per "
          f"text with {batch} together (x{stage['s_per_text_1'] / stage[f's_per_text_{batch}']:.2f})")
    print(table(report))
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return report


if __name__ == "__main__":
    main()
