"""What a voice's tuned vectors learn from: the model's own training losses on the voice's clips, with
every weight frozen and only the conditioning vectors free.

* decoder (audio alone): the clip's DVAE codes are decoded by the speaker-conditioned DVAE (mel MSE
  against the clip, which tunes ``dvae_speaker``) and refined by the flow decoder (the flow-matching
  velocity MSE from the noised coarse mel to the clip's mel, which tunes ``flow_speaker``), on random
  windows of the clips, as the decoders were trained;
* GPT (needs the clips' text): the cross-entropy of each clip's codes after its text, which tunes the
  GPT's voice latent ``gpt``.

A small pull towards the zero-shot vectors (``anchor``) keeps them near the space the model knows. With
low-rank updates of the DVAE decoder (tts.models.lowrank) among the tuned tensors, the decoder itself
learns the voice; a code read-back (``read_back``) keeps what it says: the frozen DVAE encoder must read
the tuned decoder's mel back as the codes it was decoded from, on the clips' windows and on windows of
other speech (``unpaired``: the shipped voices' codes, which have no target in this voice), since the
GPT's codes are not the clips' codes.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F

from .. import audio
from ..models import lowrank
from ..text.normalize import normalize_text
from .clips import Clip

IGNORE = -100
READ_BACK_TAU = 0.1  # temperature of the read-back's logits (cosine to the unit-norm codebook)
UNPAIRED_WINDOWS = 2  # windows of other speech per step in the read-back
HELDOUT_TIMES = (0.1, 0.3, 0.5, 0.7, 0.9)  # fixed flow times of the held-out decoder loss
HELDOUT_SEED = 1234
HELDOUT_MAX_CODES = 256  # about 12 s: the centre of a longer held-out clip


@dataclass
class Example:
    """One clip as the losses see it."""

    name: str
    mel: torch.Tensor  # (C, 4 L) normalised log mel, cut to whole codes
    codes: torch.Tensor  # (L,) DVAE codes
    text: torch.Tensor | None  # (n,) token ids ending in the stop token; None: not used for the GPT


def prepare(tts, clips: list[Clip], texts: dict[str, str] | None) -> tuple[list[Example], list[str]]:
    """Clips (at tts.sample_rate) -> examples; also the names of clips too long for the GPT (left out of
    its loss)."""
    dvae, gpt = tts.models.dvae, tts.models.gpt
    f = dvae.config.downsample_factor
    examples, too_long = [], []
    with torch.no_grad():
        for clip in clips:
            wav = torch.from_numpy(clip.wav).to(tts.device)
            mel = audio.normalize_mel(audio.mel_spectrogram(wav, tts.diffusion_mel))  # (1, C, T)
            codes = dvae.encode(mel)[0]
            text = None
            if gpt is not None and texts is not None and clip.name in texts:
                ids = tts.models.tokenizer.encode(normalize_text(texts[clip.name]))
                if len(ids) <= tts.max_text_tokens and len(codes) <= gpt.config.max_mel_tokens:
                    text = torch.tensor(ids + [gpt.config.stop_text_token], device=tts.device)
                else:
                    too_long.append(clip.name)
            examples.append(Example(clip.name, mel[0, :, :len(codes) * f], codes, text))
    return examples, too_long


def speech_codes(tts, voices) -> list[torch.Tensor]:
    """The DVAE codes (L,) of every clip of `voices` (tts.voices.Voice): speech for the read-back."""
    return [tts.encode_speech(wav)[0] for voice in voices for wav in voice.load_clips(tts.sample_rate)]


class VoiceObjective:
    """The losses over `params` (Conditioning field -> tuned (1, D) tensor) for a model's frozen parts."""

    def __init__(self, models, train: list[Example], crop_codes: int, noise_draws: int, anchor: float,
                 start: dict[str, torch.Tensor], read_back: float = 0.0, unpaired: list[torch.Tensor] = ()):
        self.dvae, self.flow, self.gpt = models.dvae, models.flow, models.gpt
        self.train = train
        self.crop_codes = max(1, min([crop_codes] + [len(e.codes) for e in train]))
        self.noise_draws = noise_draws
        self.anchor = anchor
        self.read_back_weight = read_back
        self.unpaired = [c for c in unpaired if len(c) >= self.crop_codes]
        self.start = {k: v.detach().clone() for k, v in start.items()}
        self.scale = {k: v.pow(2).mean().sqrt().clamp_min(1e-3) for k, v in self.start.items()}
        self.gpt_examples = [e for e in train if e.text is not None]

    # -- training ------------------------------------------------------------------------------
    def loss(self, params: dict[str, torch.Tensor], generator: torch.Generator) -> tuple[torch.Tensor, dict]:
        """The loss of one step (random decoder windows and flow noise from `generator`) and its parts."""
        total = torch.zeros((), device=self.dvae.quantizer.codebook.device)
        parts = {}
        if "flow_speaker" in params or "dvae_speaker" in params:
            codes, mel = self._windows(generator)
            weights = self.decoder_weights(params)  # merged once a step, for both losses
            dvae_mse, flow_mse = self.decoder_losses(params, codes, mel, generator, weights=weights)
            total = total + dvae_mse + flow_mse
            parts["dvae"], parts["flow"] = dvae_mse.item(), flow_mse.item()
            if weights and self.read_back_weight and self.dvae.conditioned:
                windows = torch.cat([codes, self._unpaired_windows(generator)])
                ce = self.read_back(windows, params["dvae_speaker"], weights)
                total = total + self.read_back_weight * ce
                parts["read_back"] = ce.item()
        if "gpt" in params and self.gpt_examples:
            ce = self.gpt_loss(params["gpt"], self.gpt_examples)
            total = total + ce
            parts["gpt"] = ce.item()
        for name, value in params.items():
            if not lowrank.is_factor(name):
                total = total + self.anchor * ((value - self.start[name]) / self.scale[name]).pow(2).mean()
        return total, parts

    def decoder_weights(self, params: dict[str, torch.Tensor]) -> dict[str, torch.Tensor] | None:
        """The DVAE decoder's weights with the low-rank updates among `params` merged in (None: none)."""
        factors = {k: v for k, v in params.items() if lowrank.is_factor(k)}
        return lowrank.merge(self.dvae, factors) if factors else None

    def read_back(self, codes: torch.Tensor, speaker: torch.Tensor, weights: dict[str, torch.Tensor]) -> torch.Tensor:
        """Cross-entropy of the frozen DVAE encoder reading the tuned decoder's mel of `codes` (B, w) back."""
        mel = self.dvae.decode_mel(codes, speaker.expand(codes.shape[0], -1), weights=weights)
        z = F.normalize(self.dvae.encoder(mel), dim=1)  # (B, d, w)
        logits = torch.einsum("bdw,kd->bkw", z, self.dvae.quantizer.codebook) / READ_BACK_TAU
        return F.cross_entropy(logits.float(), codes)

    def _unpaired_windows(self, generator: torch.Generator) -> torch.Tensor:
        """UNPAIRED_WINDOWS random windows (n, w) of the other speech's codes (none when there is none)."""
        w = self.crop_codes
        if not self.unpaired:
            return torch.zeros(0, w, dtype=torch.long, device=self.dvae.quantizer.codebook.device)
        windows = []
        for _ in range(UNPAIRED_WINDOWS):
            codes = self.unpaired[int(torch.randint(0, len(self.unpaired), (1,), generator=generator))]
            start = int(torch.randint(0, len(codes) - w + 1, (1,), generator=generator))
            windows.append(codes[start:start + w])
        return torch.stack(windows)

    def _windows(self, generator: torch.Generator) -> tuple[torch.Tensor, torch.Tensor]:
        """One random window of `crop_codes` codes from each training clip: codes (B, w), mel (B, C, f w)."""
        w, f = self.crop_codes, self.dvae.config.downsample_factor
        codes, mels = [], []
        for example in self.train:
            start = int(torch.randint(0, len(example.codes) - w + 1, (1,), generator=generator))
            codes.append(example.codes[start:start + w])
            mels.append(example.mel[:, start * f:(start + w) * f])
        return torch.stack(codes), torch.stack(mels)

    def decoder_losses(self, params, codes: torch.Tensor, mel: torch.Tensor, generator: torch.Generator,
                       times: torch.Tensor | None = None, weights: dict[str, torch.Tensor] | None = None,
                       ) -> tuple[torch.Tensor, torch.Tensor]:
        """(DVAE mel MSE, flow-matching MSE) of windows codes (B, w), mel (B, C, f w); flow times are drawn
        from `generator` (`noise_draws` per window) unless given as `times` (one per window); `weights`: the
        DVAE decoder's weights with the voice's updates merged in (:meth:`decoder_weights`), or None."""
        b = codes.shape[0]
        speaker = params.get("dvae_speaker")
        zero = torch.zeros((), device=mel.device)
        if self.dvae.conditioned:
            coarse = self.dvae.decode_mel(codes, speaker.expand(b, -1), weights=weights)
            dvae_mse = F.mse_loss(coarse, mel)
        else:
            with torch.no_grad():
                coarse = self.dvae.decode(codes)
            dvae_mse = zero
        if self.flow is None:
            return dvae_mse, zero
        draws = 1 if times is not None else self.noise_draws
        coarse, codes, mel = (x.repeat(draws, *[1] * (x.dim() - 1)) for x in (coarse.detach(), codes, mel))
        t = times if times is not None else torch.rand(coarse.shape[0], generator=generator, device=mel.device)
        noise = torch.randn(coarse.shape, generator=generator, device=mel.device)
        x0 = coarse + self.flow.config.prior_noise * noise
        x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * mel
        velocity = self.flow(x_t, t, coarse, codes, params["flow_speaker"].expand(coarse.shape[0], -1))
        return dvae_mse, F.mse_loss(velocity, mel - x0)

    def gpt_loss(self, latent: torch.Tensor, examples: list[Example]) -> torch.Tensor:
        """Cross-entropy of the examples' codes after their text, with voice latent (1, D)."""
        cfg = self.gpt.config
        n = max(len(e.text) for e in examples)
        m = max(len(e.codes) for e in examples)
        text = torch.stack([F.pad(e.text, (0, n - len(e.text)), value=cfg.stop_text_token) for e in examples])
        codes = torch.stack([F.pad(e.codes, (0, m - len(e.codes)), value=cfg.stop_mel_token) for e in examples])
        lengths = torch.tensor([len(e.codes) for e in examples], device=codes.device)
        _, mel_logits = self.gpt(latent.expand(len(examples), -1), text, codes, lengths)
        _, target = self.gpt.targets(text, codes, lengths)
        positions = torch.arange(target.shape[1], device=target.device)[None, :]
        target = target.masked_fill(positions > lengths[:, None], IGNORE)
        return F.cross_entropy(mel_logits.float(), target, ignore_index=IGNORE)

    # -- judging -------------------------------------------------------------------------------
    @torch.no_grad()
    def heldout_losses(self, params: dict[str, torch.Tensor], example: Example) -> dict[str, float]:
        """The losses on a clip not trained on, deterministic (fixed windows, times and noise): "decoder"
        (DVAE + flow) when the decoder is tuned, "gpt" when the GPT is and the clip has text."""
        out = {}
        if "flow_speaker" in params or "dvae_speaker" in params:
            f = self.dvae.config.downsample_factor
            length = min(len(example.codes), HELDOUT_MAX_CODES)
            start = (len(example.codes) - length) // 2
            codes = example.codes[start:start + length][None].expand(len(HELDOUT_TIMES), -1)
            mel = example.mel[:, start * f:(start + length) * f][None].expand(len(HELDOUT_TIMES), -1, -1)
            generator = torch.Generator(mel.device).manual_seed(HELDOUT_SEED)
            times = torch.tensor(HELDOUT_TIMES, device=mel.device)
            dvae_mse, flow_mse = self.decoder_losses(params, codes, mel, generator, times, self.decoder_weights(params))
            out["decoder"] = float(dvae_mse + flow_mse)
        if "gpt" in params and example.text is not None:
            out["gpt"] = float(self.gpt_loss(params["gpt"], [example]))
        return out
