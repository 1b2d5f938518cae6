"""Gates of the GPT (text -> codes), run on a run's exported weights while it trains.

- ``attention``: teacher-forced speech->text attention of the guided heads (or any layer's heads)
  on held-out corpus utterances, plotted (one panel per utterance), with the share of attention
  near the diagonal. The text-swap gap (validation cross-entropy with another utterance's text
  minus with the true text) is logged by the trainer itself (``val_swap_gap`` in log.csv).
- ``freerun``: the GPT samples codes for the public sentences in a few corpus voices; the codes are
  decoded (DVAE coarse mel, or the flow decoder when given) and judged by Whisper; reports WER, CER,
  the length ratio to the expected duration and the early stops (ratio below 0.8).

    python -m tts.train.gpt_gates attention --gpt runs/gpt/model.safetensors --dvae runs/dvae/model.safetensors \
        --corpus /work/corpus --out docs/training/gpt-attention-1k.png
    python -m tts.train.gpt_gates freerun --gpt ... --dvae ... --corpus ... --voices joe,kokoro-alpha --sentences 15
"""

from __future__ import annotations

import argparse
import json
import logging
import random
import shutil
import tempfile
from pathlib import Path

import numpy as np
import torch

from .. import audio
from ..errors import TTSError
from ..fileio import atomic_path, write_text_atomic
from .alignment import AttentionTap, diagonality
from .data import Corpus
from .gates import DEFAULT_SENTENCES

log = logging.getLogger(__name__)

EARLY_STOP_RATIO = 0.8  # audio shorter than this share of the expected length stopped early
VOICE_CLIPS = 3  # corpus clips that make a voice for the free-running gate


# ------------------------------------------------------------------------------------- attention

@torch.no_grad()
def attention_maps(gpt_path: str, dvae_path: str, corpus_dir: str, layers: list[int], heads: int, count: int = 4,
                   seconds: tuple[float, float] = (2.0, 6.0)) -> list[tuple[str, np.ndarray, float]]:
    """(utterance id, attention (speech, text) averaged over the heads, diagonality) for `count`
    held-out utterances whose length lies in `seconds`."""
    from ..checkpoints import load_component
    from ..text.phonemes import PhonemeTokenizer
    from .config import DataConfig
    from .tasks import component_id, cond_frames_for

    gpt = load_component(gpt_path, "gpt").eval()
    dvae = load_component(dvae_path, "dvae").eval()
    corpus = Corpus(corpus_dir, min_seconds=seconds[0], max_seconds=seconds[1])
    _, held_out = corpus.split(DataConfig().val_fraction)
    tokenizer = PhonemeTokenizer()
    tap = AttentionTap(gpt.gpt, tuple(layers), heads)
    rng = random.Random(0)
    frames = cond_frames_for(2.5)
    out = []
    for utt in sorted(held_out, key=lambda u: u.id)[:count]:
        ids = torch.tensor(tokenizer.encode_phonemes(utt.phonemes) + [tokenizer.stop_id])[None]
        codes = torch.from_numpy(corpus.codes(utt, dvae, component_id(dvae)))[None]
        cond_mel = audio.normalize_mel(torch.from_numpy(corpus.cond_mel(utt.speaker, utt.id, frames, rng)))[None, None]
        tap.clear()
        gpt(gpt.get_conditioning(cond_mel), ids, codes, torch.tensor([codes.shape[1]]))
        n, m = ids.shape[1], codes.shape[1]
        maps = torch.cat([tap.speech_to_text(layer, 2, n, n + 3, m, torch.tensor([n])) for layer in layers], dim=1)
        score = float(diagonality(maps, torch.tensor([m]), torch.tensor([n])))
        out.append((utt.id, maps[0].mean(0).numpy(), score))
    return out


def plot_attention(maps: list[tuple[str, np.ndarray, float]], path: str, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, len(maps), figsize=(3.2 * len(maps), 3.2), squeeze=False)
    for ax, (uid, a, score) in zip(axes[0], maps):
        ax.imshow(a.T, origin="lower", aspect="auto", interpolation="nearest", cmap="viridis")
        ax.set_title(f"{uid}\ndiagonality {score:.2f}", fontsize=8)
        ax.set_xlabel("speech code")
        ax.set_ylabel("phoneme")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    with atomic_path(Path(path)) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)


# -------------------------------------------------------------------------------------- freerun

def corpus_voice(corpus: Corpus, speaker: str, folder: Path):
    """A voice made of the first few corpus clips (3-10 s) of `speaker`."""
    from ..voices import Voice

    clips = sorted((u for u in corpus.by_speaker.get(speaker, []) if 3.0 <= u.duration <= 10.0), key=lambda u: u.id)
    if not clips:
        raise TTSError(f"the corpus has no 3-10 s clip of speaker {speaker}")
    folder.mkdir(parents=True, exist_ok=True)
    for utt in clips[:VOICE_CLIPS]:
        shutil.copyfile(utt.audio, folder / utt.audio.name)
    return Voice(speaker, folder, "shipped")


def seconds_per_char(corpus: Corpus, speaker: str) -> float:
    from ..evaluate import scoring_text

    utts = corpus.by_speaker[speaker]
    chars = sum(len(scoring_text(u.text)) for u in utts)
    return sum(u.duration for u in utts) / max(1, chars)


def freerun(gpt_path: str, dvae_path: str, flow_path: str | None, corpus_dir: str, voices: list[str],
            sentences: list[str], preset: str = "ultra_fast", overrides: dict | None = None,
            reader_path: str | None = None) -> dict:
    """The free-running gate. The options are `preset` as the exported model's card adjusts it (its stop
    rule among them, as it ships), then `overrides`."""
    from ..evaluate import evaluate, load_judges, scoring_text
    from ..pipeline import TextToSpeech
    from ..sampling.options import resolve
    from .export import export_model

    corpus = Corpus(corpus_dir)
    with tempfile.TemporaryDirectory(prefix="gpt-gate-") as tmp:
        # exported as the shipped model would be: the corpus's codes per phoneme token set the stop rule
        model = export_model(Path(tmp) / "model", gpt_path, None, dvae_path, flow_path=flow_path, dtype=None,
                             corpus=corpus_dir, reader_path=reader_path)
        tts = TextToSpeech(model, cache=Path(tmp) / "cache")
        options = resolve(preset, tts.models.card, **(overrides or {}))
        voice_objs = [corpus_voice(corpus, v, Path(tmp) / "voices" / v) for v in voices]
        report = evaluate(tts, voice_objs, sentences, options, load_judges(threads=1),
                          info={"gpt": gpt_path, "dvae": dvae_path, "flow": flow_path, "reader": reader_path})
    for name in voices:
        per_char = seconds_per_char(corpus, name)
        ratios = [s["audio_seconds"] / max(1e-6, per_char * len(scoring_text(s["text"])))
                  for s in report["voices"][name]["sentences"]]
        summary = report["voices"][name]["summary"]
        summary["length_ratio_median"] = round(float(np.median(ratios)), 3)
        summary["early_stops"] = int(sum(r < EARLY_STOP_RATIO for r in ratios))
    return report


def option_value(item: str) -> tuple[str, object]:
    """"name=value" -> (name, value as JSON if it parses, else the string)."""
    name, sep, value = item.partition("=")
    if not sep:
        raise TTSError(f"--option takes NAME=VALUE, got {item!r}")
    try:
        return name.strip(), json.loads(value)
    except json.JSONDecodeError:
        return name.strip(), value


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="gate", required=True)
    a = sub.add_parser("attention")
    f = sub.add_parser("freerun")
    for p in (a, f):
        p.add_argument("--gpt", required=True)
        p.add_argument("--dvae", required=True)
        p.add_argument("--corpus", required=True)
        p.add_argument("--out")
    a.add_argument("--layers", default="2,3")
    a.add_argument("--heads", type=int, default=2)
    a.add_argument("--count", type=int, default=4)
    a.add_argument("--title", default="speech->text attention of the guided heads")
    f.add_argument("--flow")
    f.add_argument("--reader", help="the DVAE run's code reader: candidates ranked by it (else by the GPT's likelihood)")
    f.add_argument("--voices", default="joe,kokoro-alpha")
    f.add_argument("--sentences", type=int, default=15)
    f.add_argument("--preset", default="ultra_fast")
    f.add_argument("--candidates", type=int, default=1)
    f.add_argument("--seed", type=int, default=0)
    f.add_argument("--option", action="append", default=[], metavar="NAME=VALUE",
                   help="a sampling option of tts.sampling.options.Options, e.g. repetition_penalty=1.2 (repeatable)")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    logging.getLogger("faster_whisper").setLevel(logging.WARNING)
    torch.set_num_threads(1)
    if args.gate == "attention":
        maps = attention_maps(args.gpt, args.dvae, args.corpus, [int(x) for x in args.layers.split(",")], args.heads,
                              args.count)
        for uid, _, score in maps:
            print(f"{uid}: diagonality {score:.3f}")
        print(f"mean diagonality {np.mean([s for _, _, s in maps]):.3f}")
        if args.out:
            plot_attention(maps, args.out, args.title)
        return
    from ..evaluate import read_sentences
    sentences = read_sentences(DEFAULT_SENTENCES)[:args.sentences]
    overrides = {**dict(option_value(o) for o in args.option), "candidates": args.candidates, "seed": args.seed}
    report = freerun(args.gpt, args.dvae, args.flow, args.corpus, args.voices.split(","), sentences, args.preset,
                     overrides, args.reader)
    for name, v in report["voices"].items():
        s = v["summary"]
        print(f"{name}: WER {s.get('wer')} CER {s.get('cer')} length ratio {s['length_ratio_median']} "
              f"early stops {s['early_stops']}/{len(v['sentences'])}")
    if args.out:
        write_text_atomic(args.out, json.dumps(report, indent=2) + "\n")


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
