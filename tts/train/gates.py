"""Stage gates of the decoder half (codes -> mel -> waveform), judged on the public sentences.

Each corpus voice (the source voices, not their speed variants) reads ../shared/eval/sentences.txt
through the corpus's own processing (the renders are cached), and every stage is judged by Whisper
(WER, CER) and Resemblyzer (similarity to that voice's original renders):

- original: the teacher's audio itself;
- G0, the vocoder floor: teacher audio -> HiFi-GAN mel -> universal HiFi-GAN;
- G1, the DVAE alone: mel -> codes -> DVAE decoder (speaker vector from a corpus clip of the same
  speaker; a pitched decoder guesses the pitch from the codes) -> HiFi-GAN; for a pitched decoder
  also ``g1_true_pitch``, the same with the recording's own pitch contour (the decoder's ceiling);
  for a DVAE with residual codebooks G1 decodes every level and ``g1_first`` the first alone;
- G2, the decoder: mel -> codes -> the flow decoder (prior: the DVAE's coarse mel; conditioned on
  the codes and the speaker clip) -> HiFi-GAN.

`--vocoder` puts a hifigan component (a cheaper vocoder, `tts train vocoder`) in every stage's place of
the universal HiFi-GAN: its G0 against the universal one's is what it loses.

    python -m tts.train.gates --corpus /work/corpus --dvae runs/dvae/model.safetensors \
        [--decoder runs/decoder/model.safetensors] [--vocoder V.safetensors] [--voices joe,slt] [--first 15]
        [--sentences 15] [--out report.json]
"""

from __future__ import annotations

import argparse
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from .. import audio
from ..checkpoints import UNIVERSAL_HIFIGAN
from ..errors import TTSError
from ..evaluate import (JUDGE_SAMPLE_RATE, cosine, error_rates, load_judges, read_sentences, scoring_text,
                        voice_embedding)
from ..fileio import write_text_atomic
from ..models.dvae import pitch_from_hz
from ..pitch import f0
from .data import Corpus, crop_or_pad

log = logging.getLogger(__name__)

MEL = audio.HIFIGAN_MEL
DEFAULT_SENTENCES = Path(__file__).resolve().parents[2] / "benchmarks" / "sentences.txt"
REFERENCE_SECONDS = 3.0  # the speaker clip, as the trainers use
STAGES = ("original", "g0", "g1", "g1_first", "g1_true_pitch", "g2")


def render(voice: str, sentences: list[str], cache: Path, first: int = 0) -> list[np.ndarray]:
    """The sentences read by corpus voice `voice` (22.05 kHz), made once and cached under `cache`;
    `first` is the index of sentences[0] in the public list (the cache is keyed by that index)."""
    from ..data.corpus import Job, Speaker, make_item
    from ..data.texts import Sentence
    from ..data.voices import get_voice

    spec = get_voice(voice)
    wavs = []
    for i, text in enumerate(sentences, first):
        path = cache / "audio" / voice / f"{voice}-{i:06d}.flac"
        if not path.is_file():
            make_item(Job(f"{voice}-{i:06d}", Speaker(voice, spec), Sentence(text, "eval"), cache))
        wavs.append(audio.load_audio(path, MEL.sample_rate))
    return wavs


def reference_mel(corpus: Corpus, speaker: str) -> torch.Tensor:
    """A fixed clip of `speaker` from the corpus: normalised mel (1, C, F)."""
    pool = sorted((u for u in corpus.by_speaker.get(speaker, []) if u.duration >= REFERENCE_SECONDS),
                  key=lambda u: u.id) or sorted(corpus.by_speaker.get(speaker, []), key=lambda u: u.id)
    if not pool:
        raise TTSError(f"the corpus has no utterance of speaker {speaker}")
    frames = MEL.frames(int(REFERENCE_SECONDS * MEL.sample_rate))
    return audio.normalize_mel(torch.from_numpy(crop_or_pad(corpus.mel(pool[0]), frames, None))[None])


@dataclass
class Stages:
    """What turns a waveform into each gate's resynthesis."""

    vocoder: torch.nn.Module
    dvae: torch.nn.Module | None = None
    decoder: torch.nn.Module | None = None
    decoder_steps: int = 8

    @torch.inference_mode()
    def run(self, wav: np.ndarray, ref: torch.Tensor, generator: torch.Generator) -> dict[str, np.ndarray]:
        log_mel = audio.mel_spectrogram(torch.from_numpy(wav), MEL)  # (1, C, T)
        out = {"g0": self.vocode(log_mel)}
        if self.dvae is not None:
            mel = audio.normalize_mel(log_mel)
            speaker = self.dvae.speaker(ref) if self.dvae.conditioned else None
            if self.dvae.has_residual:  # G1 from every level; "g1_first": the first level alone
                codes, residual = self.dvae.encode_residual(mel)  # (1, T / 4), (1, levels, T / 4)
                coarse = self.dvae.decode(codes, speaker, residual=residual)
                out["g1_first"] = self.vocode(audio.denormalize_mel(self.dvae.decode(codes, speaker)))
            else:
                codes = self.dvae.encode(mel)  # (1, T / 4)
                coarse = self.dvae.decode(codes, speaker)  # (1, C, T') normalised
            out["g1"] = self.vocode(audio.denormalize_mel(coarse))
            if self.dvae.pitched:  # the decoder's ceiling: the recording's own contour instead of its guess
                hz = torch.from_numpy(f0(wav, MEL.sample_rate))[None, :coarse.shape[-1]]
                true = self.dvae.decode(codes, speaker, pitch_from_hz(hz))
                out["g1_true_pitch"] = self.vocode(audio.denormalize_mel(true))
            if self.decoder is not None:
                fine = self.decoder.generate(coarse, codes, ref, steps=self.decoder_steps, generator=generator)
                out["g2"] = self.vocode(audio.denormalize_mel(fine))
        return out

    def vocode(self, log_mel: torch.Tensor) -> np.ndarray:
        return self.vocoder(log_mel.float()).reshape(-1).numpy()


def run_gates(corpus_dir: str, dvae_path: str | None, decoder_path: str | None, voices: list[str],
              sentences: list[str], cache: Path, decoder_steps: int = 8, first: int = 0,
              vocoder: str = UNIVERSAL_HIFIGAN) -> dict:
    from ..checkpoints import load_component, load_hifigan

    corpus = Corpus(corpus_dir)
    stages = Stages(load_hifigan(vocoder), decoder_steps=decoder_steps)
    if dvae_path:
        stages.dvae = load_component(dvae_path, "dvae").eval()
    if decoder_path:
        stages.decoder = load_component(decoder_path, "flow").eval()
    judges = load_judges(threads=1)
    refs = [scoring_text(s) for s in sentences]
    report = {"sentences": len(sentences), "first": first, "dvae": dvae_path, "decoder": decoder_path,
              "decoder_steps": decoder_steps, "vocoder": vocoder, "voices": {}}
    generator = torch.Generator().manual_seed(0)
    for voice in voices:
        start = time.perf_counter()
        originals = render(voice, sentences, cache, first)
        ref = reference_mel(corpus, voice)
        to_judge = [audio.resample(w, MEL.sample_rate, JUDGE_SAMPLE_RATE) for w in originals]
        scores = Scores(judges, voice_embedding(judges.speaker, to_judge))
        for wav, wav16 in zip(originals, to_judge):
            scores.add("original", wav16)
            for stage, out in stages.run(wav, ref, generator).items():
                scores.add(stage, audio.resample(out, MEL.sample_rate, JUDGE_SAMPLE_RATE))
        row = scores.row(refs)
        report["voices"][voice] = row
        log.info("%s (%.0f s): %s", voice, time.perf_counter() - start, json.dumps(row))
    return report


class Scores:
    """What the judges hear in one voice's sentences, stage by stage: the transcripts, and the similarity
    of each rendering to the voice (`speaker`, the mean embedding of its originals)."""

    def __init__(self, judges, speaker: np.ndarray):
        self.judges, self.speaker = judges, speaker
        self.heard: dict[str, list[str]] = {}
        self.similarity: dict[str, list[float]] = {}

    def add(self, stage: str, wav16: np.ndarray) -> None:
        """One sentence's rendering by `stage`, at the judges' sample rate."""
        self.heard.setdefault(stage, []).append(scoring_text(self.judges.transcriber.transcribe(wav16)))
        self.similarity.setdefault(stage, []).append(cosine(self.judges.speaker.embed(wav16), self.speaker))

    def row(self, refs: list[str]) -> dict[str, dict[str, float]]:
        """{stage: {"wer", "cer" (%), "similarity"}} against the sentences' scoring texts."""
        row = {}
        for stage, hyps in self.heard.items():
            rates = error_rates(refs, hyps)
            row[stage] = {"wer": round(100 * rates.wer, 2), "cer": round(100 * rates.cer, 2),
                          "similarity": round(float(np.mean(self.similarity[stage])), 3)}
        return row


def table(report: dict) -> str:
    stages = [s for s in STAGES if any(s in row for row in report["voices"].values())]
    lines = ["| voice | " + " | ".join(f"{s} WER / CER / sim" for s in stages) + " |",
             "|---|" + "---|" * len(stages)]
    for voice, row in report["voices"].items():
        cells = [f"{row[s]['wer']:.1f} / {row[s]['cer']:.1f} / {row[s]['similarity']:.3f}" if s in row else ""
                 for s in stages]
        lines.append(f"| {voice} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    from ..data.voices import DEFAULT_VOICES

    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--corpus", required=True)
    parser.add_argument("--dvae")
    parser.add_argument("--decoder")
    parser.add_argument("--decoder-steps", type=int, default=8)
    parser.add_argument("--vocoder", default=UNIVERSAL_HIFIGAN,
                        help=f"a hifigan component for every stage (default: {UNIVERSAL_HIFIGAN})")
    parser.add_argument("--voices", default=",".join(DEFAULT_VOICES))
    parser.add_argument("--sentences", type=int, default=0, help="N public sentences (0: all)")
    parser.add_argument("--first", type=int, default=0, help="skip this many sentences before them")
    parser.add_argument("--sentences-file", default=str(DEFAULT_SENTENCES))
    parser.add_argument("--cache", default="runs/gates", help="where the teacher renders are kept")
    parser.add_argument("--out", help="JSON report")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    sentences = read_sentences(args.sentences_file)[args.first:]
    if args.sentences:
        sentences = sentences[:args.sentences]
    voices = [v.strip() for v in args.voices.split(",") if v.strip()]
    report = run_gates(args.corpus, args.dvae, args.decoder, voices, sentences, Path(args.cache),
                       args.decoder_steps, args.first, args.vocoder)
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")
    print(table(report))


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
