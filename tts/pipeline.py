"""TextToSpeech: text -> GPT code candidates -> (CLVP rerank) -> latents -> diffusion -> vocoder -> audio.

Our small models replace the diffusion stage by the DVAE decoder's coarse mel refined by a flow
decoder (model card ``decoder = "flow"``); :meth:`TextToSpeech.reconstruct` runs that half alone,
speech -> codes -> speech.

    tts = TextToSpeech("path/to/model")           # a Tortoise directory or one of ours
    voice = VoiceLibrary().get("joe")
    wav = tts.synthesize("Hello there.", voice, preset("fast"))   # float32 at tts.sample_rate
    for chunk in tts.stream("Hello there.", voice, preset("fast")):   # audio as it is ready
        ...
"""

from __future__ import annotations

import contextlib
import logging
import os
import secrets
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from . import audio
from .adapters import AdapterStore, VoiceAdapter
from .checkpoints import ROLES, ModelBundle, ModelCard, load_model_dir
from .device import resolve_device
from .errors import TTSError
from .models.univnet import UnivNet
from .precision import autocast, half_dtype, prepare
from .precision import vocoder_precision as choose_vocoder_precision
from .sampling.fixup import end_positions
from .sampling.generate import generate_mel, sample_codes_many, stream_codes
from .sampling.logits import minimum_codes
from .sampling.options import Options
from .sampling.rerank import codes_before_stop, likelihood_scores
from .streaming import LatentAudioStream, StreamSettings
from .text.normalize import has_speech
from .text.split import Chunk, TextSplitter
from .silence import is_silent
from .voices import Voice, cache_dir

log = logging.getLogger(__name__)

DEFAULT_MODEL_DIR = Path(__file__).resolve().parent.parent / "checkpoints" / "default"

# progress(units_done, units_total): one unit per candidate batch row and per diffusion step.
Progress = Callable[[int, int], None]


@dataclass
class Candidates:
    """The GPT's sampled code sequences for one text chunk (:meth:`TextToSpeech.sample_candidates`)."""

    text_ids: torch.Tensor  # (n,) the chunk's token ids, stop token included
    codes: torch.Tensor  # (N, L) one row per candidate, padded with the stop code


@dataclass
class Conditioning:
    """A voice as the models see it (the parts the model has; the others are None)."""

    gpt: torch.Tensor | None = None  # (1, D_gpt)
    diffusion: torch.Tensor | None = None  # (1, D_cond): Tortoise-style diffusion decoder
    dvae_speaker: torch.Tensor | None = None  # (1, S): speaker-conditioned DVAE decoder
    flow_speaker: torch.Tensor | None = None  # (1, S'): flow decoder
    # a fine-tuned voice's own DVAE decoder weights (name -> tensor, tts.models.lowrank.merge); None: the model's
    dvae_weights: dict[str, torch.Tensor] | None = None

    FIELDS = ("gpt", "diffusion", "dvae_speaker", "flow_speaker")  # the vectors (cached per voice)

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: getattr(self, k) for k in self.FIELDS if getattr(self, k) is not None}

    def to_float(self) -> "Conditioning":
        return Conditioning(**{k: v.float() for k, v in self.tensors().items()}, dvae_weights=self.dvae_weights)


MAX_RECONSTRUCT_SECONDS = 600.0  # longer recordings are refused (split them first)
MIN_RECONSTRUCT_SECONDS = 0.1


def text_splitter(tokenizer, gpt_config, card: ModelCard) -> TextSplitter:
    """How text is cut for a model: in its tokenizer's ids, at most what its GPT takes in one chunk
    and, where its card says, no more than the text lengths it was trained on."""
    limit = gpt_config.max_text_tokens - 1  # one stop token is appended
    if card.chunk_tokens is not None:
        limit = min(limit, card.chunk_tokens)
    return TextSplitter(tokenizer.encode, limit)


def model_text_splitter(model_dir: str | os.PathLike | None = None) -> TextSplitter:
    """The text splitter of the model in `model_dir` (default: the bundled model), read without loading
    its weights: what narration plans with before the model is loaded."""
    from .checkpoints import read_text_frontend

    return text_splitter(*read_text_frontend(Path(model_dir) if model_dir else default_model_dir()))


def default_model_dir() -> Path:
    if (DEFAULT_MODEL_DIR / "model.json").is_file():
        return DEFAULT_MODEL_DIR
    raise TTSError(
        "no model is installed: pass --model-dir DIR with a Tortoise model directory (autoregressive.pth, "
        "diffusion_decoder.pth, vocoder.pth, clvp2.pth, tokenizer.json, mel_norms.pth) or one made by "
        f"`tts convert-tortoise` or `tts export-model` (the bundled default model, {DEFAULT_MODEL_DIR}, is missing)"
    )


class TextToSpeech:
    """`precision`: "fp32", or "bf16" / "fp16" (half-precision compute through autocast; see tts.precision).
    `vocoder_precision`: "auto" (vocoders follow `precision` on CUDA; on the CPU they run in bf16 where
    it is native, else float32: `tts.precision.vocoder_precision`), or a precision."""

    def __init__(self, model_dir: str | os.PathLike | None = None, device: str | None = "cpu",
                 cache: str | os.PathLike | None = None, precision: str = "fp32",
                 adapters: str | os.PathLike | None = None, use_adapters: bool = True,
                 vocoder_precision: str = "auto"):
        """`adapters`: the directory of fine-tuned voice adapters (tts.adapters; default: in the user data
        directory); `use_adapters=False` speaks every voice zero-shot."""
        self.device = resolve_device(device)
        half_dtype(precision)  # TTSError for an unknown name
        self.precision = precision
        self.vocoder_precision = choose_vocoder_precision(self.device, precision, vocoder_precision)
        self.models: ModelBundle = load_model_dir(model_dir or default_model_dir(), self.device)
        for role in ROLES:
            module = getattr(self.models, role)
            if module is not None:
                vocoding = role in ("vocoder", "latent_decoder")
                prepare(module, self.vocoder_precision if vocoding else precision)
        card = self.models.card
        self.fixup = card.fixup()
        gpt = self.models.gpt
        self.splitter = text_splitter(self.models.tokenizer, gpt.config, card) if gpt is not None else None
        self.cond_mel = audio.MEL_SPECS[card.cond_mel]
        self.diffusion_mel = audio.MEL_SPECS[card.diffusion_mel]
        self.cache_dir = cache_dir(cache) / "latents" / self.models.model_id
        self.adapters = AdapterStore(adapters) if use_adapters else None

    def inference(self) -> contextlib.ExitStack:
        """No autograd, and autocast to this instance's precision: wrap every model call in it."""
        stack = contextlib.ExitStack()
        stack.enter_context(torch.no_grad())
        stack.enter_context(autocast(self.device, self.precision))
        return stack

    @property
    def sample_rate(self) -> int:
        return self.diffusion_mel.sample_rate

    @property
    def max_text_tokens(self) -> int:
        """Most token ids of one chunk (the GPT's limit, less the stop token appended)."""
        return self.text_splitter.max_tokens

    @property
    def gpt(self):
        """The GPT; TTSError for a decoder-only model (which can only reconstruct speech)."""
        if self.models.gpt is None:
            raise TTSError(f"the model in {self.models.path} has no GPT: it can reconstruct speech, not read text")
        return self.models.gpt

    @property
    def text_splitter(self) -> TextSplitter:
        """:attr:`splitter`; TTSError for a decoder-only model."""
        self.gpt  # noqa: B018 - raises for a model without a GPT
        return self.splitter

    # -- voices ---------------------------------------------------------------------------------
    def conditioning(self, voice: Voice) -> Conditioning:
        """The voice as the models see it: its zero-shot conditioning (:meth:`base_conditioning`), with
        the vectors (and decoder updates) of its fine-tuned adapter for this model in their place when it has
        one."""
        fingerprint = voice.fingerprint()
        cond = self.base_conditioning(voice, fingerprint)
        adapter = self.adapter(voice, fingerprint)
        return adapter.apply(cond, self.models.dvae) if adapter is not None else cond

    def adapter(self, voice: Voice, fingerprint: str | None = None) -> VoiceAdapter | None:
        """The fine-tuned adapter of `voice` (its clips as they are now) for this model, or None."""
        if self.adapters is None:
            return None
        return self.adapters.load(self.models.model_id, voice, fingerprint)

    def adapter_stamp(self, voice: Voice, fingerprint: str | None = None) -> int | None:
        """Changes whenever the voice's adapter for this model does (None: it has none), without reading it."""
        if self.adapters is None:
            return None
        return self.adapters.stamp(self.models.model_id, voice, fingerprint)

    @torch.no_grad()
    def base_conditioning(self, voice: Voice, fingerprint: str | None = None) -> Conditioning:
        """The voice's zero-shot conditioning latents, from the cache or computed from its clips (then cached)."""
        from safetensors.torch import load_file, save_file

        tag = "" if self.precision == "fp32" else f"-{self.precision}"  # latents computed in half precision differ
        cached = self.cache_dir / f"{voice.name}-{(fingerprint or voice.fingerprint())[:20]}{tag}.safetensors"
        if cached.is_file():
            try:
                t = load_file(str(cached), device=str(self.device))
                return Conditioning(**{k: t.get(k) for k in Conditioning.FIELDS})
            except Exception:  # a damaged cache entry is recomputed
                log.warning("ignoring unreadable cache entry %s", cached)
        cond = self.conditioning_from_clips(voice.load_clips(self.cond_mel.sample_rate))
        try:
            from .fileio import atomic_path

            cached.parent.mkdir(parents=True, exist_ok=True)
            with atomic_path(cached) as tmp:
                save_file({k: v.cpu().contiguous() for k, v in cond.tensors().items()}, str(tmp))
        except (OSError, TTSError) as exc:
            log.warning("cannot cache conditioning latents: %s", exc)
        return cond

    def conditioning_from_clips(self, clips: list[np.ndarray]) -> Conditioning:
        """Clips (mono float32 at the GPT conditioning rate) -> conditioning latents (float32)."""
        with self.inference():
            cond = self._conditioning_from_clips(clips)
        return cond.to_float()

    def _conditioning_from_clips(self, clips: list[np.ndarray]) -> Conditioning:
        card, models = self.models.card, self.models
        gpt_mels, diffusion_mels = [], []
        for clip in clips:
            wav = torch.from_numpy(clip).to(self.device)
            gpt_mels.append(self._gpt_cond_mel(wav, card.cond_samples))
            if self.diffusion_mel.sample_rate != self.cond_mel.sample_rate:
                wav = audio.sinc_resample(wav, self.cond_mel.sample_rate, self.diffusion_mel.sample_rate)
            wav = _pad_or_trim(wav, card.diffusion_cond_samples)  # the first N samples, as Tortoise
            diffusion_mels.append(audio.mel_spectrogram(wav, self.diffusion_mel)[0])
        cond = Conditioning(None)
        if models.gpt is not None:
            cond.gpt = models.gpt.get_conditioning(torch.stack(gpt_mels)[None])  # (1, n_clips, C, T) -> (1, D)
        if models.diffusion is not None:
            cond.diffusion = models.diffusion.get_conditioning(torch.stack(diffusion_mels)[None])
        if card.decoder in ("flow", "dvae"):
            # Speaker vectors: the mean over clips of each clip's vector (clips cut to the same
            # length as the GPT's, from the centre), from the trained-on range [-1, 1] mels.
            refs = torch.stack([audio.normalize_mel(audio.mel_spectrogram(_centre(torch.from_numpy(c).to(self.device),
                                                                                   card.cond_samples), self.cond_mel))[0]
                                for c in clips])  # (n_clips, C, F)
            if models.dvae.conditioned:
                cond.dvae_speaker = models.dvae.speaker(refs).mean(0, keepdim=True)
            if models.flow is not None:
                cond.flow_speaker = models.flow.speaker(refs).mean(0, keepdim=True)
        return cond

    def _gpt_cond_mel(self, wav: torch.Tensor, samples: int) -> torch.Tensor:
        # Tortoise takes a random crop; the centre keeps latents reproducible
        mel = audio.mel_spectrogram(_pad_or_trim(_centre(wav, samples), samples), self.cond_mel)
        if self.models.card.cond_norm == "mel_norms":
            mel = audio.normalize_by_norms(mel, self.models.mel_norms)
        elif self.models.card.cond_norm == "range":
            mel = audio.normalize_mel(mel)
        else:
            raise TTSError(f"unknown conditioning normalisation {self.models.card.cond_norm!r} in the model card")
        return mel[0]  # (C, T)

    # -- text -----------------------------------------------------------------------------------
    def encode(self, text: str) -> list[int]:
        """Token ids of one chunk of (normalised) text."""
        ids = self.models.tokenizer.encode(text)
        if not ids or not has_speech(text):
            raise TTSError(f"nothing to say in {text.strip()[:60]!r}: the text has no pronounceable words")
        if len(ids) > self.max_text_tokens:
            raise TTSError(f"text is too long for one chunk ({len(ids)} tokens, at most {self.max_text_tokens})")
        return ids

    def split(self, text: str) -> list[Chunk]:
        """Normalise text and split it into chunks that fit the model (:attr:`splitter`, in its tokens).

        Chunks with nothing to pronounce (stray punctuation) are dropped; TTSError if none is left.
        """
        if not text or not text.strip():
            raise TTSError("the text is empty")
        speakable = self.text_splitter.split(text)
        if not speakable:
            raise TTSError(f"nothing to say in {text.strip()[:60]!r}: the text has no pronounceable words")
        return speakable

    # -- synthesis ------------------------------------------------------------------------------
    def synthesize(self, text: str, voice: Voice | Conditioning, options: Options | None = None,
                   progress: Progress | None = None) -> np.ndarray:
        """Speak `text` (any length) in `voice` -> mono float32 audio at :attr:`sample_rate`."""
        options = self.check_options(options or Options())
        chunks = self.split(text)
        cond = voice if isinstance(voice, Conditioning) else self.conditioning(voice)
        pieces = self.synthesize_chunks([c.text for c in chunks], cond, options, progress=progress)
        out = []
        for chunk, wav in zip(chunks, pieces):
            out.append(wav)
            if chunk is not chunks[-1]:
                pause = options.paragraph_pause if chunk.paragraph_end else options.sentence_pause
                out.append(np.zeros(int(pause * self.sample_rate), dtype=np.float32))
        return np.concatenate(out)

    def make_generator(self, options: Options) -> torch.Generator:
        seed = options.seed if options.seed is not None else secrets.randbits(63)
        log.info("seed %d", seed)
        return torch.Generator(self.device).manual_seed(seed)

    def check_options(self, options: Options) -> Options:
        """`options`, validated for this model: TTSError for settings its decoder cannot run."""
        options = options.validate()
        if self.models.card.decoder == "diffusion" and options.diffusion_steps < 2:
            raise TTSError(f"the diffusion decoder needs at least 2 steps, got {options.diffusion_steps}")
        return options

    def synthesize_chunks(self, texts: list[str], cond: Conditioning, options: Options,
                          generator: torch.Generator | None = None, progress: Progress | None = None,
                          ) -> list[np.ndarray]:
        """Several chunks that each fit the model -> one audio array (S_i,) per chunk.

        Up to `options.text_batch` chunks are sampled by the GPT together (one batch of
        candidates x chunks); latents, diffusion and vocoding then run chunk by chunk.
        """
        options = self.check_options(options)
        generator = generator or self.make_generator(options)
        per_chunk = options.candidates + options.diffusion_steps
        total = per_chunk * len(texts)
        results: list[np.ndarray] = []
        for first in range(0, len(texts), options.text_batch):
            group = texts[first:first + options.text_batch]
            base = per_chunk * first

            def report(units: int, base: int = base) -> None:
                if progress is not None:
                    progress(min(base + units, total), total)

            with self.inference():
                results += self._synthesize_group(group, cond, options, generator, report)
        return results

    # -- streaming ------------------------------------------------------------------------------
    def stream(self, text: str, voice: Voice | Conditioning, options: Options | None = None, *,
               decoder: str = "auto", settings: StreamSettings | None = None) -> Iterator[np.ndarray]:
        """Speak `text`, yielding mono float32 chunks at :attr:`sample_rate` as soon as each is ready.

        `decoder`: "latent" streams within each text chunk through the model's HiFi-GAN latent decoder
        (Tortoise's fast path: one candidate, no reranking, no diffusion; `settings` say when chunks
        are cut); "diffusion" yields each text chunk (about a sentence) once the full pipeline has
        made it; "auto" takes "latent" when the model has a latent decoder at this sample rate.
        Pauses between text chunks are yielded as chunks of silence.
        """
        options = (options or Options()).validate()
        use_latent = self._stream_mode(decoder) == "latent"
        chunks = self.split(text)
        cond = voice if isinstance(voice, Conditioning) else self.conditioning(voice)
        generator = self.make_generator(options)
        settings = (settings or StreamSettings()).validate()
        for i, chunk in enumerate(chunks):
            if use_latent:
                yield from self._stream_latent(chunk.text, cond, options, generator, settings)
            else:
                yield self.synthesize_chunks([chunk.text], cond, options, generator)[0]
            if i + 1 < len(chunks):
                pause = options.paragraph_pause if chunk.paragraph_end else options.sentence_pause
                yield np.zeros(int(pause * self.sample_rate), dtype=np.float32)

    def _stream_mode(self, decoder: str) -> str:
        latent = self.models.latent_decoder
        usable = latent is not None and latent.config.sample_rate == self.sample_rate
        if decoder == "auto":
            return "latent" if usable else "diffusion"
        if decoder == "latent" and not usable:
            raise TTSError("this model has no latent decoder at its output sample rate: stream with the diffusion "
                           "decoder instead")
        if decoder not in ("latent", "diffusion"):
            raise TTSError(f"unknown stream decoder {decoder!r} (use auto, latent or diffusion)")
        return decoder

    def _stream_latent(self, text: str, cond: Conditioning, options: Options, generator: torch.Generator,
                       settings: StreamSettings) -> Iterator[np.ndarray]:
        gpt = self.gpt
        stop = gpt.config.stop_mel_token
        tokens = self.encode(text)
        ids = torch.tensor(tokens + [gpt.config.stop_text_token], device=self.device)[None]  # (1, n)
        max_tokens = min(options.max_mel_tokens, gpt.config.max_mel_tokens)
        streamer = LatentAudioStream(self.models.latent_decoder, cond.gpt, settings,
                                     samples_per_latent=gpt.config.samples_per_code)
        with self.inference():
            prefix = gpt.prefix_embeddings(cond.gpt.reshape(1, -1), ids)
            reports = stream_codes(gpt, prefix, max_tokens, options.sampling(), generator,
                                   self.min_codes(len(tokens), options))
        next_chunk = settings.first_tokens
        while not streamer.finished:
            with self.inference():
                n, codes, final = next(reports)
                if not final and n < next_chunk:
                    continue
                if final:
                    fixed = self.fixup.fix(codes, stop, gpt.config.start_mel_token)
                    codes = fixed[:, :max(1, self.fixup.speech_length(fixed[0]))]
                else:
                    stops = end_positions(codes[0, :n], stop, gpt.config.start_mel_token)
                    codes = codes[:, :int(stops[0]) if len(stops) else n]
                    if codes.shape[1] == 0:
                        continue
                latents = gpt(cond.gpt, ids, codes, return_latent=True)  # (1, n, D)
                with autocast(self.device, self.vocoder_precision):
                    chunk = streamer.push(latents, final=final)
                next_chunk = n + settings.every_tokens
            if len(chunk):
                yield chunk

    def _synthesize_group(self, texts: list[str], cond: Conditioning, options: Options,
                          generator: torch.Generator, report: Callable[[int], None]) -> list[np.ndarray]:
        candidates = self.sample_candidates(texts, cond, options, generator, progress=report)
        results = []
        for i, sampled in enumerate(candidates):
            offset = len(texts) * options.candidates + i * options.diffusion_steps

            def diffusion_progress(step: int, offset: int = offset) -> None:
                report(offset + step)

            results.append(self.decode_candidates(sampled, cond, options, generator, progress=diffusion_progress))
        return results

    def sample_candidates(self, texts: list[str], cond: Conditioning | list[Conditioning], options: Options,
                          generator: torch.Generator, progress: Callable[[int], None] | None = None,
                          ) -> list[Candidates]:
        """The GPT stage for several chunks that each fit the model: `options.candidates` code sequences per
        chunk, rows of all chunks sampled together in batches of `options.batch_size` rows (at least one row
        per chunk). `cond` is one voice for every chunk or a list with one voice per chunk.
        `progress(rows_done)` after each batch. TTSError if a chunk has nothing to say or is too long."""
        gpt = self.gpt
        conds = cond if isinstance(cond, list) else [cond] * len(texts)
        stop_text = gpt.config.stop_text_token
        tokens = [self.encode(t) for t in texts]
        ids = [torch.tensor(t + [stop_text], device=self.device) for t in tokens]
        minimums = [self.min_codes(len(t), options) for t in tokens]
        with self.inference():
            all_codes = sample_codes_many(
                gpt, [c.gpt for c in conds], ids, num_samples=options.candidates,
                batch_size=max(options.batch_size, len(texts)),
                max_tokens=min(options.max_mel_tokens, gpt.config.max_mel_tokens), params=options.sampling(),
                generator=generator, progress=progress, min_codes=minimums if any(minimums) else None,
            )  # one (N, L) per text, padded with the stop code
        return [Candidates(text_ids, codes) for text_ids, codes in zip(ids, all_codes)]

    def min_codes(self, text_tokens: int, options: Options) -> int:
        """Codes a chunk of `text_tokens` tokens (its stop token not counted) draws before it may stop:
        `options.min_length_ratio` of what this model makes for that much text (the card's
        `codes_per_text_token`); 0 for a model whose card does not say (Tortoise's)."""
        return minimum_codes(text_tokens, options.min_length_ratio, self.models.card.codes_per_text_token)

    def decode_candidates(self, sampled: Candidates, cond: Conditioning, options: Options,
                          generator: torch.Generator, progress: Callable[[int], None] | None = None) -> np.ndarray:
        """The rest for one chunk: rerank its candidates, the decoder (diffusion, or the DVAE with its flow
        decoder), vocoder -> mono float32 audio (S,). `progress(step)` after each decoder step."""
        gpt = self.gpt
        with self.inference():
            fixed = self.fixup.fix(sampled.codes, gpt.config.stop_mel_token, gpt.config.start_mel_token)
            best = self.rerank(sampled.text_ids, sampled.codes, cond)
            length = max(1, self.fixup.speech_length(fixed[best]))
            if self.models.card.decoder in ("flow", "dvae"):
                mel = self.decode_codes(fixed[best:best + 1, :length], cond, options.diffusion_steps, generator)
                if progress is not None:
                    progress(options.diffusion_steps)
                return self.vocode(audio.denormalize_mel(mel), generator)
            if self.models.card.diffusion_input == "codes":
                aligned = fixed[best:best + 1, :length]  # (1, n) codes
            else:  # (1, n, D) latents
                aligned = gpt(cond.gpt, sampled.text_ids[None], fixed[best:best + 1, :length], return_latent=True)
            mel = generate_mel(
                self.models.diffusion, aligned, cond.diffusion, steps=options.diffusion_steps,
                cond_free=options.cond_free, cond_free_k=options.cond_free_k,
                temperature=options.diffusion_temperature, sampler=options.sampler, generator=generator,
                frame_ratio=self.frame_ratio, progress=None if progress is None else lambda step, _total: progress(step),
            )
            return self.vocode(audio.denormalize_mel(mel), generator)

    # -- the decoder half: codes <-> speech ---------------------------------------------------------
    def decode_codes(self, codes: torch.Tensor, cond: Conditioning, steps: int,
                     generator: torch.Generator | None = None, residual: torch.Tensor | None = None) -> torch.Tensor:
        """DVAE codes (1, L) -> normalised mel (1, C, 4 L): the DVAE decoder's coarse mel, refined by
        `steps` Euler steps of the flow decoder (a "dvae" model has none: the coarse mel as it is);
        `residual` (1, n, L): the codes of the first n residual levels of a DVAE with residual
        codebooks, None for the first level alone; call inside :meth:`inference`."""
        dvae, flow = self._flow_decoder()
        coarse = dvae.decode(codes, cond.dvae_speaker, weights=cond.dvae_weights, residual=residual)
        if flow is None:
            return coarse
        return flow.generate(coarse, codes, steps=steps, generator=generator, speaker=cond.flow_speaker)

    def _flow_decoder(self):
        if self.models.card.decoder not in ("flow", "dvae") or self.models.dvae is None:
            raise TTSError("this model has no DVAE and flow decoder: it cannot turn speech into codes and back")
        return self.models.dvae, self.models.flow

    def encode_speech(self, wav: np.ndarray) -> torch.Tensor:
        """Mono float32 audio at :attr:`sample_rate` -> DVAE codes (1, L): the first level, which
        the GPT predicts."""
        return self.encode_speech_levels(wav)[0]

    def encode_speech_levels(self, wav: np.ndarray) -> tuple[torch.Tensor, torch.Tensor | None]:
        """Mono float32 audio -> (codes (1, L), residual codes (1, levels, L), or None when the DVAE
        has no residual codebooks)."""
        dvae, _ = self._flow_decoder()
        check_speech(wav, self.sample_rate)
        with self.inference():
            mel = audio.mel_spectrogram(torch.from_numpy(wav.astype(np.float32)).to(self.device), self.diffusion_mel)
            mel = audio.normalize_mel(mel)
            if dvae.has_residual:
                return dvae.encode_residual(mel)
            return dvae.encode(mel), None

    def reconstruct(self, wav: np.ndarray, voice: Voice | Conditioning | None = None, steps: int = 8,
                    seed: int | None = 0) -> np.ndarray:
        """Speech -> the model's codes -> speech (mono float32 at :attr:`sample_rate`).

        In the recording's own voice (conditioned on the recording itself) or, with `voice`, in
        another: the ceiling of what the GPT can reach, and a re-voicing of a recording."""
        codes, residual = self.encode_speech_levels(wav)
        if voice is None:
            cond = self.conditioning_from_clips([wav.astype(np.float32)])
        else:
            cond = voice if isinstance(voice, Conditioning) else self.conditioning(voice)
        generator = torch.Generator(self.device).manual_seed(seed if seed is not None else secrets.randbits(63))
        with self.inference():
            mel = self.decode_codes(codes, cond, steps, generator, residual)
            return self.vocode(audio.denormalize_mel(mel), generator)

    @property
    def frame_ratio(self):
        from fractions import Fraction

        gpt = self.gpt.config
        return Fraction(gpt.samples_per_code * self.diffusion_mel.sample_rate,
                        audio.HOP_LENGTH * self.cond_mel.sample_rate)

    def rerank(self, text_ids: torch.Tensor, codes: torch.Tensor, cond: Conditioning | None = None) -> int:
        """Index of the best row of sampled `codes` (N, L), padded with the stop code: by CLVP on the
        fixed-up codes when the model has one (as Tortoise); else by its code reader (how well each
        row reads as the text); else by the GPT's own likelihood (needs `cond`); 0 when there is no
        choice."""
        if codes.shape[0] == 1:
            return 0
        clvp = self.models.clvp
        if clvp is not None:
            fixed = self.fixup.fix(codes, self.gpt.config.stop_mel_token, self.gpt.config.start_mel_token)
            scores = torch.cat([clvp(text_ids[None].expand(len(batch), -1), batch) for batch in fixed.split(16)])
        elif self.models.reader is not None and self.models.dvae is not None:
            scores = self.reading_scores(text_ids, codes)
        elif cond is not None:
            scores = likelihood_scores(self.gpt, cond.gpt, text_ids, codes)
        else:
            return 0
        return int(torch.topk(scores, 1).indices[0])

    def reading_scores(self, text_ids: torch.Tensor, codes: torch.Tensor) -> torch.Tensor:
        """How well each row of `codes` (N, L; padded with the stop code) reads as the phones of
        `text_ids`, by the model's code reader: CTC log-likelihood per phone (N,), higher is better."""
        lengths = codes_before_stop(codes, self.gpt.config.stop_mel_token)
        book = self.models.dvae.quantizer.codebook
        quantised = book[codes.clamp(max=book.shape[0] - 1)].transpose(1, 2)  # (N, codebook_dim, L)
        phones = self.models.tokenizer.phone_ids(text_ids)
        return self.models.reader.scores(quantised, lengths, phones)

    def vocode(self, log_mel: torch.Tensor, generator: torch.Generator) -> np.ndarray:
        """Log-mel (1, M, T) -> float32 audio (S,); call inside :meth:`inference`."""
        vocoder = self.models.vocoder
        with autocast(self.device, self.vocoder_precision):
            if isinstance(vocoder, UnivNet):
                wav = vocoder.vocode(log_mel.float(), generator=generator)
            else:
                wav = vocoder(log_mel.float())[:, 0]
        return wav[0].float().clamp(-1, 1).cpu().numpy()


def check_speech(wav: np.ndarray, sample_rate: int) -> None:
    """TTSError unless `wav` (S,) is usable speech for reconstruction: not too short or long, finite, not silent."""
    seconds = len(wav) / sample_rate
    if seconds < MIN_RECONSTRUCT_SECONDS:
        raise TTSError(f"the audio is too short ({seconds:.2f} s)")
    if seconds > MAX_RECONSTRUCT_SECONDS:
        raise TTSError(f"the audio is too long ({seconds:.0f} s; at most {MAX_RECONSTRUCT_SECONDS:.0f} s at once)")
    if not np.all(np.isfinite(wav)):
        raise TTSError("the audio holds invalid (non-finite) samples")
    if is_silent(wav):
        raise TTSError("the audio is silent")


def _centre(wav: torch.Tensor, samples: int) -> torch.Tensor:
    """The middle `samples` of `wav` (S,), or all of it when shorter."""
    if wav.shape[0] > samples:
        start = (wav.shape[0] - samples) // 2
        wav = wav[start:start + samples]
    return wav


def _pad_or_trim(wav: torch.Tensor, samples: int) -> torch.Tensor:
    if wav.shape[-1] >= samples:
        return wav[..., :samples]
    return torch.nn.functional.pad(wav, (0, samples - wav.shape[-1]))
