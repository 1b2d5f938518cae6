"""Does the vocoder's precision change what listeners hear? The same codes, vocoded in float32 and in bf16.

    python -m tools.vocoder_precision_check --voices joe,alpha [--model-dir DIR] [--limit 15] [--out JSON]

For each voice and each of the first `limit` public sentences, synthesises with the same seed twice
(preset fast), once per vocoder precision: the GPT, the reranking and the decoder run in float32
both times, so only the vocoder differs. Reports Whisper WER / CER and Resemblyzer similarity to the
voice's clips for each precision, and the synthesis time (one thread).
"""

from __future__ import annotations

import argparse
import json
import time

import numpy as np
import torch

from tts import audio
from tts.evaluate import (DEFAULT_SENTENCES, JUDGE_SAMPLE_RATE, cosine, error_rates, load_judges, read_sentences,
                          voice_embedding)
from tts.pipeline import TextToSpeech
from tts.sampling.options import resolve
from tts.text.scoring import scoring_text
from tts.voices import VoiceLibrary

PRECISIONS = ("fp32", "bf16")


def check(model_dir: str | None, voices: list[str], limit: int) -> dict:
    tts = TextToSpeech(model_dir)
    judges = load_judges("cpu", threads=1)
    texts = read_sentences(DEFAULT_SENTENCES)[:limit]
    references = [scoring_text(t) for t in texts]
    results = {}
    for name in voices:
        voice = VoiceLibrary().get(name)
        reference = voice_embedding(judges.speaker, voice.load_clips(JUDGE_SAMPLE_RATE))
        for precision in PRECISIONS:
            tts.vocoder_precision = precision
            hypotheses, similarities, seconds = [], [], 0.0
            for i, text in enumerate(texts):
                start = time.perf_counter()
                wav = tts.synthesize(text, voice, resolve("fast", tts.models.card, seed=i))
                seconds += time.perf_counter() - start
                heard = audio.resample(wav, tts.sample_rate, JUDGE_SAMPLE_RATE)
                hypotheses.append(scoring_text(judges.transcriber.transcribe(heard)))
                similarities.append(cosine(judges.speaker.embed(heard), reference))
            rates = error_rates(references, hypotheses)
            results[f"{name}/{precision}"] = {
                "wer": round(100 * rates.wer, 1), "cer": round(100 * rates.cer, 1),
                "similarity": round(float(np.mean(similarities)), 3), "synthesis_seconds": round(seconds, 1),
                "hypotheses": hypotheses,
            }
            r = results[f"{name}/{precision}"]
            print(f"{name:12s} {precision}  WER {r['wer']:5.1f}  CER {r['cer']:5.1f}  similarity {r['similarity']:.3f}"
                  f"  synthesis {r['synthesis_seconds']:.1f} s", flush=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--voices", required=True, help="comma-separated voice names")
    parser.add_argument("--model-dir", default=None)
    parser.add_argument("--limit", type=int, default=15)
    parser.add_argument("--out", default=None, help="write the figures to this JSON file")
    args = parser.parse_args()
    torch.set_num_threads(1)
    results = check(args.model_dir, args.voices.split(","), args.limit)
    if args.out:
        with open(args.out, "w", encoding="utf-8") as f:
            json.dump(results, f, indent=1)


if __name__ == "__main__":
    main()
