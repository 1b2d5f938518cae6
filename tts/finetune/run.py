"""One fine-tuning run: a voice's clips -> a tuned adapter (tts.adapters), judged on a held-out clip.

The steps: check the model and the clips; prepare the examples (DVAE codes of every clip, the token ids
of its text); hold out the last clip when there are three or more; tune the vectors with Adam for
`steps` steps or `minutes` of training, whichever ends first, saving the resumable state every
`save_every_s` seconds and on Ctrl-C (the same call goes on from there); measure the held-out clip
again; keep the adapter only if it helps.

"Helps": the held-out clip re-decoded from its codes with the tuned decoder (speaker vectors and
low-rank updates) sounds more like that clip to the speaker judge (Resemblyzer, tts.evaluate) than with
the zero-shot ones and, where a speech recogniser and the clip's words are at hand, loses no more than
HELDOUT_WORD_SLACK words; without a judge, the decoder's loss on the held-out clip falls. When the
updates fail that, the tuned vectors alone are judged the same way. The GPT's voice latent is judged by
its cross-entropy on the held-out clip's codes and left out of the adapter when that rises.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

import torch

from .. import audio
from ..adapters import DECODER_UPDATE, AdapterInfo, AdapterStore, VoiceAdapter, adapter_parts, tuned_conditioning
from ..errors import TTSError
from ..fileio import exclusive_lock
from ..models import lowrank
from ..voices import Voice, VoiceLibrary
from .clips import RECOGNISER_SAMPLE_RATE, voice_clips
from .config import HELDOUT_MIN_CLIPS, HELDOUT_WORD_SLACK, FinetuneConfig
from .objective import Example, VoiceObjective, prepare, speech_codes
from .state import RunState, load_state, optimizer_moments, restore_moments, save_state

log = logging.getLogger(__name__)

# progress(step, total steps, note) after each step
Progress = Callable[[int, int, str], None]
JUDGE_SEED = 0


@dataclass
class FinetuneResult:
    voice: str
    model_id: str
    kept: bool  # an adapter was written
    reason: str  # why it was kept or not, in words
    path: Path | None = None  # the adapter
    parts: list[str] = field(default_factory=list)  # the vectors (and DECODER_UPDATE) the adapter replaces
    steps: int = 0
    train_seconds: float = 0.0  # over every part of a resumed run
    resumed_from: int = 0  # the step this call started at
    heldout: str | None = None  # the held-out clip's name
    before: dict = field(default_factory=dict)  # held-out figures: "similarity", "wer", "decoder", "gpt"
    after: dict = field(default_factory=dict)
    too_long_for_gpt: list[str] = field(default_factory=list)


def check_card(card, where) -> None:
    """TTSError unless a model of this card can be fine-tuned: one of ours with a DVAE decoder (read from the
    card alone, before any weights load)."""
    if card.decoder not in ("flow", "dvae") or "dvae" not in card.components:
        raise TTSError(f"fine-tuning needs one of our models with a DVAE decoder; the model in {where} has a "
                       f"{card.decoder} decoder (Tortoise's kind), which cannot be fine-tuned")


def check_supported(tts) -> None:
    """TTSError unless the loaded model can be fine-tuned: one of ours with a DVAE decoder, float32."""
    check_card(tts.models.card, tts.models.path)
    if tts.precision != "fp32":
        raise TTSError(f"fine-tuning runs in float32, not {tts.precision}")


def finetune(tts, voice: Voice, config: FinetuneConfig = FinetuneConfig(), *, texts: dict[str, str] | None = None,
             transcribed: bool = False, store: AdapterStore | None = None, judge=None, recogniser=None,
             progress: Progress | None = None, say: Callable[[str], None] | None = None) -> FinetuneResult:
    """Tune `voice` for the model of `tts` (a float32 tts.pipeline.TextToSpeech) and store the adapter in
    `store` (default: the one `tts` reads) if it helps.

    `texts`: clip file name -> its words, for the GPT (None: the GPT is not tuned); `transcribed` says
    they came from the speech recogniser (kept in the adapter's record). `judge`: a speaker encoder
    (tts.evaluate.SpeakerEncoder) for the held-out similarity, or None; `recogniser` (a
    tts.evaluate.Transcriber, or None) hears the re-decoded held-out clip against its words in `texts`.
    `say` gets notes for the user.
    """
    config = config.validate()
    say = say or (lambda line: None)
    check_supported(tts)
    clips = voice_clips(voice, tts.sample_rate)
    fingerprint = voice.fingerprint()
    store = store or tts.adapters or AdapterStore()
    model_id = tts.models.model_id
    base = tts.base_conditioning(voice, fingerprint)
    examples, too_long = prepare(tts, clips, texts if config.gpt else None)
    if too_long:
        say(f"left out of the GPT's tuning (too long for one chunk): {', '.join(too_long)}")
    heldout = examples[-1] if len(examples) >= HELDOUT_MIN_CLIPS else None
    train = examples[:-1] if heldout is not None else examples
    parts = tuned_parts(tts, base, train, config)
    if not parts:
        raise TTSError("nothing to fine-tune in this model for this voice: its decoder has no speaker vectors "
                       "and the GPT has no clip texts (pass --transcripts FILE)")
    start = {name: getattr(base, name).detach().float().clone() for name in parts if name != DECODER_UPDATE}
    unpaired = []
    if DECODER_UPDATE in parts:
        generator = torch.Generator().manual_seed(config.seed)
        start.update(lowrank.init_factors(tts.models.dvae, config.rank, generator))
        others = [v for v in VoiceLibrary().shipped() if v.folder.resolve() != voice.folder.resolve()]
        unpaired = speech_codes(tts, others) if config.read_back else []
    samples_per_code = tts.diffusion_mel.hop_length * tts.models.dvae.config.downsample_factor
    crop_codes = max(1, round(config.crop_seconds * tts.sample_rate / samples_per_code))
    objective = VoiceObjective(tts.models, train, crop_codes, config.noise_draws, config.anchor, start,
                               config.read_back, unpaired)
    key = run_key(config, model_id, fingerprint, texts, heldout, parts)
    state_path = store.state_path(model_id, voice, fingerprint)
    try:
        state_path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TTSError(f"cannot write to {state_path.parent}: {exc.strerror or exc}") from None

    with exclusive_lock(store.lock_path(model_id, voice), f"voice {voice.name!r} is being fine-tuned by another "
                                                         "process for this model"), frozen(tts.models):
        state = load_state(state_path, key, tts.device)
        if state is not None and set(state.params) == set(start):
            say(f"going on from step {state.step} of the unfinished fine-tuning")
        else:
            state = RunState(key, 0, 0.0, {k: v.clone() for k, v in start.items()}, {})
        params = {name: torch.nn.Parameter(state.params[name].to(tts.device).clone()) for name in start}
        judging = None
        if heldout is not None:
            words = (texts or {}).get(heldout.name) if recogniser is not None else None
            judging = Judging(tts, base, judge, heldout, clips[-1].wav, objective, config.judge_steps,
                              recogniser, words)
        if judging is not None and not state.before:
            state.before = judging.measure(start)
        result = FinetuneResult(voice.name, model_id, False, "", parts=list(parts), resumed_from=state.step,
                                heldout=heldout.name if heldout is not None else None, before=state.before,
                                too_long_for_gpt=too_long)
        train_loop(params, state, objective, config, state_path, progress, say)
        result.steps, result.train_seconds = state.step, state.elapsed
        tuned = {name: p.detach() for name, p in params.items()}
        if judging is not None:
            result.after = judging.measure(tuned)
        vectors_only = None
        if judging is not None and DECODER_UPDATE in parts and not decoder_helps(result.before, result.after):
            vectors_only = judging.measure({k: v for k, v in tuned.items() if not lowrank.is_factor(k)})
        kept, result.reason = decide(tuned, result.before, result.after, heldout, vectors_only)
        if vectors_only is not None and DECODER_UPDATE not in adapter_parts(tuned):
            result.after = vectors_only  # the figures of what is kept
        if kept:
            info = AdapterInfo(voice.name, model_id, fingerprint, state.step, round(state.elapsed, 1), transcribed,
                               result.heldout, result.before.get("similarity"), result.after.get("similarity"),
                               datetime.now(UTC).isoformat(timespec="seconds"))
            result.path = store.save(VoiceAdapter(info, tuned))
            result.kept, result.parts = True, adapter_parts(tuned)
        state_path.unlink(missing_ok=True)
    return result


def tuned_parts(tts, base, train: list[Example], config: FinetuneConfig) -> list[str]:
    """The Conditioning fields this model and these clips can tune, and DECODER_UPDATE."""
    parts = []
    if config.decoder:
        if tts.models.dvae.conditioned and base.dvae_speaker is not None:
            parts.append("dvae_speaker")
            if config.rank:
                parts.append(DECODER_UPDATE)
        if tts.models.flow is not None and base.flow_speaker is not None:
            parts.append("flow_speaker")
    if config.gpt and tts.models.gpt is not None and any(e.text is not None for e in train):
        parts.append("gpt")
    return parts


def run_key(config: FinetuneConfig, model_id: str, fingerprint: str, texts, heldout, parts) -> str:
    ident = {"config": config.training_hash(), "model": model_id, "clips": fingerprint, "texts": texts or {},
             "heldout": heldout.name if heldout is not None else None, "parts": sorted(parts)}
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()[:24]


@contextlib.contextmanager
def frozen(models) -> Iterator[None]:
    """No weight of the model collects gradients inside the block (only the tuned vectors do)."""
    modules = [m for m in (models.gpt, models.dvae, models.flow) if m is not None]
    flags = [[p.requires_grad for p in m.parameters()] for m in modules]
    for m in modules:
        m.requires_grad_(False)
    try:
        yield
    finally:
        for m, saved in zip(modules, flags):
            for p, flag in zip(m.parameters(), saved):
                p.requires_grad_(flag)


def train_loop(params: dict[str, torch.nn.Parameter], state: RunState, objective: VoiceObjective,
               config: FinetuneConfig, state_path: Path, progress: Progress | None,
               say: Callable[[str], None]) -> None:
    """Adam on `params` from `state.step` until `config.steps` or `config.minutes` of training (counted in
    `state.elapsed`); `state` follows, and is saved every `save_every_s` seconds, on Ctrl-C and at the end."""
    names = list(params)

    def rate(name: str) -> float:
        if lowrank.is_factor(name):
            return config.decoder_lr
        return (config.gpt_lr if name == "gpt" else config.lr) * float(objective.scale[name])

    optimizer = torch.optim.Adam([{"params": [params[n]], "lr": rate(n)} for n in names])
    if state.moments:
        restore_moments(optimizer, names, state.moments)
    budget = config.minutes * 60.0
    device = next(iter(params.values())).device

    def snapshot() -> None:
        state.params = {n: p.detach().clone() for n, p in params.items()}
        state.moments = optimizer_moments(optimizer, names)
        save_state(state_path, state)

    run_start, last_save, steps_here = time.monotonic(), time.monotonic(), 0
    elapsed_at_start = state.elapsed
    try:
        while state.step < config.steps and state.elapsed < budget:
            generator = torch.Generator(device).manual_seed(config.seed * 1_000_003 + state.step)
            optimizer.zero_grad(set_to_none=True)
            loss, _ = objective.loss(params, generator)
            loss.backward()
            optimizer.step()
            state.step += 1
            steps_here += 1
            now = time.monotonic()
            state.elapsed = elapsed_at_start + (now - run_start)
            if progress is not None:
                per_step = (now - run_start) / steps_here
                left = min((config.steps - state.step) * per_step, max(0.0, budget - state.elapsed))
                progress(state.step, config.steps, f"loss {loss.item():.4f}, {_minutes(left)} left")
            if now - last_save >= config.save_every_s:
                snapshot()
                last_save = now
    except KeyboardInterrupt:
        snapshot()
        say(f"stopped at step {state.step}: run the same command again to go on from there")
        raise
    if state.step < config.steps:
        say(f"the {config.minutes:g}-minute limit stopped training at step {state.step} of {config.steps}")
    snapshot()  # a kill while judging does not lose the training


def _minutes(seconds: float) -> str:
    return f"{int(seconds // 60)}:{int(seconds % 60):02d}"


class Judging:
    """The held-out clip's figures for a set of tuned tensors: its decoder and GPT losses, with a judge the
    speaker similarity of the clip re-decoded from its codes to the clip itself ("similarity"), and with a
    recogniser and the clip's `words` the WER % of the re-decoded clip against them ("wer")."""

    def __init__(self, tts, base, judge, heldout: Example, clip_wav, objective: VoiceObjective, steps: int,
                 recogniser=None, words: str | None = None):
        self.tts, self.base, self.judge, self.heldout = tts, base, judge, heldout
        self.objective, self.steps = objective, steps
        from ..evaluate import scoring_text

        words = scoring_text(words) if words else ""
        self.recogniser, self.words = (recogniser, words) if words else (None, None)
        self.target = None
        if judge is not None:
            self.target = judge.embed(audio.resample(clip_wav, tts.sample_rate, RECOGNISER_SAMPLE_RATE))

    def measure(self, tuned: dict[str, torch.Tensor]) -> dict:
        out = self.objective.heldout_losses(tuned, self.heldout)
        out = {k: round(v, 6) for k, v in out.items()}
        if "flow_speaker" not in tuned and "dvae_speaker" not in tuned:
            return out
        if self.target is None and self.recogniser is None:
            return out
        wav = self.redecoded(tuned)
        if self.target is not None:
            similarity = self.similarity(wav)
            if similarity is not None:
                out["similarity"] = round(similarity, 4)
        if self.recogniser is not None:
            from ..evaluate import error_rates, scoring_text

            heard = self.recogniser.transcribe(audio.resample(wav, self.tts.sample_rate, RECOGNISER_SAMPLE_RATE))
            rates = error_rates([self.words], [scoring_text(heard)])
            out["wer"], out["word_errors"] = round(100 * rates.wer, 1), rates.word_errors
        return out

    def redecoded(self, tuned: dict[str, torch.Tensor]):
        """The held-out clip decoded from its codes with the tuned tensors (mono float32 at tts.sample_rate)."""
        tts = self.tts
        cond = tuned_conditioning(self.base, {k: v.detach() for k, v in tuned.items()}, tts.models.dvae)
        generator = torch.Generator(tts.device).manual_seed(JUDGE_SEED)
        with tts.inference():
            mel = tts.decode_codes(self.heldout.codes[None], cond, self.steps, generator)
            return tts.vocode(audio.denormalize_mel(mel), generator)

    def similarity(self, wav) -> float | None:
        """None when the judge hears no speech in the re-decoded clip."""
        from ..evaluate import cosine

        try:
            embedding = self.judge.embed(audio.resample(wav, self.tts.sample_rate, RECOGNISER_SAMPLE_RATE))
        except ValueError as exc:
            log.warning("the speaker judge cannot judge the re-decoded held-out clip: %s", exc)
            return None
        return cosine(embedding, self.target)


def decoder_helps(before: dict, after: dict) -> bool:
    """Whether the tuned decoder did better on the held-out clip: more similar (or, with no similarity, a
    lower decoder loss) and, where both were heard, with no more than HELDOUT_WORD_SLACK more word errors."""
    if "similarity" in after and "similarity" in before:
        helps = after["similarity"] > before["similarity"]
    else:
        helps = after["decoder"] < before["decoder"]
    if "word_errors" in after and "word_errors" in before:
        helps = helps and after["word_errors"] <= before["word_errors"] + HELDOUT_WORD_SLACK
    return helps


def _decoder_note(before: dict, after: dict) -> str:
    if "similarity" in after and "similarity" in before:
        note = f"held-out similarity {before['similarity']:.3f} -> {after['similarity']:.3f}"
    else:
        note = (f"held-out decoder loss {before['decoder']:.4f} -> {after['decoder']:.4f} "
                "(no similarity: no speaker judge, or it heard no speech)")
    if "wer" in after and "wer" in before:
        note += f", WER {before['wer']:.1f} -> {after['wer']:.1f}%"
    return note


def decide(tuned: dict[str, torch.Tensor], before: dict, after: dict, heldout: Example | None,
           vectors_only: dict | None = None) -> tuple[bool, str]:
    """Whether to keep the adapter (dropping from `tuned` the parts that did not help), and why.
    `vectors_only`: the held-out figures without the decoder updates, when the whole decoder did not help."""
    if heldout is None:
        return True, f"no clip held out to judge it (that needs {HELDOUT_MIN_CLIPS} or more clips)"
    notes = []
    if "gpt" in tuned and "gpt" in after and after["gpt"] >= before["gpt"]:
        del tuned["gpt"]
        notes.append(f"the GPT's voice latent did not help (held-out cross-entropy {before['gpt']:.3f} -> "
                     f"{after['gpt']:.3f}) and is left out")
    elif "gpt" in after:
        notes.append(f"held-out GPT cross-entropy {before['gpt']:.3f} -> {after['gpt']:.3f}")
    decoder = [p for p in tuned if p != "gpt"]
    if decoder:
        notes.insert(0, _decoder_note(before, after))
        helps = decoder_helps(before, after)
        factors = [p for p in decoder if lowrank.is_factor(p)]
        if not helps and factors and vectors_only is not None:
            for name in factors:
                del tuned[name]
            decoder = [p for p in decoder if p not in factors]
            helps = decoder_helps(before, vectors_only)
            notes.insert(1, f"the decoder's updates did not help and are left out; without them: "
                            f"{_decoder_note(before, vectors_only)}")
        if not helps:
            for name in decoder:
                del tuned[name]
            notes.insert(1, "the decoder's tuning did not help and is left out")
    if not tuned:
        notes.append("nothing helped: no adapter is kept, the voice stays zero-shot")
    return bool(tuned), "; ".join(notes)
