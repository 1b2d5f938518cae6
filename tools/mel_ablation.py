"""Which detail of a mel does the recogniser need? Take each voice's TRUE mel of the public sentences,
remove one kind of detail, vocode it (universal HiFi-GAN, or `--vocoder`) and print Whisper WER %.

    python -m tools.mel_ablation VOICE[,VOICE...] [--ablations 1:80,4:80,1:20,4:20] [--cache DIR]
        [--sentences N] [--dvae D.safetensors --corpus DIR] [--vocoder V.safetensors]

An ablation `N:K`:

- N: the mel averaged over blocks of N frames and linearly interpolated back (the DVAE's codes are
  one per 4 frames, so N = 4 is an ideal decoder that knows each code's mean frame and nothing finer);
- K: only the first K cosine coefficients over the 80 bins kept (the spectral envelope; K = 80 keeps
  everything, K = 20 removes the ripple of the pitch harmonics).

`1:80` is G0. With `--dvae` the DVAE's own decoding (G1) and its squared error against the true log
mel are printed beside the ablations' errors, to compare what the decoder loses with what each
ablation loses (a DVAE with residual levels decodes its first level alone, as `tts speak` does).
`--transcripts` also prints each misheard sentence with what was heard.
"""

from __future__ import annotations

import argparse
import math
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from tts import audio
from tts.checkpoints import UNIVERSAL_HIFIGAN, load_hifigan
from tts.errors import TTSError
from tts.evaluate import JUDGE_SAMPLE_RATE, error_rates, load_judges, read_sentences, scoring_text
from tts.train.gates import DEFAULT_SENTENCES, MEL, render


def dct_basis(channels: int, keep: int) -> torch.Tensor:
    """The first `keep` rows of the orthonormal DCT-II over `channels` mel bins: (keep, channels)."""
    n = torch.arange(channels, dtype=torch.float64)
    k = torch.arange(keep, dtype=torch.float64)[:, None]
    basis = torch.cos(math.pi * (n + 0.5) * k / channels) * math.sqrt(2 / channels)
    basis[0] /= math.sqrt(2)
    return basis.float()


def parse_ablation(text: str) -> tuple[int, int]:
    block, _, keep = text.partition(":")
    try:
        n, k = int(block), int(keep or MEL.n_mels)
    except ValueError:
        n, k = 0, 0
    if n < 1 or not 1 <= k <= MEL.n_mels:
        raise SystemExit(f"error: ablation {text!r}: blocks of at least 1 frame, 1 .. {MEL.n_mels} coefficients")
    return n, k


def ablate(log_mel: torch.Tensor, block: int, keep: int) -> torch.Tensor:
    """(1, C, T) log mel -> the same with detail finer than `block` frames and `keep` coefficients removed."""
    frames = log_mel.shape[-1]
    out = log_mel
    if block > 1:
        means = F.avg_pool1d(F.pad(out, (0, (-frames) % block), mode="replicate"), block)  # (1, C, T / block)
        out = F.interpolate(means, scale_factor=block, mode="linear", align_corners=False)[..., :frames]
    if keep < log_mel.shape[1]:
        basis = dct_basis(log_mel.shape[1], keep)  # (K, C)
        out = torch.einsum("kc,kt->ct", basis, torch.einsum("kc,ct->kt", basis, out[0]))[None]
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("voices")
    parser.add_argument("--ablations", default="1:80,4:80,1:20,4:20", help='"" for none (G1 alone)')
    parser.add_argument("--cache", default="/work/gates")
    parser.add_argument("--sentences", type=int, default=30)
    parser.add_argument("--dvae", help="also decode each mel through this DVAE (G1)")
    parser.add_argument("--corpus", default="/work/corpus", help="the speaker clip for --dvae's decoder")
    parser.add_argument("--transcripts", action="store_true", help="print the misheard sentences")
    parser.add_argument("--vocoder", default=UNIVERSAL_HIFIGAN, help="a hifigan component instead of the universal one")
    args = parser.parse_args()
    ablations = [parse_ablation(a) for a in args.ablations.split(",") if a]  # "" : G1 alone
    torch.set_num_threads(1)
    vocoder, judges = load_hifigan(args.vocoder).eval(), load_judges(threads=1)
    dvae = None
    if args.dvae:
        from tts.checkpoints import load_component
        from tts.train.data import Corpus
        from tts.train.gates import reference_mel

        dvae, corpus = load_component(args.dvae, "dvae").eval(), Corpus(args.corpus)
    sentences = read_sentences(DEFAULT_SENTENCES)[:args.sentences]
    refs = [scoring_text(s) for s in sentences]
    for voice in args.voices.split(","):
        names = [f"{n}:{k}" for n, k in ablations] + (["G1"] if dvae is not None else [])
        heard: dict[str, list[str]] = {name: [] for name in names}
        errors: dict[str, list[float]] = {name: [] for name in names}
        speaker = None
        if dvae is not None and dvae.conditioned:
            with torch.inference_mode():
                speaker = dvae.speaker(reference_mel(corpus, voice))
        for wav in render(voice, sentences, Path(args.cache)):
            log_mel = audio.mel_spectrogram(torch.from_numpy(wav), MEL)  # (1, C, T)
            versions = {f"{n}:{k}": ablate(log_mel, n, k) for n, k in ablations}
            if dvae is not None:
                with torch.inference_mode():
                    decoded = dvae.decode(dvae.encode(audio.normalize_mel(log_mel)), speaker)
                versions["G1"] = audio.denormalize_mel(decoded)
            for name, mel in versions.items():
                frames = min(mel.shape[-1], log_mel.shape[-1])
                errors[name].append(float(((mel[..., :frames] - log_mel[..., :frames]) ** 2).mean()))
                with torch.inference_mode():
                    out = vocoder(mel.float()).reshape(-1).numpy()
                heard[name].append(scoring_text(judges.transcriber.transcribe(
                    audio.resample(out, MEL.sample_rate, JUDGE_SAMPLE_RATE))))
        for name in names:
            wer = 100 * error_rates(refs, heard[name]).wer
            print(f"{voice} {name}: WER {wer:.2f} %, squared error of the log mel {np.mean(errors[name]):.3f}",
                  flush=True)
            if args.transcripts:
                for i, (ref, hyp) in enumerate(zip(refs, heard[name])):
                    if ref != hyp:
                        print(f"  {i:2d} said:  {ref}\n     heard: {hyp}")


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
