"""`tts reconstruct` judged as the held-out evaluation of issue 10 judges it: corpus voices read public
sentences (by default the last 15, which the G1 gates do not use), each recording goes through
TextToSpeech.reconstruct (its own voice, as the CLI does without --voice), and Whisper and Resemblyzer
judge the original and the reconstruction. The bars: WER within 3 points of the originals', and
similarity >= 0.85 to the voice's originals.

    python -m tools.reconstruct_check [--model-dir DIR] [--voices joe,ked] [--skip 15] [--count 15]
        [--cache /work/gates] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from tts import audio
from tts.errors import TTSError
from tts.evaluate import JUDGE_SAMPLE_RATE, load_judges, read_sentences, scoring_text, voice_embedding
from tts.fileio import write_text_atomic
from tts.train.gates import DEFAULT_SENTENCES, MEL, Scores, render

WER_SLACK, MIN_SIMILARITY = 3.0, 0.85  # the held-out evaluation's bars


def main() -> None:
    from tts.data.voices import DEFAULT_VOICES
    from tts.pipeline import TextToSpeech

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-dir")
    parser.add_argument("--voices", default=",".join(DEFAULT_VOICES))
    parser.add_argument("--skip", type=int, default=15, help="leave out the first N public sentences")
    parser.add_argument("--count", type=int, default=15)
    parser.add_argument("--cache", default="runs/gates", help="where the teacher renders are kept")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    sentences = read_sentences(DEFAULT_SENTENCES)[args.skip:args.skip + args.count]
    refs = [scoring_text(s) for s in sentences]
    tts, judges = TextToSpeech(args.model_dir), load_judges(threads=args.threads)
    report = {"model_dir": args.model_dir, "sentences": [args.skip, args.skip + len(sentences)], "voices": {}}
    for voice in args.voices.split(","):
        originals = render(voice, sentences, Path(args.cache), args.skip)  # 22.05 kHz
        judged = [audio.resample(w, MEL.sample_rate, JUDGE_SAMPLE_RATE) for w in originals]
        scores = Scores(judges, voice_embedding(judges.speaker, judged))
        for wav, wav16 in zip(originals, judged):
            out = tts.reconstruct(audio.resample(wav, MEL.sample_rate, tts.sample_rate))
            scores.add("original", wav16)
            scores.add("reconstruct", audio.resample(out, tts.sample_rate, JUDGE_SAMPLE_RATE))
        row = scores.row(refs)
        row["passes"] = (row["reconstruct"]["wer"] <= row["original"]["wer"] + WER_SLACK
                         and row["reconstruct"]["similarity"] >= MIN_SIMILARITY)
        report["voices"][voice] = row
        print(voice, json.dumps(row), flush=True)
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
