"""How well a mel reader reads the phones of the public sentences, per voice: from the true mel and from
each DVAE's decoding of it (G1's mel, before the vocoder). A minute for four voices where a Whisper
gate takes a quarter of an hour each, and a phone error rate over ~1,100 phones a voice where WER
counts 431 words, so it tells decoders apart with less noise; Whisper still decides the gates.

    python -m tools.phone_read VOICE[,VOICE...] --mel-reader R.safetensors [--dvae D.safetensors ...]
        [--cache DIR] [--corpus DIR] [--sentences N]

The mel reader is a `tts train mel_reader` export (configs/mel-reader.toml).
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch
import torch.nn.functional as F

from tts import audio
from tts.errors import TTSError
from tts.evaluate import read_sentences
from tts.models.reader import MelReader
from tts.train.tasks import ctc_targets, phoneme_error_rate

TRUE = "true mel"


@torch.inference_mode()
def phone_errors(reader: MelReader, mel: torch.Tensor, phones: list[int]) -> int:
    """Edit distance between the phones `reader` reads greedily from a normalised mel (1, C, T) and `phones`."""
    frames = MelReader.frames(torch.tensor([mel.shape[-1]]))
    rate = phoneme_error_rate(reader(mel), frames, torch.tensor([phones]), torch.tensor([len(phones)]))
    return round(float(rate) * len(phones))


@torch.inference_mode()
def read_voice(reader: MelReader, dvaes: dict, mels: list[torch.Tensor], phones: list[list[int]],
               speakers: dict) -> dict[str, float]:
    """Phone error rate of `reader` on each true mel (1, C, T) (log, not normalised) and on each DVAE's
    decoding of it: {TRUE or DVAE name: rate}. `speakers`: each conditioned DVAE's speaker vector."""
    errors = {name: 0 for name in [TRUE, *dvaes]}
    for log_mel, target in zip(mels, phones):
        mel = audio.normalize_mel(log_mel)
        errors[TRUE] += phone_errors(reader, mel, target)
        for name, dvae in dvaes.items():
            usable = mel.shape[-1] // dvae.config.downsample_factor * dvae.config.downsample_factor
            decoded = dvae.decode(dvae.encode(mel[..., :usable]), speakers.get(name)).float()
            errors[name] += phone_errors(reader, F.pad(decoded, (0, mel.shape[-1] - usable), value=-1.0), target)
    total = max(1, sum(len(p) for p in phones))
    return {name: count / total for name, count in errors.items()}


def main() -> None:
    from tts.checkpoints import load_component
    from tts.text.phonemes import PhonemeTokenizer
    from tts.train.data import MEL, Corpus
    from tts.train.gates import DEFAULT_SENTENCES, reference_mel, render

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("voices")
    parser.add_argument("--mel-reader", required=True)
    parser.add_argument("--dvae", nargs="*", default=[], help="DVAEs whose decodings are read too")
    parser.add_argument("--cache", default="/work/gates", help="where the teacher renders are kept")
    parser.add_argument("--corpus", default="/work/corpus", help="the speaker clip for the DVAEs' decoders")
    parser.add_argument("--sentences", type=int, default=30)
    args = parser.parse_args()
    torch.set_num_threads(1)
    reader = load_component(args.mel_reader, "mel_reader").eval()
    dvaes = {Path(d).name: load_component(d, "dvae").eval() for d in args.dvae}
    tokenizer = PhonemeTokenizer()
    if reader.config.classes != tokenizer.vocab_size:
        raise TTSError(f"{args.mel_reader} reads {reader.config.classes} classes, the phoneme tokenizer has "
                       f"{tokenizer.vocab_size}")
    sentences = read_sentences(DEFAULT_SENTENCES)[:args.sentences]
    phones = [ctc_targets(tokenizer, p) for p in tokenizer.phonemize(sentences)]
    corpus = Corpus(args.corpus) if any(d.conditioned for d in dvaes.values()) else None
    print("| voice | " + " | ".join([TRUE, *dvaes]) + " |\n|---|" + "---|" * (1 + len(dvaes)))
    for voice in args.voices.split(","):
        mels = [audio.mel_spectrogram(torch.from_numpy(w), MEL) for w in render(voice, sentences, Path(args.cache))]
        with torch.inference_mode():
            ref = reference_mel(corpus, voice) if corpus is not None else None
            speakers = {name: d.speaker(ref) for name, d in dvaes.items() if d.conditioned}
        rates = read_voice(reader, dvaes, mels, phones, speakers)
        print(f"| {voice} | " + " | ".join(f"{rates[name]:.3f}" for name in [TRUE, *dvaes]) + " |", flush=True)


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
