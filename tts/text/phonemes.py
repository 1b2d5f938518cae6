"""Phoneme tokenizer for our own models: text -> espeak-ng IPA -> ids over a fixed symbol table.

Text is first normalised (:func:`~tts.text.normalize.normalize_text`), then phonemised by espeak-ng
through ``phonemizer`` (American English, stress marks, punctuation kept), using the library and
voice data that the ``espeakng-loader`` wheel ships, so no system package is needed. Each character
of the phoneme string is one token.

The symbol table is part of a model: :meth:`PhonemeTokenizer.to_dict` is stored in the model
directory and :meth:`PhonemeTokenizer.from_dict` gives back exactly the same ids, even after
:data:`DEFAULT_SYMBOLS` grows (new symbols are only ever appended). Symbols outside the table become
``<unk>`` with a logged warning.

Text with nothing to pronounce ("!!!", "...") phonemises to "" and encodes to ``[]``; check
:func:`has_speech` first to give the user a clear error.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Iterable, Sequence

from tts.errors import TTSError
from tts.text.normalize import has_speech, normalize_text  # noqa: F401  (has_speech: part of this API)

__all__ = ["PhonemeTokenizer", "DEFAULT_SYMBOLS", "SPECIAL_TOKENS", "has_speech"]

logger = logging.getLogger(__name__)

PAD, START, STOP, UNK = "<pad>", "<start>", "<stop>", "<unk>"
SPECIAL_TOKENS = (PAD, START, STOP, UNK)

# Space and every mark phonemizer keeps (its default set), ASCII ones first.
_PUNCTUATION = tuple(' !"\'(),-.:;?[]{}') + tuple("—…«»“”¿¡")
_LETTERS = tuple("abcdefghijklmnopqrstuvwxyz")
# IPA letters (espeak's English voices use a small part of these; the rest keeps the table usable
# for other voices without changing ids).
_IPA_LETTERS = tuple(
    "ɑɐɒæɓʙβɔɕçɗɖðʤəɘɚɛɜɝɞɟʄɡɠɢʛɦɧħɥʜɨɪʝɭɬɫɮʟɱɯɰŋɳɲ"
    "ɴøɵɸθœɶʘɹɺɾɻʀʁɽʂʃʈʧʉʊʋⱱʌɣɤʍχʎʏʑʐʒʔʡʕʢǀǁǂǃᵻ"
)
# Stress and length marks, other suprasegmentals and modifiers, tone arrows, then combining
# diacritics: syllabic, nasal, tie bar, dental, non-syllabic (escaped, as they do not show alone).
_MARKS = tuple("ˈˌːˑʼʴʰʱʲʷˠˤ˞↓↑→↗↘") + ("\u0329", "\u0303", "\u0361", "\u032a", "\u032f")

#: The default table, ids in order. Append only: a model stores its own copy (``to_dict``).
DEFAULT_SYMBOLS: tuple[str, ...] = SPECIAL_TOKENS + _PUNCTUATION + _LETTERS + _IPA_LETTERS + _MARKS

_SILENT = frozenset(_PUNCTUATION)
# Stress and length marks, spaces and punctuation: not sounds that a speech code carries.
_NOT_PHONES = frozenset("ˈˌːˑ") | _SILENT
_LETTER_RE = re.compile(r"[A-Za-z]")
_TABLE_FORMAT = "espeak-ipa-chars"

# --- the espeak-ng backend: created once per language, on first use (it takes a while) ---------

_backends: dict = {}
# phonemizer reports every line whose word count changed ("uh-huh" is one word to espeak): routine
# for us, so its logger only lets errors through.
_espeak_logger = logging.getLogger(__name__ + ".espeak")
_espeak_logger.setLevel(logging.ERROR)
_espeak_lock = threading.Lock()  # espeak-ng keeps global state: one call at a time


def _espeak_backend(language: str):
    """The shared phonemizer EspeakBackend for ``language``; the caller holds ``_espeak_lock``."""
    backend = _backends.get(language)
    if backend is None:
        try:
            import espeakng_loader
            from phonemizer.backend import EspeakBackend
            from phonemizer.backend.espeak.wrapper import EspeakWrapper
        except ImportError as error:
            raise TTSError(f"phonemes need the phonemizer and espeakng-loader packages ({error})") from None
        EspeakWrapper.set_library(espeakng_loader.get_library_path())
        EspeakWrapper.set_data_path(espeakng_loader.get_data_path())
        try:
            backend = EspeakBackend(
                language,
                preserve_punctuation=True,
                with_stress=True,
                language_switch="remove-flags",
                logger=_espeak_logger,
            )
        except RuntimeError as error:
            raise TTSError(f"cannot start espeak-ng for language {language!r}: {error}") from None
        _backends[language] = backend
    return backend


class PhonemeTokenizer:
    """Text or IPA strings -> ids over a fixed symbol table (one id per character)."""

    def __init__(self, symbols: Sequence[str] = DEFAULT_SYMBOLS, language: str = "en-us"):
        symbols = tuple(symbols)
        if len(set(symbols)) != len(symbols):
            raise TTSError("phoneme table has repeated symbols")
        missing = [token for token in SPECIAL_TOKENS if token not in symbols]
        if missing:
            raise TTSError(f"phoneme table lacks the special tokens {', '.join(missing)}")
        self.symbols = symbols
        self.language = language
        self._ids = {symbol: i for i, symbol in enumerate(symbols)}
        self.pad_id, self.start_id, self.stop_id, self.unk_id = (self._ids[t] for t in SPECIAL_TOKENS)

    # --- the table, as stored with a model ---------------------------------------------------

    def to_dict(self) -> dict:
        """JSON-serialisable description that :meth:`from_dict` turns back into this tokenizer."""
        return {"format": _TABLE_FORMAT, "language": self.language, "symbols": list(self.symbols)}

    @classmethod
    def from_dict(cls, data: dict) -> PhonemeTokenizer:
        """Rebuild a tokenizer from :meth:`to_dict` output (ids exactly as they were saved)."""
        if not isinstance(data, dict) or data.get("format") != _TABLE_FORMAT:
            raise TTSError(f"not a phoneme table (expected format {_TABLE_FORMAT!r})")
        symbols = data.get("symbols")
        if not isinstance(symbols, list) or not all(isinstance(s, str) and s for s in symbols):
            raise TTSError("phoneme table: 'symbols' must be a list of non-empty strings")
        return cls(symbols, language=data.get("language", "en-us"))

    @property
    def vocab_size(self) -> int:
        return len(self.symbols)

    # --- text -> phonemes -> ids -------------------------------------------------------------

    def phonemize(self, texts: Sequence[str]) -> list[str]:
        """Normalise and phonemise a batch of texts; texts with nothing to say give ""."""
        if isinstance(texts, str):
            raise TypeError("phonemize() takes a list of texts")
        from phonemizer.separator import Separator

        normalized = [normalize_text(text) for text in texts]
        # espeak is only given texts with letters: phonemizer drops empty lines, which would shift
        # every later result by one.
        spoken = [i for i, text in enumerate(normalized) if _LETTER_RE.search(text)]
        results = [""] * len(normalized)
        if spoken:
            with _espeak_lock:
                phonemes = _espeak_backend(self.language).phonemize(
                    [normalized[i] for i in spoken],
                    separator=Separator(phone="", syllable="", word=" "),
                    strip=True,
                    njobs=1,
                )
            for i, phoneme_string in zip(spoken, phonemes, strict=True):
                results[i] = phoneme_string
        return results

    def encode(self, text: str, add_start_stop: bool = False) -> list[int]:
        """Text -> ids; ``[]`` when the text has nothing to pronounce."""
        return self.encode_phonemes(self.phonemize([text])[0], add_start_stop)

    def encode_batch(self, texts: Sequence[str], add_start_stop: bool = False) -> list[list[int]]:
        """Like :meth:`encode` for many texts, phonemised in one espeak call."""
        return [self.encode_phonemes(p, add_start_stop) for p in self.phonemize(texts)]

    def encode_phonemes(self, phonemes: str, add_start_stop: bool = False) -> list[int]:
        """IPA string -> ids, one per character; ``[]`` if it holds only punctuation and spaces."""
        phonemes = phonemes.strip()
        if all(symbol in _SILENT for symbol in phonemes):
            return []
        unknown = sorted({symbol for symbol in phonemes if symbol not in self._ids})
        if unknown:
            logger.warning("phoneme symbols not in the table, read as %s: %s", UNK, " ".join(unknown))
        ids = [self._ids.get(symbol, self.unk_id) for symbol in phonemes]
        return [self.start_id, *ids, self.stop_id] if add_start_stop else ids

    def phone_ids(self, ids: Iterable[int]) -> list[int]:
        """The ids in `ids` that are sounds, in order: start, stop and pad tokens, stress and length
        marks, spaces and punctuation left out (what a code reader reads back from speech codes)."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        dropped = {self.pad_id, self.start_id, self.stop_id}
        return [i for i in ids if i not in dropped and self.symbols[i] not in _NOT_PHONES]

    def decode(self, ids: Iterable[int]) -> str:
        """Ids -> IPA string; special tokens are left out."""
        if hasattr(ids, "tolist"):
            ids = ids.tolist()
        special = {self.pad_id, self.start_id, self.stop_id, self.unk_id}
        return "".join(self.symbols[i] for i in ids if i not in special)
