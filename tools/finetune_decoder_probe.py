"""A probe for the next fine-tuning design: does tuning the DVAE decoder's weights, not only its speaker
vector, carry a new voice further? Trains on all clips but the last (mel MSE of their own codes, on
random windows, as `tts voices finetune` does) and reports the held-out clip's decoder loss and the
Resemblyzer similarity of it re-decoded from its codes, before and after, as tts.finetune.run judges.
Nothing is stored; the bundled model is used.

    python -m tools.finetune_decoder_probe VOICE_FOLDER MODE STEPS LR [SENTENCES] [tuned-only]

MODE: ``vector`` (the speaker vector alone, at 3e-3), ``lastN`` (and the decoder's last N layers),
``all`` (and the whole decoder), ``loraR`` (and rank-R low-rank updates of every decoder convolution).
LR is the learning rate of the weights (the vector's stays 3e-3). With SENTENCES (a number N), the
first N public sentences are also spoken zero-shot and with the tuned decoder (the vector stored as
the voice's adapter, the weights changed in memory) and judged as `tts eval` judges them (``tuned-only``:
not zero-shot). With SENTENCES the held-out clip re-decoded is also heard by the recogniser: its WER against
what the recogniser hears in the clip itself ("heldout_wer"). The environment variable PROBE_CYCLE=W adds the
code read-back with weight W (the DVAE encoder reading the tuned decoder's mel back as its codes, on the
training windows and on windows of the shipped voices' speech), as `tts voices finetune` now trains.
"""
import os
import re
import sys
import tempfile
import time
from pathlib import Path

import torch
import torch.nn.utils.parametrize as parametrize

from tts import audio
from tts.adapters import AdapterInfo, AdapterStore, VoiceAdapter
from tts.evaluate import DEFAULT_SENTENCES, error_rates, evaluate, load_judges, read_sentences, scoring_text
from tts.finetune.clips import RECOGNISER_SAMPLE_RATE, voice_clips
from tts.finetune.judges import load_speaker_judge
from tts.finetune.objective import VoiceObjective, prepare, speech_codes
from tts.finetune.run import Judging
from tts.pipeline import TextToSpeech
from tts.sampling.options import resolve
from tts.voices import VoiceLibrary

CROP_CODES = 54  # about 2.5 s windows, as the fine-tuning default
VECTOR_LR = 3e-3


class LowRank(torch.nn.Module):
    """W -> W + B A for a weight of shape (out, ...): rank `rank`, B starting at zero."""

    def __init__(self, shape: torch.Size, rank: int):
        super().__init__()
        fan_in = shape[1:].numel()
        self.a = torch.nn.Parameter(torch.randn(rank, fan_in) / fan_in ** 0.5)
        self.b = torch.nn.Parameter(torch.zeros(shape[0], rank))

    def forward(self, weight: torch.Tensor) -> torch.Tensor:
        return weight + (self.b @ self.a).view_as(weight)


def free_weights(dvae, mode: str) -> list[torch.nn.Parameter]:
    """The decoder weights (or low-rank updates) that `mode` trains; everything else stays frozen."""
    for p in dvae.parameters():
        p.requires_grad_(False)
    if mode == "vector":
        return []
    if mode.startswith("lora"):
        params = []
        for conv in (m for m in dvae.decoder.modules() if isinstance(m, torch.nn.Conv1d)):
            update = LowRank(conv.weight.shape, int(mode[4:]))
            parametrize.register_parametrization(conv, "weight", update)
            params += [update.a, update.b]
        return params
    layers = list(dvae.decoder) if mode == "all" else list(dvae.decoder)[-int(mode[4:]):]
    params = [p for layer in layers for p in layer.parameters()] + list(dvae.speaker_proj.parameters())
    for p in params:
        p.requires_grad_(True)
    return params


def speech(tts, voice, sentences: int, judges) -> str:
    """WER and similarity of the voice speaking the first `sentences` public sentences, as `tts eval`."""
    texts = read_sentences(DEFAULT_SENTENCES)[:sentences]
    report = evaluate(tts, [voice], texts, resolve("fast", tts.models.card), judges)
    summary = report["voices"][voice.name]["summary"]
    return f"WER {100 * summary['wer']:.1f} sim {summary['similarity_mean']:.3f}"


def heldout_wer(tts, judging: Judging, vector: torch.Tensor, clip_wav, transcriber) -> float:
    """WER % of the held-out clip re-decoded from its codes, against the recogniser's words for the clip."""
    import dataclasses

    heard = transcriber.transcribe(audio.resample(clip_wav, tts.sample_rate, RECOGNISER_SAMPLE_RATE))
    cond = dataclasses.replace(judging.base, dvae_speaker=vector.detach())
    with tts.inference():
        mel = tts.decode_codes(judging.heldout.codes[None], cond, judging.steps, torch.Generator().manual_seed(0))
        wav = tts.vocode(audio.denormalize_mel(mel), torch.Generator().manual_seed(0))
    said = transcriber.transcribe(audio.resample(wav, tts.sample_rate, RECOGNISER_SAMPLE_RATE))
    return round(100 * error_rates([scoring_text(heard)], [scoring_text(said)]).wer, 1)


def main(folder: Path, mode: str, steps: int, lr: float, sentences: int = 0, zero_shot: bool = True) -> None:
    cycle = float(os.environ.get("PROBE_CYCLE", "0"))
    torch.manual_seed(0)
    with tempfile.TemporaryDirectory() as scratch:
        scratch = Path(scratch)
        (scratch / "voices").mkdir()
        (scratch / "voices" / folder.name).symlink_to(folder.resolve())
        voice = VoiceLibrary(scratch / "voices", shipped_dir=scratch / "none").get(folder.name)
        store = AdapterStore(scratch / "adapters")
        tts = TextToSpeech(None, cache=scratch / "cache", adapters=store.root)
        clips = voice_clips(voice, tts.sample_rate)
        base = tts.base_conditioning(voice, voice.fingerprint())
        examples, _ = prepare(tts, clips, None)
        heldout, train = examples[-1], examples[:-1]
        start = {"dvae_speaker": base.dvae_speaker.detach().float().clone()}
        objective = VoiceObjective(tts.models, train, CROP_CODES, 1, 0.0, start)
        judging = Judging(tts, base, load_speaker_judge(), heldout, clips[-1].wav, objective, 8)
        before = judging.measure(start)
        judges = load_judges("cpu") if sentences else None
        if sentences:
            before["heldout_wer"] = heldout_wer(tts, judging, start["dvae_speaker"], clips[-1].wav, judges.transcriber)
        spoken = f" speech zero-shot: {speech(tts, voice, sentences, judges)}" if sentences and zero_shot else ""
        weights = free_weights(tts.models.dvae, mode)
        vector = torch.nn.Parameter(start["dvae_speaker"].clone())
        groups = [{"params": [vector], "lr": VECTOR_LR}] + ([{"params": weights, "lr": lr}] if weights else [])
        optimiser = torch.optim.Adam(groups)
        generator = torch.Generator().manual_seed(0)
        others = speech_codes(tts, VoiceLibrary().shipped()) if cycle else []
        began = time.time()
        for step in range(steps):
            loss, _ = objective.loss({"dvae_speaker": vector}, generator)
            if cycle:
                own, _ = objective._windows(generator)
                picks = torch.randint(0, len(others), (2,), generator=generator)
                theirs = []
                for i in picks.tolist():
                    start = int(torch.randint(0, len(others[i]) - CROP_CODES + 1, (1,), generator=generator))
                    theirs.append(others[i][start:start + CROP_CODES])
                # the updates live in the modules (parametrizations): no merged weights to pass
                ce_own = objective.read_back(own, vector, {})
                ce_theirs = objective.read_back(torch.stack(theirs), vector, {})
                if step % 25 == 0:
                    print(f"step {step} loss {loss.item():.4f} read-back own {ce_own.item():.3f} theirs {ce_theirs.item():.3f}", flush=True)
                loss = loss + cycle * (ce_own + ce_theirs)
            optimiser.zero_grad()
            loss.backward()
            optimiser.step()
        seconds = time.time() - began
        after = judging.measure({"dvae_speaker": vector.detach()})
        if sentences:
            after["heldout_wer"] = heldout_wer(tts, judging, vector, clips[-1].wav, judges.transcriber)
            info = AdapterInfo(voice.name, tts.models.model_id, voice.fingerprint())
            store.save(VoiceAdapter(info, {"dvae_speaker": vector.detach()}))
            spoken += f"; tuned: {speech(tts, voice, sentences, judges)}"
        print(f"{folder.name} mode={mode} cycle={cycle} steps={steps} lr={lr} trained={sum(p.numel() for p in weights) + vector.numel()}"
              f" time={seconds:.0f}s before={before} after={after}{spoken}")


def parse(argv: list[str]) -> tuple[Path, str, int, float, int, bool]:
    """The command line, or a one-line exit naming what is wrong."""
    if len(argv) not in (4, 5, 6) or (len(argv) == 6 and argv[5] != "tuned-only"):
        sys.exit(__doc__)
    folder, mode, steps, lr, sentences = (argv + ["0"])[:5]
    if not Path(folder).is_dir():
        sys.exit(f"error: voice folder {folder} does not exist")
    if not re.fullmatch(r"vector|all|last[1-9]\d*|lora[1-9]\d*", mode):
        sys.exit(f"error: MODE {mode!r} is not vector, all, lastN or loraR")
    try:
        return Path(folder), mode, int(steps), float(lr), int(sentences), len(argv) < 6
    except ValueError:
        sys.exit(f"error: STEPS ({steps!r}) and SENTENCES ({sentences!r}) must be integers and LR ({lr!r}) a number")


if __name__ == "__main__":
    main(*parse(sys.argv[1:]))
