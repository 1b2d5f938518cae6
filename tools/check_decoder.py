"""How good is the decoder half of a model on its own? Ground-truth DVAE codes of held-out corpus
utterances -> diffusion decoder (conditioned on the speaker's shipped voice) -> HiFi-GAN, judged by
Whisper against the original recordings.

    python -m tools.check_decoder MODEL_DIR DVAE CORPUS [--per-speaker N] [--preset P] [--steps S] [--speakers a,b]

Separates the GPT's share of a model's WER from the decoder's: if decoded ground-truth codes are
intelligible, what is left to fix is the GPT. Needs the eval extra (faster-whisper, jiwer) and a
model exported with `--diffusion-input codes`.
"""

from __future__ import annotations

import argparse

import torch

from tts import audio
from tts.checkpoints import load_component
from tts.errors import TTSError
from tts.evaluate import error_rates, load_judges, scoring_text
from tts.pipeline import TextToSpeech
from tts.sampling.generate import generate_mel
from tts.sampling.options import PRESETS, resolve
from tts.train.config import DataConfig
from tts.train.data import Corpus
from tts.voices import VoiceLibrary

VAL_FRACTION = DataConfig().val_fraction  # the trainers' held-out split: they never saw these utterances


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model_dir")
    parser.add_argument("dvae")
    parser.add_argument("corpus")
    parser.add_argument("--per-speaker", type=int, default=4)
    parser.add_argument("--preset", default="ultra_fast", choices=list(PRESETS))
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--speakers", default="joe,slt,rms,awb,kal,ked")
    args = parser.parse_args()

    tts = TextToSpeech(args.model_dir)
    if tts.models.card.diffusion_input != "codes":
        raise SystemExit("the model's diffusion decoder is conditioned on GPT latents, not codes")
    dvae = load_component(args.dvae, "dvae").eval()
    judges = load_judges()
    _, held_out = Corpus(args.corpus, speakers=args.speakers.split(","), max_seconds=8.0).split(VAL_FRACTION)
    voices = VoiceLibrary()
    options = resolve(args.preset, tts.models.card)  # the diffusion settings `tts speak` would use
    generator = torch.Generator().manual_seed(0)
    refs, original, decoded = [], [], []
    for speaker in args.speakers.split(","):
        cond = tts.conditioning(voices.get(speaker))
        for utt in [u for u in held_out if u.speaker == speaker][:args.per_speaker]:
            wav = audio.load_audio(utt.audio, audio.HIFIGAN_SAMPLE_RATE)
            with torch.inference_mode():
                mel = audio.mel_spectrogram(torch.from_numpy(wav), audio.HIFIGAN_MEL)  # (1, 80, T)
                codes = dvae.encode(audio.normalize_mel(mel))  # (1, T / 4)
                with tts.inference():
                    out = generate_mel(tts.models.diffusion, codes, cond.diffusion, steps=args.steps,
                                       cond_free=options.cond_free, cond_free_k=options.cond_free_k,
                                       temperature=options.diffusion_temperature, sampler=options.sampler,
                                       generator=generator, frame_ratio=tts.frame_ratio)
                    resynth = tts.vocode(audio.denormalize_mel(out), generator)
            refs.append(scoring_text(utt.text))
            original.append(scoring_text(judges.transcriber.transcribe(wav)))
            decoded.append(scoring_text(judges.transcriber.transcribe(resynth)))
            print(f"{utt.id}: {refs[-1]!r}\n  original: {original[-1]!r}\n  decoded:  {decoded[-1]!r}", flush=True)
    for name, hyps in (("original recordings", original), ("decoded DVAE codes", decoded)):
        rates = error_rates(refs, hyps)
        print(f"{name}: WER {100 * rates.wer:.1f}%  CER {100 * rates.cer:.1f}%  ({len(refs)} utterances)")


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
