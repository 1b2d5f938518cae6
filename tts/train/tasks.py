"""The training tasks: DVAE (mel <-> codes), GPT (text + voice -> codes), diffusion (latents + voice -> mel),
flow (codes + voice -> mel), vocoder (mel -> audio, a cheaper generator made from a trained one).

Each task builds its trainable module (a thin wrapper whose forward returns the losses, so that
DistributedDataParallel sees the whole computation), its batches, and its export: the trained
weights as one safetensors component (config embedded) that later tasks and the exporter read.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import logging
import math
import random
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from .. import audio
from ..checkpoints import UNIVERSAL_HIFIGAN, WEIGHTS_BASE, load_component, load_hifigan, save_component
from ..errors import TTSError
from ..models.diffusion import DiffusionConfig, DiffusionDecoder
from ..models.dvae import DVAE, LOG_F0_CENTER, LOG_F0_SCALE, DVAEConfig, pitch_from_hz
from ..models.flow import FlowConfig, FlowDecoder
from ..models.gpt import GPTConfig, SpeechGPT
from ..models.hifigan import HifiGanGenerator, keep_resblocks
from ..models.reader import FRAMES_PER_CODE, CodeReader, MelReader, MelReaderConfig, ReaderConfig
from ..sampling.diffusion import TRAINED_STEPS, NoiseSchedule, linear_betas
from ..text.phonemes import PhonemeTokenizer
from .alignment import AlignmentConfig, AttentionTap, diagonality, guided_attention_loss
from .config import TrainConfig
from .data import MEL, Corpus, Utterance, bucketed_batches, crop_or_pad, pad_stack
from .discriminator import (MelCritic, MultiPeriodCritic, MultiResolutionCritic, adaptive_weight, critic_loss, feature_matching, generator_loss,
                            judge_frozen)
from .loop import within_module

log = logging.getLogger(__name__)

EXPORT_FILE = "model.safetensors"
READER_FILE = "reader.safetensors"  # a DVAE run's phoneme probe, beside its export
TEXT_LOSS_WEIGHT = 0.01  # Tortoise weighs the text prediction loss down by this much
IGNORE = -100  # cross-entropy targets at padding


def _model_config(cls, config: TrainConfig, **fixed):
    fields = {f.name for f in dataclasses.fields(cls)}
    unknown = set(config.model) - fields
    if unknown:
        raise TTSError(f"[model] has fields {cls.__name__} does not know: {', '.join(sorted(unknown))}")
    return cls(**{**config.model, **fixed})


def _corpus(config: TrainConfig) -> Corpus:
    d = config.data
    return Corpus(d.corpus, d.speakers or None, d.min_seconds, d.max_seconds)


class CorpusData:
    """A task's corpus and its train/validation split, read again when the corpus builder has added
    utterances since (training may start on a partial corpus while the rest is made: a run that kept
    the first thousand utterances of a growing corpus overfitted them)."""

    config: TrainConfig

    def load_corpus(self, corpus: Corpus | None = None) -> None:
        self.corpus = corpus or _corpus(self.config)
        self.splits = dict(zip(("train", "val"), self.corpus.split(self.config.data.val_fraction)))

    def refresh(self) -> bool:
        """Re-read the manifest; True (new splits) when it has grown."""
        corpus = _corpus(self.config)
        if len(corpus.items) <= len(self.corpus.items):
            return False
        log.info("corpus grew from %d to %d utterances", len(self.corpus.items), len(corpus.items))
        self.load_corpus(corpus)
        return True


def _component(config: TrainConfig, key: str, kind: str) -> nn.Module:
    path = config.task_options.get(key)
    if not path:
        raise TTSError(f"[task] needs {key} = <path to the trained {kind} ({EXPORT_FILE})>")
    return load_component(path, kind)


def component_id(module: nn.Module) -> str:
    """A short content hash of a module's weights (cache keys for derived features)."""
    h = hashlib.sha256()
    for key, value in sorted(module.state_dict().items()):
        h.update(key.encode())
        h.update(value.detach().float().cpu().numpy().tobytes())
    return h.hexdigest()[:12]


# ----------------------------------------------------------------------------------------------- DVAE

def ctc_targets(tokenizer: PhonemeTokenizer, phonemes: str) -> list[int]:
    """The phones of an IPA string as tokenizer ids: stress, length marks, spaces and punctuation
    dropped (they are not sounds a code has to carry, and they would crowd the CTC frames)."""
    return tokenizer.phone_ids(tokenizer.encode_phonemes(phonemes))


def phone_targets(tokenizer: PhonemeTokenizer, utterances: list[Utterance]) -> dict[str, torch.Tensor]:
    """A batch's CTC targets: "phonemes" (B, n) padded with the blank, and "phoneme_lengths" (B,)."""
    targets = [ctc_targets(tokenizer, u.phonemes) for u in utterances]
    return {"phonemes": pad_stack([np.array(t, dtype=np.int64) for t in targets], 0, dtype=torch.long),
            "phoneme_lengths": torch.tensor([len(t) for t in targets])}


#: The pitch predictor reads detached features, so its loss trains only itself, and Adam's steps do not
#: depend on a loss's scale; but its gradients (~100x the decoder's at the start) would dominate the
#: global gradient-norm clip and so shrink the decoder's steps. Scaled down, they stay out of the way.
PITCH_LOSS_WEIGHT = 0.01

#: The critic's loss enters the shared total at this scale: Adam's steps for the critic do not depend on
#: it, and the critic's gradients stay out of the global gradient-norm clip (as PITCH_LOSS_WEIGHT).
CRITIC_LOSS_SCALE = 0.01
CRITIC_FRAMES = 128  # the critic judges one window of this many frames (~1.5 s) per batch: a third of the cost


class DVAETraining(nn.Module):
    """Reconstruction MSE (plus `l1` times the L1 error, which smooths less) and the commitment term;
    with `ctc` > 0 also `ctc` times the CTC loss of a :class:`~tts.models.reader.CodeReader` on the quantised codes.
    With `adversarial` > 0 a mel critic (tts.train.discriminator) learns to tell decoded mels from real
    ones, and once `adversarial_on` the decoder also minimises its least-squares GAN loss plus
    `feature_matching` times the feature-matching loss, weighted adaptively against the reconstruction
    and times `adversarial`. The critic is not exported. With a `judge` (a trained, frozen
    :class:`~tts.models.reader.MelReader`) the decoded mel also pays `phonetic` times the judge's CTC
    loss of the utterance's phones: a squared error averages the decoder's guesses, which blurs the
    short events that tell one consonant from another; the judge asks for them to stay readable."""

    def __init__(self, config: DVAEConfig, l1: float = 0.0, ctc: float = 0.0, phoneme_classes: int = 0,
                 freeze_codes: bool = False, adversarial: float = 0.0, feature_matching: float = 1.0,
                 unquantised: bool = False, residual_dropout: float = 0.0, judge: MelReader | None = None,
                 phonetic: float = 0.0):
        super().__init__()
        self.dvae = DVAE(config)
        self.phonetic = phonetic
        # never learns, and is kept out of the module's state (so out of checkpoints and the optimiser):
        # its weights are its own file's, and a run may gain it when resumed
        object.__setattr__(self, "judge", judge.requires_grad_(False).eval() if judge is not None else None)
        # the share of utterances decoded from fewer residual levels (down to the first level alone), so
        # that the decoder still renders codes whose detail nobody predicted (a GPT without a residual head)
        self.residual_dropout = residual_dropout
        self.freeze_codes = freeze_codes  # True: encoder and codebook fixed, only the decoder side learns
        if freeze_codes:
            if ctc:
                raise ValueError("freeze_codes trains the decoder only: the phoneme probe (ctc) has nothing to shape")
            self.dvae.encoder.requires_grad_(False)
        if unquantised and not freeze_codes:
            raise ValueError("unquantised is a decoder-only diagnostic: set freeze_codes = true")
        # True: the decoder hears the frozen encoder's unit vectors before the quantiser (a diagnostic:
        # how well the decoder could do if the codes lost nothing; tools/dvae_bottleneck's "not quantised")
        self.unquantised = unquantised
        self.l1 = l1
        self.ctc = ctc
        # the phoneme probe: a code reader, shipped with the model to rank its candidates
        self.probe = CodeReader(ReaderConfig(config.codebook_dim, phoneme_classes)) if ctc else None
        self.probe_only = False  # True: the probe learns to read the codes, the codes are left alone
        self.adversarial, self.feature_matching = adversarial, feature_matching
        self.critic = MelCritic() if adversarial else None
        self.adversarial_on = False  # False: only the critic learns (its warm-up)

    def forward(self, mel: torch.Tensor, ref_mel: torch.Tensor | None = None, frame_mask: torch.Tensor | None = None,
                phonemes: torch.Tensor | None = None, phoneme_lengths: torch.Tensor | None = None,
                pitch_hz: torch.Tensor | None = None) -> dict[str, torch.Tensor]:
        """mel: normalised (B, C, T) with T a multiple of the downsampling factor; ref_mel (B, C, F):
        normalised clips of the same speakers (other utterances), for a speaker-conditioned decoder.
        With the probe: whole utterances, frame_mask (B, T) of real frames, phonemes (B, n) CTC
        targets with phoneme_lengths (B,). pitch_hz (B, T): F0 per frame (0: unvoiced) for a pitched
        decoder, which renders the true contour while its predictor learns to guess it."""
        dvae = self.dvae
        mel = dvae._trim(mel)
        if self.freeze_codes:  # the codes a GPT was trained on stay exactly as they are
            codes = dvae.encode(mel)  # (B, L)
            quantised, commitment = dvae.quantizer.codebook[codes].transpose(1, 2), mel.new_zeros(())
            if self.unquantised:
                quantised = F.normalize(dvae.encoder(mel), dim=1)  # (B, codebook_dim, L), no gradient
            elif dvae.has_residual:  # the residual levels learn (EMA) what the first leaves, in training
                with torch.no_grad():
                    rest = F.normalize(dvae.encoder(mel), dim=1).float() - quantised
                    fine, residual = dvae.quantise_residual(rest)  # (B, codebook_dim, L), (B, levels, L)
                    if self.training and self.residual_dropout:
                        fine = self._drop_levels(dvae, codes, residual, quantised, fine)
                quantised = quantised + fine.to(quantised.dtype)
        else:
            quantised, commitment, codes = dvae.quantise(mel)  # (B, codebook_dim, L), (), (B, L)
        speaker = dvae.speaker(ref_mel) if dvae.conditioned else None
        if pitch_hz is not None:
            pitch_hz = pitch_hz[:, :mel.shape[-1]]  # (B, T'), as the trimmed mel
        teacher = pitch_from_hz(pitch_hz) if dvae.pitched and pitch_hz is not None else None
        recon, predicted = dvae.decode_with_pitch(quantised, speaker, teacher)
        recon = recon.float()
        if frame_mask is None:
            mse = F.mse_loss(recon, mel)
            l1 = F.l1_loss(recon, mel) if self.l1 else None
        else:
            weight = frame_mask[:, None, :recon.shape[-1]].to(recon.dtype).expand_as(recon)
            mse = ((recon - mel) ** 2 * weight).sum() / weight.sum()
            l1 = ((recon - mel).abs() * weight).sum() / weight.sum() if self.l1 else None
        loss = mse + commitment
        extra = {}
        if l1 is not None:
            loss, extra = loss + self.l1 * l1, {"l1": l1.detach()}
        if self.critic is not None:
            term, logged = self._adversarial(recon, mel, frame_mask, mse)
            loss = loss + term
            extra.update(logged)
        if predicted is not None and pitch_hz is not None:  # the predictor learns the true contour
            extra.update(pitch_losses(predicted.float(), teacher, frame_mask))
            loss = loss + PITCH_LOSS_WEIGHT * (extra["f0"] + extra["voicing"])
        if self.judge is not None and phonemes is not None:
            extra["phonetic"] = self._phonetic(recon, mel, frame_mask, phonemes, phoneme_lengths)
            loss = loss + self.phonetic * extra["phonetic"]
            extra["phonetic"] = extra["phonetic"].detach()
        if self.probe is not None and phonemes is not None:
            log_probs = self.probe(quantised.detach() if self.probe_only else quantised)  # (2L, B, classes)
            frames = frame_mask.sum(1) // dvae.config.downsample_factor * FRAMES_PER_CODE
            ctc = F.ctc_loss(log_probs, phonemes, frames.long(), phoneme_lengths, blank=0,
                             zero_infinity=True)
            loss = loss + self.ctc * ctc
            extra["ctc"] = ctc.detach()
            if not self.training:
                extra["per"] = phoneme_error_rate(log_probs.detach(), frames, phonemes, phoneme_lengths)
        if frame_mask is not None:  # padding is silence, one code: leave it out of the usage
            codes = codes[frame_mask[:, ::dvae.config.downsample_factor][:, :codes.shape[1]]]
        counts = torch.bincount(codes.flatten(), minlength=dvae.config.num_tokens).float()
        probs = counts / counts.sum()
        perplexity = torch.exp(-(probs * torch.log(probs + 1e-10)).sum())
        return {"loss": loss, "mse": mse.detach(), "commitment": commitment.detach(),
                "perplexity": perplexity.detach(), **extra}

    def _phonetic(self, recon: torch.Tensor, mel: torch.Tensor, frame_mask: torch.Tensor,
                  phonemes: torch.Tensor, phoneme_lengths: torch.Tensor) -> torch.Tensor:
        """The frozen judge's CTC loss of the phones on the decoded mel (padding taken from the real
        mel, so that only the decoded frames are judged). recon, mel (B, C, T); frame_mask (B, T)."""
        self.judge.to(recon.device)
        recon = torch.where(frame_mask[:, None, :recon.shape[-1]], recon, mel)
        frames = MelReader.frames(frame_mask[:, :recon.shape[-1]].sum(1)).long()
        return F.ctc_loss(self.judge(recon), phonemes, frames, phoneme_lengths, blank=0, zero_infinity=True)

    def _drop_levels(self, dvae: DVAE, codes: torch.Tensor, residual: torch.Tensor, first: torch.Tensor,
                     fine: torch.Tensor) -> torch.Tensor:
        """For a `residual_dropout` share of the utterances keep only the first n residual levels, n
        uniform in 0 .. levels - 1 (SoundStream's quantiser dropout), so that any prefix decodes.
        codes (B, L), residual (B, levels, L), first: the first level's vectors (B, D, L); fine: what
        all residual levels add (B, D, L), changed in place."""
        for i in range(fine.shape[0]):
            if torch.rand(()) < self.residual_dropout:
                n = int(torch.randint(0, residual.shape[1], ()))
                fine[i] = dvae.vectors(codes[i:i + 1], residual[i:i + 1, :n])[0] - first[i]
        return fine

    def _adversarial(self, recon: torch.Tensor, mel: torch.Tensor, frame_mask: torch.Tensor | None,
                     mse: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the critic's loss plus, once on, the decoder's adversarial loss; the values to log).
        recon, mel (B, C, T)."""
        if frame_mask is not None:  # padding is the same for both, so the critic cannot judge by it
            recon = torch.where(frame_mask[:, None, :recon.shape[-1]], recon, mel)
        if recon.shape[-1] > CRITIC_FRAMES:
            start = int(torch.randint(0, recon.shape[-1] - CRITIC_FRAMES + 1, ()))
            recon, mel = recon[..., start:start + CRITIC_FRAMES], mel[..., start:start + CRITIC_FRAMES]
        real_scores, real_features = self.critic(mel)
        fake_scores, _ = self.critic(recon.detach())
        critic = critic_loss(real_scores, fake_scores)
        logged = {"critic": critic.detach()}
        loss = CRITIC_LOSS_SCALE * critic
        if self.adversarial_on:
            scores, features = judge_frozen(self.critic, recon)  # the decoder's loss moves the decoder only
            gan = generator_loss(scores) + self.feature_matching * feature_matching(real_features, features)
            logged["gan"] = gan.detach()
            if torch.is_grad_enabled():
                weight = adaptive_weight(mse, gan, self.dvae.decoder[-1].weight)
                logged["gan_weight"] = weight
                loss = loss + self.adversarial * weight * gan
        return loss, logged


def pitch_losses(predicted: torch.Tensor, pitch: tuple[torch.Tensor, torch.Tensor],
                 frame_mask: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """The pitch predictor's losses: MSE of normalised log F0 on voiced frames, and the voicing
    decision's binary cross-entropy on real frames. predicted (B, 2, T); pitch (log F0, voiced), each
    (B, T), from :func:`pitch_from_hz`; frame_mask (B, T)."""
    log_f0, voiced = pitch
    real = torch.ones_like(voiced) if frame_mask is None else frame_mask[:, :voiced.shape[-1]]
    target = (log_f0 - LOG_F0_CENTER) / LOG_F0_SCALE
    counted = voiced & real
    f0 = ((predicted[:, 0] - target) ** 2 * counted).sum() / counted.sum().clamp_min(1)
    voicing = F.binary_cross_entropy_with_logits(predicted[:, 1], voiced.float(), reduction="none")
    return {"f0": f0, "voicing": (voicing * real).sum() / real.sum().clamp_min(1)}


def phoneme_error_rate(log_probs: torch.Tensor, frames: torch.Tensor, targets: torch.Tensor,
                       lengths: torch.Tensor) -> torch.Tensor:
    """Greedy CTC decoding of (T, B, classes) against the targets: edit distance / target length."""
    best = log_probs.argmax(-1).t()  # (B, T)
    errors, total = 0, 0
    for row, n_frames, target, n in zip(best.tolist(), frames.tolist(), targets.tolist(), lengths.tolist()):
        decoded, previous = [], 0
        for symbol in row[:int(n_frames)]:
            if symbol != previous and symbol != 0:
                decoded.append(symbol)
            previous = symbol
        errors += _edit_distance(decoded, target[:n])
        total += n
    return torch.tensor(errors / max(total, 1))


def _edit_distance(a: list[int], b: list[int]) -> int:
    row = list(range(len(b) + 1))
    for i, x in enumerate(a, 1):
        diagonal, row[0] = row[0], i
        for j, y in enumerate(b, 1):
            diagonal, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, diagonal + (x != y))
    return row[-1]


class DVAETask(CorpusData):
    """With `[task] freeze_codes = true` only the decoder side (decoder, context blocks, speaker
    encoder) learns, from `init`'s weights: the codes a GPT was trained on do not move. Random crops of
    `data.crop_seconds`; whole utterances (padded, masked) when that is 0 or with `[task] ctc = W`, so
    that the phoneme probe can read each utterance's phonemes from its codes. For the first `[task]
    probe_warmup` steps the probe only learns to read the codes as they are (its loss does not reach
    the encoder): a random probe's large, noisy loss would otherwise collapse the codebook."""

    find_unused_parameters = False

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config = config
        model_config = _model_config(DVAEConfig, config, mel_channels=MEL.n_mels)
        self.ctc = float(config.task_options.get("ctc", 0.0))
        self.probe_warmup = int(config.task_options.get("probe_warmup", 0))
        self.critic_warmup = int(config.task_options.get("critic_warmup", 0))
        self.phonetic = float(config.task_options.get("phonetic", 0.0))
        judge = _component(config, "mel_reader", "mel_reader") if self.phonetic else None
        self.tokenizer = PhonemeTokenizer()
        if judge is not None and judge.config.classes != self.tokenizer.vocab_size:
            raise TTSError(f"the mel reader reads {judge.config.classes} classes, the phoneme tokenizer has "
                           f"{self.tokenizer.vocab_size}")
        try:
            self.module = DVAETraining(model_config, l1=float(config.task_options.get("l1", 0.0)), ctc=self.ctc,
                                       phoneme_classes=self.tokenizer.vocab_size,
                                       freeze_codes=bool(config.task_options.get("freeze_codes", False)),
                                       adversarial=float(config.task_options.get("adversarial", 0.0)),
                                       feature_matching=float(config.task_options.get("feature_matching", 1.0)),
                                       unquantised=bool(config.task_options.get("unquantised", False)),
                                       residual_dropout=float(config.task_options.get("residual_dropout", 0.0)),
                                       judge=judge, phonetic=self.phonetic)
        except ValueError as exc:
            raise TTSError(f"[task]: {exc}") from None
        self.load_corpus()
        self.factor = f = model_config.downsample_factor
        self.frames = max(f, int(config.data.crop_seconds * MEL.sample_rate / MEL.hop_length) // f * f)
        # whole utterances, padded and masked (the probe and the judge read each utterance's phones)
        self.whole = bool(self.ctc or self.phonetic) or config.data.crop_seconds <= 0
        self.pitched = bool(model_config.pitch_bins)
        if self.pitched and not self.whole:
            raise TTSError("a pitched DVAE trains on whole utterances: set data.crop_seconds = 0")
        self.cond_frames = cond_frames(config) if model_config.speaker_dim else 0

    def batches(self, split: str, rng: random.Random, shard: tuple[int, int]) -> Iterator[dict]:
        items = self.splits[split]
        for idx in bucketed_batches([u.duration for u in items], self.config.data.batch_size, rng, shard):
            batch = self._whole(items, idx) if self.whole else self._crops(items, idx, rng)
            if self.cond_frames:
                refs = [self.corpus.cond_mel(items[i].speaker, items[i].id, self.cond_frames, rng) for i in idx]
                batch["ref_mel"] = audio.normalize_mel(torch.from_numpy(np.stack(refs)))
            yield batch

    def set_step(self, step: int) -> None:
        self.module.probe_only = step < self.probe_warmup
        self.module.adversarial_on = step >= self.critic_warmup

    def _crops(self, items: list[Utterance], idx: list[int], rng: random.Random) -> dict:
        mels = [crop_or_pad(self.corpus.mel(items[i]), self.frames, rng) for i in idx]
        return {"mel": audio.normalize_mel(torch.from_numpy(np.stack(mels)))}

    def _whole(self, items: list[Utterance], idx: list[int]) -> dict:
        mels = [self.corpus.mel(items[i]) for i in idx]
        f = self.factor
        lengths = [m.shape[1] // f * f for m in mels]
        mel = pad_stack([m[:, :n] for m, n in zip(mels, lengths)], audio.LOG_SILENCE)  # (B, C, T)
        mask = torch.arange(mel.shape[-1])[None, :] < torch.tensor(lengths)[:, None]  # (B, T)
        batch = {"mel": audio.normalize_mel(mel), "frame_mask": mask}
        if self.ctc or self.phonetic:  # the probe's and the judge's targets
            batch.update(phone_targets(self.tokenizer, [items[i] for i in idx]))
        if self.pitched:
            pitches = [self.corpus.pitch(items[i])[:n] for i, n in zip(idx, lengths)]
            batch["pitch_hz"] = pad_stack([np.pad(p, (0, n - len(p))) for p, n in zip(pitches, lengths)], 0.0)
        return batch

    def export(self, module: nn.Module, run_dir: Path) -> Path:
        path = run_dir / EXPORT_FILE
        save_component(path, "dvae", module.dvae)
        if module.probe is not None:  # the code reader that ranks a shipped model's candidates
            save_component(run_dir / READER_FILE, "reader", module.probe)
        return path


# ----------------------------------------------------------------------------------------- mel reader

class MelReaderTraining(nn.Module):
    """CTC loss of a :class:`~tts.models.reader.MelReader` reading real mels, with Gaussian noise of
    standard deviation `noise` (normalised units) added in training, so that it reads the phones and not
    the fine texture that a decoder's output lacks; the phone error rate in validation."""

    def __init__(self, config: MelReaderConfig, noise: float = 0.0):
        super().__init__()
        self.reader = MelReader(config)
        self.noise = noise

    def forward(self, mel: torch.Tensor, frame_mask: torch.Tensor, phonemes: torch.Tensor,
                phoneme_lengths: torch.Tensor) -> dict[str, torch.Tensor]:
        """mel: normalised (B, C, T); frame_mask (B, T) of real frames; phonemes (B, n) CTC targets
        with phoneme_lengths (B,)."""
        if self.training and self.noise:
            mel = mel + self.noise * torch.randn_like(mel)
        log_probs = self.reader(mel)  # (ceil(T / 2), B, classes)
        frames = MelReader.frames(frame_mask.sum(1)).long()
        ctc = F.ctc_loss(log_probs, phonemes, frames, phoneme_lengths, blank=0, zero_infinity=True)
        out = {"loss": ctc, "ctc": ctc.detach()}
        if not self.training:
            out["per"] = phoneme_error_rate(log_probs.detach(), frames, phonemes, phoneme_lengths)
        return out


class MelReaderTask(CorpusData):
    """Trains the mel reader that judges decoders (`[task] noise`: the training noise), on whole
    utterances of the corpus."""

    find_unused_parameters = False

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config = config
        self.tokenizer = PhonemeTokenizer()
        model_config = _model_config(MelReaderConfig, config, mel_channels=MEL.n_mels, classes=self.tokenizer.vocab_size)
        self.module = MelReaderTraining(model_config, noise=float(config.task_options.get("noise", 0.0)))
        self.load_corpus()

    def batches(self, split: str, rng: random.Random, shard: tuple[int, int]) -> Iterator[dict]:
        items = self.splits[split]
        for idx in bucketed_batches([u.duration for u in items], self.config.data.batch_size, rng, shard):
            mels = [self.corpus.mel(items[i]) for i in idx]
            lengths = torch.tensor([m.shape[1] for m in mels])
            mel = pad_stack(mels, audio.LOG_SILENCE)  # (B, C, T)
            yield {"mel": audio.normalize_mel(mel), "frame_mask": torch.arange(mel.shape[-1])[None, :] < lengths[:, None],
                   **phone_targets(self.tokenizer, [items[i] for i in idx])}

    def export(self, module: nn.Module, run_dir: Path) -> Path:
        path = run_dir / EXPORT_FILE
        save_component(path, "mel_reader", module.reader)
        return path


# ----------------------------------------------------------------------------------------------- GPT

def text_ids(tokenizer: PhonemeTokenizer, utt: Utterance, stop: int) -> list[int]:
    return tokenizer.encode_phonemes(utt.phonemes) + [stop]


def cond_frames_for(seconds: float) -> int:
    return MEL.frames(int(seconds * MEL.sample_rate))


def cond_frames(config: TrainConfig) -> int:
    return cond_frames_for(config.data.cond_seconds)


class GPTTraining(nn.Module):
    """Code cross-entropy (plus Tortoise's down-weighted text loss), with guided attention on a few
    heads (tts.train.alignment) while `align_weight` > 0. In eval mode it also scores every row
    with another row's text: the text-swap gap says how much the model reads its text."""

    def __init__(self, config: GPTConfig, alignment: AlignmentConfig | None = None):
        super().__init__()
        self.gpt = SpeechGPT(config)
        self.alignment = alignment or AlignmentConfig()
        self.align_weight = self.alignment.weight_at(0)
        self.tap = AttentionTap(self.gpt.gpt, self.alignment.layers, self.alignment.heads) if self.alignment.layers else None

    def _cross_entropy(self, cond, text, text_lengths, codes, code_lengths):
        text_logits, mel_logits = self.gpt(cond, text, codes, code_lengths)
        text_target, mel_target = self.gpt.targets(text, codes, code_lengths)
        text_target = _mask_after(text_target, text_lengths)
        mel_target = _mask_after(mel_target, code_lengths)
        loss_text = F.cross_entropy(text_logits.float(), text_target, ignore_index=IGNORE)
        loss_mel = F.cross_entropy(mel_logits.float(), mel_target, ignore_index=IGNORE)
        valid = mel_target != IGNORE
        accuracy = ((mel_logits.argmax(1) == mel_target) & valid).sum() / valid.sum()
        return loss_text, loss_mel, accuracy

    def forward(self, cond_mels, text, text_lengths, codes, code_lengths) -> dict[str, torch.Tensor]:
        """cond_mels (B, 1, C, F) normalised; text (B, n) ids ending in stop; codes (B, m)."""
        cond = self.gpt.get_conditioning(cond_mels)
        if self.tap is not None:
            self.tap.clear()
        loss_text, loss_mel, accuracy = self._cross_entropy(cond, text, text_lengths, codes, code_lengths)
        out = {"mel_ce": loss_mel.detach(), "text_ce": loss_text.detach(), "mel_accuracy": accuracy.detach()}
        loss = loss_mel + TEXT_LOSS_WEIGHT * loss_text
        if self.tap is not None:
            n, m = text.shape[1], codes.shape[1]
            # positions: cond 0 | start_text 1, ids 2..n+1, stop n+2 | start_mel n+3, codes ..
            attentions = [self.tap.speech_to_text(layer, 2, n, n + 3, m, text_lengths) for layer in self.alignment.layers]
            attention = torch.cat(attentions, dim=1)  # (B, layers * heads, m, n)
            guided = guided_attention_loss(attention, code_lengths, text_lengths, self.alignment.width)
            if self.training and self.align_weight > 0:
                loss = loss + self.align_weight * guided
            out["align"] = guided.detach()
            out["diagonality"] = diagonality(attention.detach(), code_lengths, text_lengths)
        if not self.training and text.shape[0] > 1:
            swapped = torch.roll(torch.arange(text.shape[0], device=text.device), 1)
            _, swapped_mel, _ = self._cross_entropy(cond, text[swapped], text_lengths[swapped], codes, code_lengths)
            out["mel_ce_swapped"] = swapped_mel.detach()
            out["swap_gap"] = (swapped_mel - loss_mel).detach()
        return {"loss": loss, **out}


def _mask_after(targets: torch.Tensor, lengths: torch.Tensor) -> torch.Tensor:
    """Keep targets at positions <= length (the sequence and its first stop); ignore the padding."""
    positions = torch.arange(targets.shape[1], device=targets.device)[None, :]
    return targets.masked_fill(positions > lengths[:, None], IGNORE)


class CodedCorpusTask(CorpusData):
    """Shared by GPT and diffusion training: utterances with phoneme ids, DVAE codes and voice clips."""

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config = config
        self.load_corpus()
        self.tokenizer = PhonemeTokenizer()
        self.dvae = _component(config, "dvae", "dvae").eval()
        self.dvae_id = component_id(self.dvae)
        self.cond_frames = cond_frames(config)

    def raw_batches(self, split: str, rng: random.Random, shard: tuple[int, int], stop_text: int, stop_mel: int,
                    items: list[Utterance] | None = None):
        items = self.splits[split] if items is None else items
        for idx in bucketed_batches([u.duration for u in items], self.config.data.batch_size, rng, shard):
            utts = [items[i] for i in idx]
            texts = [np.array(text_ids(self.tokenizer, u, stop_text)) for u in utts]
            codes = [self.corpus.codes(u, self.dvae, self.dvae_id) for u in utts]
            conds = [self.corpus.cond_mel(u.speaker, u.id, self.cond_frames, rng) for u in utts]
            yield utts, {
                "text": pad_stack(texts, stop_text, torch.long),
                "text_lengths": torch.tensor([len(t) for t in texts]),
                "codes": pad_stack(codes, stop_mel, torch.long),
                "code_lengths": torch.tensor([len(c) for c in codes]),
                "cond_raw": torch.from_numpy(np.stack(conds))[:, None],  # (B, 1, C, F) log mel
            }


def crop(batch: dict, crop_codes: int, pad_code: int, rng: random.Random) -> dict:
    """Random windows of at most `crop_codes` codes from each row; "code_starts" says where each
    window starts, for cutting the matching mel frames."""
    rows, starts, lengths = [], [], []
    for codes, n in zip(batch["codes"], batch["code_lengths"].tolist()):
        keep = min(n, crop_codes)
        start = rng.randrange(n - keep + 1)
        rows.append(codes[start:start + keep].numpy())
        starts.append(start)
        lengths.append(keep)
    return {**batch, "codes": pad_stack(rows, pad_code, torch.long), "code_lengths": torch.tensor(lengths),
            "code_starts": starts}


class GPTTask(CodedCorpusTask):
    find_unused_parameters = False

    def __init__(self, config: TrainConfig, device: torch.device):
        super().__init__(config, device)
        self.model_config = _model_config(
            GPTConfig, config, number_text_tokens=self.tokenizer.vocab_size, stop_text_token=self.tokenizer.stop_id,
            number_mel_codes=self.dvae.config.num_tokens + 2, mel_channels=MEL.n_mels,
            samples_per_code=MEL.hop_length * self.dvae.config.downsample_factor,
        )
        options = dict(config.task_options.get("alignment", {}))
        if "layers" in options:
            options["layers"] = tuple(options["layers"])
        try:
            alignment = AlignmentConfig(**options)
        except TypeError as exc:
            raise TTSError(f"[task.alignment]: {exc}") from None
        if any(not 0 <= layer < self.model_config.layers for layer in alignment.layers):
            raise TTSError(f"[task.alignment] layers must lie in 0..{self.model_config.layers - 1}")
        if not 0 < alignment.heads <= self.model_config.heads:
            raise TTSError(f"[task.alignment] heads must lie in 1..{self.model_config.heads}")
        self.module = GPTTraining(self.model_config, alignment)
        self.step = 0

    def set_step(self, step: int) -> None:
        """Called by the trainer before each step: the alignment weight and the length curriculum follow it."""
        self.step = step
        self.module.align_weight = self.module.alignment.weight_at(step)

    def batches(self, split: str, rng: random.Random, shard: tuple[int, int]) -> Iterator[dict]:
        """Training starts on short utterances only (`data.short_first_seconds` for the first
        `data.short_first_steps` steps: alignment is learned faster on them), then takes all."""
        cfg, data = self.model_config, self.config.data
        full = self.raw_batches(split, rng, shard, cfg.stop_text_token, cfg.stop_mel_token)
        short = None
        if split == "train" and data.short_first_steps > 0 and data.short_first_seconds > 0:
            items = [u for u in self.splits["train"] if u.duration <= data.short_first_seconds]
            if len(items) >= data.batch_size:
                short = self.raw_batches(split, rng, shard, cfg.stop_text_token, cfg.stop_mel_token, items)
        while True:
            source = short if short is not None and self.step < data.short_first_steps else full
            _, batch = next(source)
            batch["cond_mels"] = audio.normalize_mel(batch.pop("cond_raw"))
            yield batch

    def export(self, module: nn.Module, run_dir: Path) -> Path:
        path = run_dir / EXPORT_FILE
        save_component(path, "gpt", module.gpt)
        return path


# ----------------------------------------------------------------------------------------- diffusion

class DiffusionTraining(nn.Module):
    """Epsilon MSE plus the variational bound for the learned variance range (improved DDPM hybrid)."""

    def __init__(self, config: DiffusionConfig):
        super().__init__()
        self.diffusion = DiffusionDecoder(config)
        schedule = NoiseSchedule.from_betas(linear_betas(TRAINED_STEPS), torch.arange(TRAINED_STEPS))
        for name in ("alphas_cumprod", "sqrt_recip_alphas_cumprod", "sqrt_recipm1_alphas_cumprod",
                     "posterior_mean_coef1", "posterior_mean_coef2", "posterior_log_variance", "log_betas"):
            self.register_buffer(name, getattr(schedule, name), persistent=False)

    def forward(self, mel, mel_mask, aligned, cond_mels) -> dict[str, torch.Tensor]:
        """mel (B, C, T) in [-1, 1]; mel_mask (B, 1, T); aligned: GPT latents (B, L, D) or codes (B, L) with
        T = 4 L; cond_mels (B, 1, C, F) log mel."""
        b, c, _ = mel.shape
        t = torch.randint(0, TRAINED_STEPS, (b,), device=mel.device)
        noise = torch.randn_like(mel)
        acp = self.alphas_cumprod[t][:, None, None]
        x_t = acp.sqrt() * mel + (1 - acp).sqrt() * noise
        cond = self.diffusion.get_conditioning(cond_mels)
        out = self.diffusion(x_t, t, aligned_conditioning=aligned, conditioning_latent=cond).float()
        eps, var_value = out[:, :c], out[:, c:]
        weight = mel_mask.expand_as(mel)
        mse = ((eps - noise) ** 2 * weight).sum() / weight.sum()
        vb = (self._kl_bits(mel, x_t, t, eps.detach(), var_value) * weight).sum() / weight.sum()
        return {"loss": mse + vb, "mse": mse.detach(), "vb": vb.detach()}

    def _kl_bits(self, x0, x_t, t, eps, var_value) -> torch.Tensor:
        """KL(q(x_{t-1} | x_t, x0) || p(x_{t-1} | x_t)) in bits per element; the mean is not trained by it."""
        def at(table):
            return table[t][:, None, None]

        true_mean = at(self.posterior_mean_coef1) * x0 + at(self.posterior_mean_coef2) * x_t
        true_log_var = at(self.posterior_log_variance)
        x0_pred = (at(self.sqrt_recip_alphas_cumprod) * x_t - at(self.sqrt_recipm1_alphas_cumprod) * eps).clamp(-1, 1)
        mean = at(self.posterior_mean_coef1) * x0_pred + at(self.posterior_mean_coef2) * x_t
        frac = (var_value + 1) / 2
        log_var = frac * at(self.log_betas) + (1 - frac) * true_log_var
        kl = 0.5 * (-1.0 + log_var - true_log_var + torch.exp(true_log_var - log_var)
                    + (true_mean - mean) ** 2 * torch.exp(-log_var))
        return kl / math.log(2.0)


class DiffusionTask(CodedCorpusTask):
    """Trains the decoder on DVAE codes (`[task] condition = "codes"`) or on the latents of a trained,
    frozen GPT (`condition = "latents"`, Tortoise's choice; needs `[task] gpt`)."""

    find_unused_parameters = True  # one of the two conditioning branches and the mel head stay unused

    def __init__(self, config: TrainConfig, device: torch.device):
        super().__init__(config, device)
        self.device = device
        self.condition = config.task_options.get("condition", "latents")
        if self.condition not in ("codes", "latents"):
            raise TTSError(f"[task] condition must be codes or latents, got {self.condition!r}")
        self.gpt = _component(config, "gpt", "gpt").to(device).eval() if self.condition == "latents" else None
        self.frames_per_code = self.dvae.config.downsample_factor
        self.pad_code = self.dvae.config.num_tokens  # the extra code id, for padding
        seconds_per_code = MEL.hop_length * self.dvae.config.downsample_factor / MEL.sample_rate
        self.crop_codes = int(config.data.crop_seconds / seconds_per_code)  # 0: whole utterances
        latent_dim = self.gpt.config.model_dim if self.gpt is not None else config.model.get("in_latent_channels", 1024)
        model_config = _model_config(DiffusionConfig, config, in_channels=MEL.n_mels, out_channels=2 * MEL.n_mels,
                                     in_latent_channels=latent_dim, in_tokens=self.dvae.config.num_tokens + 1)
        self.module = DiffusionTraining(model_config)

    @torch.no_grad()
    def batches(self, split: str, rng: random.Random, shard: tuple[int, int]) -> Iterator[dict]:
        stop_text = self.gpt.config.stop_text_token if self.gpt is not None else self.tokenizer.stop_id
        for utts, batch in self.raw_batches(split, rng, shard, stop_text, self.pad_code):
            if self.crop_codes and self.gpt is None:
                batch = crop(batch, self.crop_codes, self.pad_code, rng)
            if self.gpt is None:
                aligned = batch["codes"]
            else:
                dev = {k: v.to(self.device) for k, v in batch.items()}
                codes = dev["codes"].masked_fill(dev["codes"] == self.pad_code, self.gpt.config.stop_mel_token)
                cond = self.gpt.get_conditioning(audio.normalize_mel(dev["cond_raw"]))
                aligned = self.gpt(cond, dev["text"], codes, dev["code_lengths"], return_latent=True).float().cpu()
            frames = [int(n) * self.frames_per_code for n in batch["code_lengths"]]
            starts = batch.get("code_starts", [0] * len(utts))
            mels = [audio.normalize_mel(torch.from_numpy(
                        self.corpus.mel(u)[:, s * self.frames_per_code:s * self.frames_per_code + n])).numpy()
                    for u, n, s in zip(utts, frames, starts)]
            longest = aligned.shape[1] * self.frames_per_code
            mask = torch.zeros(len(utts), 1, longest)
            for i, n in enumerate(frames):
                mask[i, :, :n] = 1
            yield {
                "mel": pad_stack(mels, -1.0)[:, :, :longest],
                "mel_mask": mask,
                "aligned": aligned,
                "cond_mels": batch["cond_raw"],
            }

    def export(self, module: nn.Module, run_dir: Path) -> Path:
        path = run_dir / EXPORT_FILE
        save_component(path, "diffusion", module.diffusion)
        return path


# ---------------------------------------------------------------------------------------------- flow

class FlowTraining(nn.Module):
    """Conditional flow matching from the noised coarse mel to the real mel (tts.models.flow)."""

    def __init__(self, config: FlowConfig):
        super().__init__()
        self.flow = FlowDecoder(config)

    def forward(self, mel, mel_mask, coarse, codes, ref_mel) -> dict[str, torch.Tensor]:
        """mel, coarse (B, C, T) normalised; mel_mask (B, 1, T); codes (B, T / 4); ref_mel (B, C, F)."""
        b = mel.shape[0]
        t = torch.rand(b, device=mel.device)
        x0 = self.flow.prior(coarse)
        tt = t[:, None, None]
        x_t = (1 - tt) * x0 + tt * mel
        velocity = self.flow(x_t, t, coarse, codes, self.flow.speaker(ref_mel), mel_mask).float()
        weight = mel_mask.expand_as(mel)
        mse = ((velocity - (mel - x0)) ** 2 * weight).sum() / weight.sum()
        prior_mse = ((coarse - mel) ** 2 * weight).sum() / weight.sum()  # how far the DVAE's guess is
        return {"loss": mse, "mse": mse.detach(), "prior_mse": prior_mse.detach()}


class FlowTask(CodedCorpusTask):
    """Trains the flow decoder on random windows of DVAE codes, the DVAE's (speaker-conditioned)
    coarse mel of those codes, and the real mel."""

    find_unused_parameters = False

    def __init__(self, config: TrainConfig, device: torch.device):
        super().__init__(config, device)
        self.frames_per_code = self.dvae.config.downsample_factor
        self.pad_code = self.dvae.config.num_tokens
        seconds_per_code = MEL.hop_length * self.frames_per_code / MEL.sample_rate
        self.crop_codes = max(1, int(config.data.crop_seconds / seconds_per_code))
        model_config = _model_config(FlowConfig, config, mel_channels=MEL.n_mels, num_codes=self.dvae.config.num_tokens,
                                     frames_per_code=self.frames_per_code)
        self.module = FlowTraining(model_config)

    @torch.no_grad()
    def batches(self, split: str, rng: random.Random, shard: tuple[int, int]) -> Iterator[dict]:
        stop = self.tokenizer.stop_id
        for utts, batch in self.raw_batches(split, rng, shard, stop, self.pad_code):
            batch = crop(batch, self.crop_codes, self.pad_code, rng)
            f = self.frames_per_code
            frames = [int(n) * f for n in batch["code_lengths"]]
            mels = [audio.normalize_mel(torch.from_numpy(self.corpus.mel(u)[:, s * f:s * f + n])).numpy()
                    for u, n, s in zip(utts, frames, batch["code_starts"])]
            codes = batch["codes"]
            longest = codes.shape[1] * f
            mask = torch.zeros(len(utts), 1, longest)
            for i, n in enumerate(frames):
                mask[i, :, :n] = 1
            ref = audio.normalize_mel(batch["cond_raw"][:, 0])  # (B, C, F)
            speaker = self.dvae.speaker(ref) if self.dvae.conditioned else None
            coarse = self.dvae.decode(codes.clamp_max(self.pad_code - 1), speaker)  # (B, C, T)
            mel = pad_stack(mels, -1.0)[:, :, :longest]
            yield {"mel": mel, "mel_mask": mask, "coarse": coarse * mask + (1 - mask) * -1.0, "codes": codes,
                   "ref_mel": ref}

    def export(self, module: nn.Module, run_dir: Path) -> Path:
        path = run_dir / EXPORT_FILE
        save_component(path, "flow", module.flow)
        return path


# ------------------------------------------------------------------------------------------- vocoder

STFT_RESOLUTIONS = ((512, 128), (1024, 256), (2048, 512))  # (n_fft, hop) of the multi-resolution loss


def stft_loss(out: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
    """Multi-resolution STFT loss of audio (B, S): spectral convergence plus log-magnitude L1, averaged."""
    total = out.new_zeros(())
    for n_fft, hop in STFT_RESOLUTIONS:
        window = torch.hann_window(n_fft, device=out.device)
        mags = [torch.stft(x, n_fft, hop, window=window, return_complex=True).abs().clamp_min(1e-5)
                for x in (out, target)]  # (B, n_fft / 2 + 1, frames) each
        total = total + torch.linalg.norm(mags[0] - mags[1]) / torch.linalg.norm(mags[1])
        total = total + (mags[0].log() - mags[1].log()).abs().mean()
    return total / len(STFT_RESOLUTIONS)


@contextlib.contextmanager
def stage_outputs(generator: HifiGanGenerator) -> Iterator[list[torch.Tensor]]:
    """Collects, during a forward pass, each upsampling stage's output (after its leaky ReLU: the input
    of the next upsampler, or of conv_post): (B, C0 / 2^(i+1), T * rate_0 ... rate_i) per stage i."""
    taps: list[torch.Tensor] = []
    handles = [m.register_forward_pre_hook(lambda _module, args: taps.append(args[0]))
               for m in [*generator.ups[1:], generator.conv_post]]
    try:
        yield taps
    finally:
        for handle in handles:
            handle.remove()


class VocoderTraining(nn.Module):
    """A HiFi-GAN generator fine-tuned on (mel, audio) crops with spectral losses: the mel L1 of
    HiFi-GAN's own objective and a multi-resolution STFT loss. There is no discriminator: the generator
    starts from a GAN-trained one (pruned to a cheaper shape) and only has to recover what pruning lost.
    With a `teacher` (the generator it was pruned from) and `features` > 0, each stage's output is also
    pulled towards the teacher's on the same mel (L1 relative to the teacher's mean magnitude): a target
    for every stage, not only for the audio at the end.

    With `adversarial` > 0 a multi-period critic (tts.train.discriminator) learns to tell the
    recordings from the generator's audio, and once `adversarial_on` the generator also minimises
    `adversarial` times its least-squares GAN loss plus `feature_matching` times the L1 distance of the
    critic's features (HiFi-GAN's terms, averaged over the periods). The spectral losses ignore phase,
    so alone they leave voiced speech with a wandering phase; the critic judges the waveform. With
    `spectrum_critic` a multi-resolution spectrogram critic judges beside it (its terms join the same
    average). The critics are saved in the run's checkpoint, not exported."""

    def __init__(self, generator: HifiGanGenerator, teacher: HifiGanGenerator | None = None, features: float = 0.0,
                 adversarial: float = 0.0, feature_matching: float = 2.0, critic_lr_scale: float = 1.0,
                 spectrum_critic: bool = False):
        super().__init__()
        self.generator = generator
        self.features = features
        self._teacher = [teacher.eval().requires_grad_(False)] if teacher is not None and features else []  # not saved
        self.adversarial, self.feature_matching = adversarial, feature_matching
        self.critic = MultiPeriodCritic() if adversarial else None
        self.spectrum_critic = MultiResolutionCritic(STFT_RESOLUTIONS) if adversarial and spectrum_critic else None
        self.adversarial_on = False  # False: only the critics learn (their warm-up)
        # the critics start from scratch beside a trained generator
        self.lr_scales = {"critic": critic_lr_scale, "spectrum_critic": critic_lr_scale}

    def forward(self, mel: torch.Tensor, wav: torch.Tensor) -> dict[str, torch.Tensor]:
        """mel (B, C, T) log mel; wav (B, T * hop) the audio it was computed from."""
        with stage_outputs(self.generator) as stages:
            out = self.generator(mel)[:, 0].float()  # (B, T * hop)
        mel_l1 = (audio.mel_spectrogram(out, MEL) - audio.mel_spectrogram(wav, MEL)).abs().mean()
        stft = stft_loss(out, wav)
        losses = {"loss": mel_l1 + stft, "mel_l1": mel_l1.detach(), "stft": stft.detach()}
        if self._teacher:
            with torch.no_grad(), stage_outputs(self._teacher[0]) as targets:
                self._teacher[0](mel)
            feature = sum((s.float() - t.float()).abs().mean() / t.float().abs().mean().clamp_min(1e-6)
                          for s, t in zip(stages, targets)) / len(stages)
            losses["loss"] = losses["loss"] + self.features * feature
            losses["features"] = feature.detach()
        if self.critic is not None:
            term, logged = self._adversarial(out, wav)
            losses["loss"] = losses["loss"] + term
            losses.update(logged)
        return losses

    def _adversarial(self, out: torch.Tensor, wav: torch.Tensor) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """(the critic's loss plus, once on, the generator's adversarial loss; the values to log).
        out, wav (B, S)."""
        critics = [c for c in (self.critic, self.spectrum_critic) if c is not None]
        real = [verdict for c in critics for verdict in c(wav)]
        fake = [verdict for c in critics for verdict in c(out.detach())]
        critic = sum(critic_loss(r, f) for (r, _), (f, _) in zip(real, fake)) / len(real)
        logged = {"critic": critic.detach()}
        loss = CRITIC_LOSS_SCALE * critic
        if self.adversarial_on:
            # the generator's loss moves the generator only
            judged = [verdict for c in critics for verdict in judge_frozen(c, out)]
            gan = sum(generator_loss(scores) + self.feature_matching * feature_matching(real_features, features)
                      for (scores, features), (_, real_features) in zip(judged, real)) / len(judged)
            logged["gan"] = gan.detach()
            loss = loss + self.adversarial * gan
        return loss, logged


class VocoderTask(CorpusData):
    """A cheaper vocoder made from a trained one. `[task] base` names the generator to start from (the
    universal HiFi-GAN by default, or a hifigan component); `[model] resblock_kernel_sizes` the residual
    blocks it keeps (tts.models.hifigan.keep_resblocks); `[task] freeze` prefixes of parameters that stay
    as the base has them; `[task] features = W` weighs the pull of each stage towards the base's (see
    VocoderTraining; it runs the base on every batch); `[task] adversarial = W` adds a multi-period
    critic, which learns alone for the first `[task] critic_warmup` steps at `[task] critic_lr_scale`
    times the schedule's rate, and `[task] feature_matching` weighs its feature term (2 by default, as
    HiFi-GAN); `[task] spectrum_critic = true` adds a multi-resolution spectrogram critic beside it. Random crops of `data.crop_seconds` of corpus audio and its cached mel."""

    find_unused_parameters = False

    def __init__(self, config: TrainConfig, device: torch.device):
        self.config = config
        base_name = config.task_options.get("base", UNIVERSAL_HIFIGAN)
        base = load_hifigan(base_name)
        kernels = config.model.get("resblock_kernel_sizes", base.config.resblock_kernel_sizes)
        other = set(config.model) - {"resblock_kernel_sizes"}
        if other:
            raise TTSError(f"[model] of a vocoder run sets only resblock_kernel_sizes (the rest is {base_name}'s), "
                           f"not {', '.join(sorted(other))}")
        model_config, weights = keep_resblocks(base.state_dict(), base.config, list(kernels))
        generator = HifiGanGenerator(model_config)
        generator.load_state_dict(weights)
        weights_base = base_name if base_name == UNIVERSAL_HIFIGAN else getattr(base, WEIGHTS_BASE, None)
        if weights_base:  # its export leaves out the frozen tensors, which the base has
            setattr(generator, WEIGHTS_BASE, weights_base)
        frozen = list(config.task_options.get("freeze", []))
        params = dict(generator.named_parameters())
        unknown = [f for f in frozen if not any(within_module(name, f) for name in params)]
        if unknown:
            raise TTSError(f"[task] freeze: the vocoder has no parameters named {', '.join(unknown)}")
        for name, p in params.items():
            p.requires_grad_(not any(within_module(name, f) for f in frozen))
        options = config.task_options
        self.critic_warmup = int(options.get("critic_warmup", 0))
        self.module = VocoderTraining(generator, base, float(options.get("features", 0.0)),
                                      adversarial=float(options.get("adversarial", 0.0)),
                                      feature_matching=float(options.get("feature_matching", 2.0)),
                                      critic_lr_scale=float(options.get("critic_lr_scale", 1.0)),
                                      spectrum_critic=bool(options.get("spectrum_critic", False)))
        self.load_corpus()
        self.frames = max(1, int(config.data.crop_seconds * MEL.sample_rate / MEL.hop_length))

    def batches(self, split: str, rng: random.Random, shard: tuple[int, int]) -> Iterator[dict]:
        items = self.splits[split]
        hop = MEL.hop_length
        for idx in bucketed_batches([u.duration for u in items], self.config.data.batch_size, rng, shard):
            mels, wavs = [], []
            for i in idx:
                mel = self.corpus.mel(items[i])  # (C, T); frame t covers samples [t * hop, (t + 1) * hop)
                wav = audio.load_audio(items[i].audio, MEL.sample_rate)
                frames = min(mel.shape[1], len(wav) // hop)
                start = rng.randrange(max(1, frames - self.frames + 1))
                mel = mel[:, start:min(start + self.frames, frames)]  # never past the audio's end
                wav = wav[start * hop:(start + mel.shape[1]) * hop]
                pad = self.frames - mel.shape[1]  # utterances shorter than a crop: silence after them
                mels.append(np.pad(mel, ((0, 0), (0, pad)), constant_values=audio.LOG_SILENCE))
                wavs.append(np.pad(wav, (0, pad * hop)))
            yield {"mel": torch.from_numpy(np.stack(mels)).float(), "wav": torch.from_numpy(np.stack(wavs)).float()}

    def set_step(self, step: int) -> None:
        self.module.adversarial_on = step >= self.critic_warmup

    def export(self, module: nn.Module, run_dir: Path) -> Path:
        path = run_dir / EXPORT_FILE
        save_component(path, "hifigan", module.generator)
        return path


TASKS = {"dvae": DVAETask, "mel_reader": MelReaderTask, "gpt": GPTTask, "diffusion": DiffusionTask, "flow": FlowTask, "vocoder": VocoderTask}


def make_task(config: TrainConfig, device: torch.device):
    return TASKS[config.task](config, device)
