"""Where does a DVAE lose words? Decode the public sentences three ways and print Whisper WER % each.

    python -m tools.dvae_bottleneck DVAE.safetensors VOICE[,VOICE...] [--corpus DIR] [--cache DIR] [--sentences N]

- quantised: codes -> decoder (what gate G1 measures);
- not quantised: the encoder's unit-norm output straight into the decoder (the quantiser's cost is
  the difference);
- own speaker: quantised, with the speaker vector from the utterance itself instead of a corpus clip.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from tts import audio
from tts.checkpoints import load_component
from tts.evaluate import JUDGE_SAMPLE_RATE, error_rates, load_judges, read_sentences, scoring_text
from tts.models.hifigan import load_universal_hifigan
from tts.train.data import Corpus
from tts.train.gates import DEFAULT_SENTENCES, MEL, REFERENCE_SECONDS, reference_mel, render


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dvae")
    parser.add_argument("voices")
    parser.add_argument("--corpus", default="/work/corpus")
    parser.add_argument("--cache", default="/work/gates")
    parser.add_argument("--sentences", type=int, default=6)
    args = parser.parse_args()
    torch.set_num_threads(1)
    dvae = load_component(args.dvae, "dvae").eval()
    vocoder, judges = load_universal_hifigan(), load_judges(threads=1)
    sentences = read_sentences(DEFAULT_SENTENCES)[:args.sentences]
    refs = [scoring_text(s) for s in sentences]
    corpus = Corpus(args.corpus)
    for voice in args.voices.split(","):
        heard = {"quantised": [], "not quantised": [], "own speaker": []}
        speaker = dvae.speaker(reference_mel(corpus, voice))
        for wav in render(voice, sentences, Path(args.cache)):
            with torch.inference_mode():
                mel = dvae._trim(audio.normalize_mel(audio.mel_spectrogram(torch.from_numpy(wav), MEL)))
                z = F.normalize(dvae.encoder(mel), dim=1)  # (1, dim, T / 4)
                quantised = dvae.quantizer.codebook[dvae.encode(mel)].transpose(1, 2)
                own = dvae.speaker(mel[..., :MEL.frames(int(REFERENCE_SECONDS * MEL.sample_rate))])
                for name, latent, spk in (("quantised", quantised, speaker), ("not quantised", z, speaker),
                                          ("own speaker", quantised, own)):
                    out = vocoder(audio.denormalize_mel(dvae._decode(latent, spk)).float()).reshape(-1).numpy()
                    text = judges.transcriber.transcribe(audio.resample(out, MEL.sample_rate, JUDGE_SAMPLE_RATE))
                    heard[name].append(scoring_text(text))
        print(voice, {k: round(100 * error_rates(refs, v).wer, 1) for k, v in heard.items()}, flush=True)


if __name__ == "__main__":
    main()
