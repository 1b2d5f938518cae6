"""Fine-tuning measured: for each voice folder, speech zero-shot and after `tts voices finetune`, judged
as `tts eval` judges (Resemblyzer similarity to the voice's clips; WER by faster-whisper tiny.en when
it is installed), and the time fine-tuning takes.

    python benchmarks/finetune.py --model-dir DIR VOICE_FOLDER [VOICE_FOLDER ...]
        [--transcripts-dir DIR] [--sentences FILE] [--limit 10] [--steps 300] [--minutes 8] [--rank 4]
        [--preset fast] [--threads 2] [--gpt] [--no-heldout-wer] [--json report.json]

A voice folder holds the clips of one speaker (the name is the folder's); `--transcripts-dir` may hold
NAME.txt with their words (the `--transcripts` format), else the speech recogniser writes them, as the
command does. Nothing is written to the voice folders or to the user's own data: the adapters go to a
scratch directory that is removed at the end. The fine-tuning time is the whole of `finetune()`
(checks, codes, judging the held-out clip, training, writing), plus transcribing when there is no
transcript file. The bars (issue 13): fine-tuning <= 10 minutes on a 2-core CPU with 3 clips of
10-20 s in total; similarity >= 0.85; WER within 5 points of zero-shot.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
import time
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make the repository importable
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np
import torch

from tts.errors import TTSError
from tts.fileio import write_text_atomic

BARS = {"minutes": 10.0, "similarity": 0.85, "wer_points": 5.0}


class NoTranscriber:
    """Stands in when faster-whisper is not installed: no WER is reported."""

    name = "none (faster-whisper is not installed)"

    def transcribe(self, wav: np.ndarray) -> str:
        return ""


def judges():
    """(tts.evaluate.Judges, whether WER is measured): Resemblyzer is needed, Whisper is optional."""
    from tts.evaluate import Judges
    from tts.finetune.judges import load_recogniser, load_speaker_judge

    speaker = load_speaker_judge()
    if speaker is None:
        raise TTSError("the benchmark needs the speaker judge: pip install .[eval]")
    recogniser = load_recogniser()
    return Judges(recogniser or NoTranscriber(), speaker), recogniser is not None


def figures(report: dict, voice: str, wer: bool) -> dict:
    summary = report["voices"][voice]["summary"]
    return {"similarity": summary.get("similarity_mean"), "wer": summary.get("wer") if wer else None,
            "failed": summary.get("failed"), "real_time_factor": summary.get("real_time_factor")}


def measure_voice(tts, voice, texts, options, judging, with_wer: bool, transcripts: Path | None,
                  config, recogniser, say, heldout_wer: bool = True) -> dict:
    from tts.evaluate import evaluate
    from tts.finetune.clips import read_transcripts, transcribe, voice_clips
    from tts.finetune.run import finetune

    clips = voice_clips(voice, tts.sample_rate)
    seconds = sum(c.seconds(tts.sample_rate) for c in clips)
    say(f"{voice.name}: {len(clips)} clips, {seconds:.1f} s; zero-shot ...")
    store = tts.adapters
    tts.adapters = None  # zero-shot
    zero = evaluate(tts, [voice], texts, options, judging)
    tts.adapters = store
    say(f"{voice.name}: fine-tuning ...")
    start = time.perf_counter()
    texts_of_clips, source = None, "none"
    if tts.models.gpt is not None:
        if transcripts is not None and transcripts.is_file():
            texts_of_clips, source = read_transcripts(transcripts, voice), "file"
        elif recogniser is not None:
            texts_of_clips, source = transcribe(voice, recogniser), "recogniser"
    result = finetune(tts, voice, config, texts=texts_of_clips, transcribed=source == "recogniser",
                      store=store, judge=judging.speaker, recogniser=recogniser if heldout_wer else None, say=say)
    finetune_seconds = time.perf_counter() - start
    say(f"{voice.name}: {result.reason}")
    tuned = evaluate(tts, [voice], texts, options, judging) if result.kept else zero
    return {
        "voice": voice.name, "clips": len(clips), "clip_seconds": round(seconds, 2), "texts": source,
        "finetune_seconds": round(finetune_seconds, 1), "train_seconds": round(result.train_seconds, 1),
        "steps": result.steps, "kept": result.kept, "parts": result.parts, "reason": result.reason,
        "heldout": {"clip": result.heldout, "before": result.before, "after": result.after},
        "zero_shot": figures(zero, voice.name, with_wer), "fine_tuned": figures(tuned, voice.name, with_wer),
    }


def table(rows: list[dict]) -> str:
    def num(value, fmt):
        return "-" if value is None else format(value, fmt)

    lines = ["| voice | clips | s | fine-tune min | steps | kept | sim zero-shot | sim tuned | WER zero-shot | "
             "WER tuned |", "|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        z, t = r["zero_shot"], r["fine_tuned"]
        lines.append(f"| {r['voice']} | {r['clips']} | {r['clip_seconds']:.1f} | {r['finetune_seconds'] / 60:.1f} | "
                     f"{r['steps']} | {'yes' if r['kept'] else 'no'} | {num(z['similarity'], '.3f')} | "
                     f"{num(t['similarity'], '.3f')} | {num(z['wer'] and 100 * z['wer'], '.1f')} | "
                     f"{num(t['wer'] and 100 * t['wer'], '.1f')} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("voices", nargs="+", type=Path, help="voice folders (one speaker's clips each)")
    parser.add_argument("--model-dir", required=True)
    parser.add_argument("--transcripts-dir", type=Path, default=None, help="NAME.txt per voice (else: recogniser)")
    parser.add_argument("--sentences", default=None, help="one sentence a line (default: the public set)")
    parser.add_argument("--limit", type=int, default=10, help="the first N sentences")
    parser.add_argument("--steps", type=int, default=None)
    parser.add_argument("--minutes", type=float, default=None)
    parser.add_argument("--rank", type=int, default=None, help="of the decoder updates (0: vectors only)")
    parser.add_argument("--gpt", action="store_true", help="also tune the GPT's voice latent (as `finetune --gpt`)")
    parser.add_argument("--no-heldout-wer", action="store_true",
                        help="keep or drop the tuning on the held-out similarity alone, not its WER")
    parser.add_argument("--preset", default="fast")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's choice)")
    parser.add_argument("--json", type=Path, default=None, help="write the report here")
    args = parser.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)

    from tts.evaluate import DEFAULT_SENTENCES, read_sentences
    from tts.finetune.config import FinetuneConfig
    from tts.pipeline import TextToSpeech
    from tts.sampling.options import resolve
    from tts.voices import VoiceLibrary

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        texts = read_sentences(args.sentences or DEFAULT_SENTENCES)[:args.limit]
        config = FinetuneConfig(**{k: v for k, v in (("steps", args.steps), ("minutes", args.minutes),
                                                       ("rank", args.rank), ("gpt", True if args.gpt else None))
                                   if v is not None}).validate()
        judging, with_wer = judges()
        recogniser = judging.transcriber if with_wer else None
        rows = []
        with tempfile.TemporaryDirectory(prefix="tts-finetune-bench-") as scratch:
            voices_dir = Path(scratch) / "voices"
            voices_dir.mkdir()
            for folder in args.voices:
                if not folder.is_dir():
                    raise TTSError(f"voice folder {folder} does not exist")
                (voices_dir / folder.name).symlink_to(folder.resolve(), target_is_directory=True)
            library = VoiceLibrary(voices_dir, shipped_dir=Path(scratch) / "none")
            tts = TextToSpeech(args.model_dir, cache=Path(scratch) / "cache", adapters=Path(scratch) / "adapters")
            options = resolve(args.preset, tts.models.card, seed=args.seed)
            for folder in args.voices:
                transcripts = args.transcripts_dir / f"{folder.name}.txt" if args.transcripts_dir else None
                rows.append(measure_voice(tts, library.get(folder.name), texts, options, judging, with_wer,
                                          transcripts, config, recogniser, say, not args.no_heldout_wer))
    except TTSError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    report = {"model_dir": str(args.model_dir), "model_id": tts.models.model_id, "sentences": len(texts),
              "preset": args.preset, "seed": args.seed, "torch_threads": torch.get_num_threads(),
              "config": dataclasses.asdict(config), "judges": {"speaker": judging.speaker.name,
                                                              "transcriber": judging.transcriber.name},
              "bars": BARS, "voices": rows}
    print(table(rows))
    if args.json:
        write_text_atomic(args.json, json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
