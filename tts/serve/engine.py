"""The model side of the server: one TextToSpeech, the server's generation options, and one call that makes
the audio of a group of text chunks from any requests, sampled together in one GPT batch.

Everything here runs on the batcher's one model thread, except :meth:`Engine.split` (the tokenizers it
uses are safe to call from other threads).
"""

from __future__ import annotations

import logging
import threading
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import numpy as np
import torch

from ..pipeline import Candidates, Conditioning, TextToSpeech
from ..sampling.options import Options
from ..text.split import Chunk
from ..voices import Voice

log = logging.getLogger(__name__)

CONDITIONING_MEMORY = 32  # voices whose conditioning latents are kept in memory


@dataclass(eq=False)
class Piece:
    """One text chunk of one request."""

    text: str
    voice: Voice
    generator: torch.Generator  # the request's own: its chunks' diffusion and vocoder draw from it, in order
    alive: Callable[[], bool]  # false once its request is cancelled or has failed
    owner: object = None  # the caller's handle (the batcher's job)
    index: int = 0  # the chunk's place in its request


class Engine:
    def __init__(self, tts: TextToSpeech, options: Options):
        self.tts = tts
        self.options = options.validate()
        self._conditioning: OrderedDict[tuple, Conditioning] = OrderedDict()
        self._lock = threading.Lock()

    @property
    def sample_rate(self) -> int:
        return self.tts.sample_rate

    @property
    def model_id(self) -> str:
        return self.tts.models.model_id

    def split(self, text: str) -> list[Chunk]:
        """Text -> chunks that fit the model, as `tts speak` splits it; TTSError if there is nothing to say."""
        return self.tts.split(text)

    def make_generator(self) -> torch.Generator:
        return self.tts.make_generator(self.options)

    def conditioning(self, voice: Voice) -> Conditioning:
        """The voice's conditioning, kept in memory while its clips and its fine-tuned adapter stay the same
        (a voice fine-tuned while the server runs is picked up by its next request)."""
        fingerprint = voice.fingerprint()
        key = (voice.name, fingerprint, self.tts.adapter_stamp(voice, fingerprint))
        with self._lock:
            if key in self._conditioning:
                self._conditioning.move_to_end(key)
                return self._conditioning[key]
        cond = self.tts.conditioning(voice)
        with self._lock:
            self._conditioning[key] = cond
            while len(self._conditioning) > CONDITIONING_MEMORY:
                self._conditioning.popitem(last=False)
        return cond

    def synthesize(self, pieces: list[Piece]) -> Iterator[tuple[Piece, np.ndarray | Exception]]:
        """Audio (mono float32) or the exception that stopped it, for each piece still alive, in order.

        The GPT samples every piece's candidates together; if that batch fails, each piece is sampled
        alone, so a piece that breaks the model fails by itself. Diffusion and vocoding run piece by piece.
        """
        conds: dict[int, Conditioning] = {}
        ready = []
        for piece in pieces:
            try:
                conds[id(piece)] = self.conditioning(piece.voice)
                ready.append(piece)
            except Exception as exc:  # noqa: BLE001 (the request's failure, not the server's)
                yield piece, exc
        ready = [p for p in ready if p.alive()]
        if not ready:
            return
        sampled: dict[int, Candidates | Exception] = {}
        try:
            batch = self.tts.sample_candidates([p.text for p in ready], [conds[id(p)] for p in ready],
                                               self.options, self.make_generator())
            sampled = {id(p): c for p, c in zip(ready, batch)}
        except Exception as exc:  # noqa: BLE001
            if len(ready) == 1:
                sampled = {id(ready[0]): exc}
            else:
                log.warning("a batch of %d chunks failed (%s); sampling them one at a time", len(ready), exc)
                for piece in ready:
                    if piece.alive():
                        sampled[id(piece)] = self._sample_alone(piece, conds[id(piece)])
        for piece in ready:
            result = sampled.get(id(piece))
            if result is None or not piece.alive():
                continue
            if isinstance(result, Exception):
                yield piece, result
                continue
            try:
                yield piece, self.tts.decode_candidates(result, conds[id(piece)], self.options, piece.generator)
            except Exception as exc:  # noqa: BLE001
                yield piece, exc

    def _sample_alone(self, piece: Piece, cond: Conditioning) -> Candidates | Exception:
        try:
            return self.tts.sample_candidates([piece.text], [cond], self.options, self.make_generator())[0]
        except Exception as exc:  # noqa: BLE001
            return exc
