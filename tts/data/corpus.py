"""Build a multi-voice English training corpus from the open voices installable here.

Layout of the output directory OUT (docs/TRAINING.md)::

    OUT/manifest.jsonl               one JSON object per utterance, appended as items finish
    OUT/audio/<speaker>/<id>.flac    mono, 22050 Hz, 16-bit
    OUT/README.md                    speakers, text sources, licences, counts and hours
    OUT/corpus.json                  the settings that fix the plan (seed, speakers, text pool)

The plan: every speaker (a source voice, or a pseudo-speaker made by playing a source voice
faster or slower, :data:`SPEED_VARIANTS`) reads sentences of one shuffled, mixed pool
(:func:`tts.data.texts.build_pool`). Speaker ``k`` of ``n`` reads pool positions ``k, k + n,
k + 2n, ...``, so no two speakers read the same sentence (until a speaker has read its whole
share), and an item's id is its speaker and pool position (``joe-000123``): stable across
reruns. Speakers share the target hours in proportion to their voice's ``share`` (1 for the fast
engines, less for slow ones such as Kokoro); a speaker's items are handed out until its finished
plus in-flight audio reaches its share.

Items are made in worker processes (synthesis, speed change, silence trim, loudness, FLAC, text
normalisation and phonemes) and the audio is written atomically before the main process appends
the item's manifest line, so a killed run never leaves a manifest line without its audio. A rerun
reads the manifest, repairs what a kill can leave (a half-written last line, temporary files) and
skips finished items. One build at a time may write to OUT (a lock file).
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import datetime
import itertools
import json
import logging
import multiprocessing
import multiprocessing.util
import os
import signal
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tts import silence
from tts.audio import HIFIGAN_SAMPLE_RATE, resample, save_audio
from tts.data.texts import DEFAULT_MIX, SOURCES, Sentence, build_pool, pool_digest
from tts.data.voices import DEFAULT_VOICES, VOICES, Engine, VoiceSpec, get_voice
from tts.errors import TTSError
from tts.fileio import exclusive_lock, write_text_atomic

__all__ = [
    "SPEED_VARIANTS",
    "BuildReport",
    "Speaker",
    "SpeakerStats",
    "build_corpus",
    "change_speed",
    "item_id",
    "normalize_loudness",
    "plan_speakers",
    "read_manifest",
    "trim_silence",
]

logger = logging.getLogger(__name__)

SAMPLE_RATE = HIFIGAN_SAMPLE_RATE
#: Pseudo-speakers: a source voice played this much faster (pitch and tempo together, by
#: resampling). Resemblyzer takes both for new speakers; both stay intelligible (eval/MEASURE.md).
SPEED_VARIANTS = {"up": 1.15, "down": 0.87}
EDGE_SILENCE_S = 0.1  # silence kept (or added) before and after the speech
TARGET_RMS_DBFS = -20.0  # loudness of the speech frames
PEAK_LIMIT = 0.95  # the loudness gain never pushes a sample beyond this
MIN_DURATION_S = 0.3  # shorter results are failures
PRIOR_ITEM_S = 3.5  # expected utterance length before a speaker has finished any
MAX_FAILURES_IN_ROW = 10  # a speaker whose engine keeps failing is stopped
QUEUE_PER_WORKER = 2

MANIFEST = "manifest.jsonl"
BUILDS = "builds.jsonl"  # one line per build run: when, how long, what it made (for the README)
SETTINGS = "corpus.json"
README = "README.md"
LOCK = ".build.lock"
SETTINGS_FORMAT = 1


# ---------------------------------------------------------------------------------------------
# Speakers
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Speaker:
    name: str  # "joe", "joe-up"
    voice: VoiceSpec
    speed: float = 1.0


def plan_speakers(voices: Sequence[str] = DEFAULT_VOICES, variants: bool = True) -> list[Speaker]:
    """The speakers of a corpus: each voice, then (with `variants`) its faster and slower copies."""
    if not voices:
        raise TTSError("no voices given")
    specs = [get_voice(name) for name in dict.fromkeys(voices)]
    order = list(VOICES)
    specs.sort(key=lambda spec: order.index(spec.name))  # "--voices slt,joe" plans like "joe,slt"
    speakers = [Speaker(spec.name, spec) for spec in specs]
    if variants:
        speakers += [Speaker(f"{spec.name}-{suffix}", spec, factor)
                     for spec in specs if spec.variants for suffix, factor in SPEED_VARIANTS.items()]
    return speakers


def item_id(speaker: str, position: int) -> str:
    return f"{speaker}-{position:06d}"


# ---------------------------------------------------------------------------------------------
# Audio processing
# ---------------------------------------------------------------------------------------------

def change_speed(wav: np.ndarray, sample_rate: int, factor: float, out_rate: int = SAMPLE_RATE) -> np.ndarray:
    """Play `wav` `factor` times faster (pitch up by the same ratio) and resample to `out_rate`."""
    return resample(wav.astype(np.float32), sample_rate * factor, out_rate)


def trim_silence(wav: np.ndarray, sample_rate: int, keep_s: float = EDGE_SILENCE_S) -> np.ndarray:
    """Cut leading and trailing silence to `keep_s` seconds (padding with zeros where there is less).
    A signal with no speech comes back empty. (Silence and its trimming have one home: tts.silence.)"""
    return silence.trim_silence(wav, sample_rate, keep_s, pad=True)


def normalize_loudness(wav: np.ndarray, sample_rate: int) -> np.ndarray:
    """Scale the speech frames to TARGET_RMS_DBFS, without letting the peak pass PEAK_LIMIT."""
    speech, frame = silence.speech_frames(wav, sample_rate)
    if not speech.any():
        return wav
    frames = wav[: len(speech) * frame].reshape(len(speech), frame)[speech]
    rms = float(np.sqrt(np.mean(np.square(frames, dtype=np.float64))))
    gain = 10 ** (TARGET_RMS_DBFS / 20) / max(rms, 1e-9)
    peak = float(np.abs(wav).max())
    gain = min(gain, PEAK_LIMIT / max(peak, 1e-9))
    return (wav * gain).astype(np.float32)


# ---------------------------------------------------------------------------------------------
# Worker side: one item
# ---------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Job:
    id: str
    speaker: Speaker
    sentence: Sentence
    out: Path


_engines: dict[str, Engine] = {}  # per worker process, by voice name
_tokenizer = None


def _init_worker() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the main process handles Ctrl-C
    os.environ["OMP_NUM_THREADS"] = "1"
    import torch

    torch.set_num_threads(1)
    multiprocessing.util.Finalize(None, close_engines, exitpriority=10)  # atexit does not run here


def close_engines() -> None:
    """Stop this process's engines (festival processes, temporary directories)."""
    while _engines:
        _engines.popitem()[1].close()


def _engine(voice: VoiceSpec) -> Engine:
    if voice.name not in _engines:
        _engines[voice.name] = voice.make()
    return _engines[voice.name]


def _phonemize(text: str) -> str:
    global _tokenizer
    if _tokenizer is None:
        from tts.text.phonemes import PhonemeTokenizer

        _tokenizer = PhonemeTokenizer()
    return _tokenizer.phonemize([text])[0]


def make_item(job: Job) -> dict:
    """Synthesise, process and write one item; return its manifest record plus timings (keys
    starting with "_", not stored). Raises TTSError when the item cannot be made."""
    from tts.text.normalize import normalize_text

    start = time.perf_counter()
    normalized = normalize_text(job.sentence.text)
    phonemes = _phonemize(job.sentence.text)
    if not phonemes:
        raise TTSError("nothing to pronounce")
    synth_start = time.perf_counter()
    wav, rate = _engine(job.speaker.voice).synthesize(normalized)
    synth_s = time.perf_counter() - synth_start
    if len(wav) == 0 or not np.all(np.isfinite(wav)):
        raise TTSError("the engine returned no audio")
    source_s = len(wav) / rate
    wav = change_speed(wav, rate, job.speaker.speed)
    wav = normalize_loudness(trim_silence(wav, SAMPLE_RATE), SAMPLE_RATE)
    duration = len(wav) / SAMPLE_RATE
    if duration < MIN_DURATION_S:
        raise TTSError(f"only {duration:.2f} s of speech")
    relative = Path("audio") / job.speaker.name / f"{job.id}.flac"
    (job.out / relative).parent.mkdir(parents=True, exist_ok=True)
    save_audio(job.out / relative, wav, SAMPLE_RATE)
    return {
        "id": job.id, "audio": relative.as_posix(), "text": job.sentence.text, "normalized": normalized,
        "phonemes": phonemes, "speaker": job.speaker.name, "duration": round(duration, 3),
        "source": job.sentence.source,
        "_synth_s": synth_s, "_source_s": source_s, "_item_s": time.perf_counter() - start,
    }


class _InlineExecutor(concurrent.futures.Executor):
    """Runs each job at submission, in this process (one worker: simpler to debug and test)."""

    def submit(self, fn, /, *args, **kwargs):
        future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
            future.set_exception(exc)
        return future


def _executor(workers: int) -> concurrent.futures.Executor:
    if workers == 1:
        return _InlineExecutor()
    return concurrent.futures.ProcessPoolExecutor(
        workers, mp_context=multiprocessing.get_context("spawn"), initializer=_init_worker)


# ---------------------------------------------------------------------------------------------
# The manifest and the corpus settings
# ---------------------------------------------------------------------------------------------

def read_manifest(out: str | os.PathLike, repair: bool = False) -> list[dict]:
    """The records of OUT's manifest. Lines a kill can leave behind (a half-written last line, a
    record whose audio is missing, a repeated id) are skipped; with `repair` the manifest is
    rewritten without them and temporary audio files are removed."""
    out = Path(out)
    path = out / MANIFEST
    if not path.is_file():
        return []
    text = path.read_text(encoding="utf-8", errors="replace")
    records, seen, dropped = [], set(), 0
    for line in text.splitlines():
        try:
            record = json.loads(line)
            ok = record["id"] not in seen and (out / record["audio"]).is_file()
        except (ValueError, KeyError, TypeError):
            ok = False
        if ok:
            seen.add(record["id"])
            records.append(record)
        else:
            dropped += 1
    if repair:
        if dropped or (text and not text.endswith("\n")):
            logger.warning("manifest: dropped %d unusable lines", dropped)
            write_text_atomic(path, "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records))
        for tmp in (out / "audio").glob("*/.*.tmp"):
            tmp.unlink(missing_ok=True)
    return records


def _show(value) -> str:
    return ",".join(value) if isinstance(value, list) else str(value)


def _check_settings(out: Path, settings: dict) -> None:
    """Record the plan's settings on the first build; later builds must use the same ones."""
    path = out / SETTINGS
    if not path.is_file():
        write_text_atomic(path, json.dumps(settings, indent=2) + "\n")
        return
    try:
        saved = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        raise TTSError(f"{path} is not valid JSON; remove it only if {out} holds no items") from None
    for key, label in (("seed", "--seed"), ("speakers", "--voices / --no-variants")):
        if saved.get(key) != settings[key]:
            raise TTSError(f"{out} was started with {key} {_show(saved.get(key))}, not {_show(settings[key])}: "
                           f"rerun with the same {label}, or build into a new directory")
    if saved.get("pool_digest") != settings["pool_digest"]:
        logger.warning("the text sources changed since %s was started: new items may repeat sentences", out)


def _BuildLock(out: Path):  # noqa: N802 (was a class)
    """An exclusive lock on OUT for the length of a build (file locking has one home: tts.fileio)."""
    return exclusive_lock(out / LOCK, f"another build is writing {out}")


# ---------------------------------------------------------------------------------------------
# Scheduling
# ---------------------------------------------------------------------------------------------

@dataclass
class SpeakerStats:
    items: int = 0  # finished, including earlier runs
    seconds: float = 0.0  # audio finished, including earlier runs
    new_items: int = 0  # made in this run
    new_seconds: float = 0.0
    synth_s: float = 0.0  # engine time in this run
    source_s: float = 0.0  # engine output (before the speed change) in this run
    item_s: float = 0.0  # whole-item time in this run
    failures: int = 0
    failures_in_row: int = 0
    last_error: str = ""
    in_flight: int = 0
    stopped: bool = False

    @property
    def synth_speed(self) -> float:
        """Engine speed in this run, as a multiple of real time."""
        return self.source_s / self.synth_s if self.synth_s else 0.0

    def expected_item_s(self, speed: float) -> float:
        return self.seconds / self.items if self.items >= 5 else PRIOR_ITEM_S / speed


@dataclass
class BuildReport:
    out: Path
    target_s: float
    speakers: dict[str, SpeakerStats] = field(default_factory=dict)
    wall_s: float = 0.0

    @property
    def seconds(self) -> float:
        return sum(s.seconds for s in self.speakers.values())

    @property
    def new_items(self) -> int:
        return sum(s.new_items for s in self.speakers.values())

    @property
    def failures(self) -> int:
        return sum(s.failures for s in self.speakers.values())


class _Scheduler:
    """Hands out jobs round-robin over the speakers that still need audio.

    Speaker ``i`` of ``n`` reads pool positions ``i, i + n, i + 2n, ...``; past the pool's end the
    positions go on (new ids) and the sentences repeat.
    """

    def __init__(self, speakers: list[Speaker], pool: list[Sentence], target_s: float, taken: set[str],
                 stats: dict[str, SpeakerStats], out: Path):
        # taken: ids finished in earlier runs or handed out in this one
        self.speakers, self.pool, self.taken, self.stats, self.out = speakers, pool, taken, stats, out
        total_share = sum(s.voice.share for s in speakers)
        self.share_s = {s.name: target_s * s.voice.share / total_share for s in speakers}
        self.positions = {s.name: itertools.count(i, len(speakers)) for i, s in enumerate(speakers)}
        self.turn = 0

    def _needs_more(self, speaker: Speaker) -> bool:
        st = self.stats[speaker.name]
        planned = st.seconds + st.in_flight * st.expected_item_s(speaker.speed)
        return not st.stopped and planned < self.share_s[speaker.name]

    def next_job(self) -> Job | None:
        for _ in range(len(self.speakers)):
            speaker = self.speakers[self.turn]
            self.turn = (self.turn + 1) % len(self.speakers)
            if self._needs_more(speaker):
                position = next(p for p in self.positions[speaker.name]
                                if item_id(speaker.name, p) not in self.taken)
                self.taken.add(item_id(speaker.name, position))
                return Job(item_id(speaker.name, position), speaker, self.pool[position % len(self.pool)],
                           self.out)
        return None


def build_corpus(
    out: str | os.PathLike,
    voices: Sequence[str] = DEFAULT_VOICES,
    hours: float = 1.0,
    workers: int = 2,
    seed: int = 0,
    variants: bool = True,
    pool: list[Sentence] | None = None,
    progress: Callable[[float, float], None] | None = None,
) -> BuildReport:
    """Build (or go on building) the corpus in `out` until it holds about `hours` of audio, split
    evenly over the speakers. `pool` replaces the default text pool (tests). `progress(done_s,
    target_s)` is called as items finish. Items that fail are logged and counted, not retried in
    this run; a rerun retries them."""
    if not hours > 0:
        raise TTSError("--hours must be positive")
    if workers < 1:
        raise TTSError("--workers must be at least 1")
    out = Path(out)
    speakers = plan_speakers(voices, variants)
    for spec in {s.voice.name: s.voice for s in speakers}.values():
        spec.make().check()
    if pool is None:
        pool = build_pool(seed)
    try:
        (out / "audio").mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise TTSError(f"cannot create {out}: {exc.strerror or exc}") from None
    settings = {"format": SETTINGS_FORMAT, "seed": seed, "speakers": [s.name for s in speakers],
                "pool_size": len(pool), "pool_digest": pool_digest(pool), "mix": dict(DEFAULT_MIX)}
    start = time.perf_counter()
    with _BuildLock(out), _stop_on_sigterm():
        _check_settings(out, settings)
        records = read_manifest(out, repair=True)
        report = BuildReport(out, hours * 3600)
        try:
            _run(out, speakers, pool, records, report, workers, progress)
        finally:
            report.wall_s = time.perf_counter() - start
            _log_build(out, report, workers)
            write_readme(out, read_manifest(out), settings, pool)
    return report


@contextlib.contextmanager
def _stop_on_sigterm():
    """SIGTERM (a session's end, `kill`) stops the build as Ctrl-C does: the workers are shut down
    instead of left running, and the build is logged. Only the main thread can take signals."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum, frame):
        raise KeyboardInterrupt

    previous = signal.signal(signal.SIGTERM, stop)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _log_build(out: Path, report: BuildReport, workers: int) -> None:
    """Append this run's wall time and per-voice work to OUT/builds.jsonl."""
    voices: dict[str, dict[str, float]] = {}
    for name, st in report.speakers.items():
        v = voices.setdefault(_voice_of(name), {"audio_s": 0.0, "item_s": 0.0, "items": 0})
        v["audio_s"] += st.new_seconds
        v["item_s"] += st.item_s
        v["items"] += st.new_items
    entry = {"finished": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
             "wall_s": round(report.wall_s, 3), "workers": workers, "cpus": os.cpu_count(),
             "new_items": report.new_items, "new_audio_s": round(sum(v["audio_s"] for v in voices.values()), 1),
             "voices": {k: {kk: round(vv, 3) for kk, vv in v.items()} for k, v in voices.items() if v["items"]}}
    with open(out / BUILDS, "a", encoding="utf-8") as f:
        f.write(json.dumps(entry) + "\n")


def read_builds(out: Path) -> list[dict]:
    path = out / BUILDS
    if not path.is_file():
        return []
    builds = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            builds.append(json.loads(line))
        except ValueError:
            continue
    return builds


def _run(out: Path, speakers: list[Speaker], pool: list[Sentence], records: list[dict], report: BuildReport,
         workers: int, progress: Callable[[float, float], None] | None) -> None:
    names = {s.name for s in speakers}
    report.speakers = {s.name: SpeakerStats() for s in speakers}
    for record in records:
        if record["speaker"] in names:
            st = report.speakers[record["speaker"]]
            st.items += 1
            st.seconds += record["duration"]
    taken = {record["id"] for record in records}
    scheduler = _Scheduler(speakers, pool, report.target_s, taken, report.speakers, out)
    if progress:
        progress(report.seconds, report.target_s)
    executor = _executor(workers)
    pending: dict[concurrent.futures.Future, Job] = {}
    try:
        with open(out / MANIFEST, "a", encoding="utf-8") as manifest:
            while True:
                while len(pending) < workers * QUEUE_PER_WORKER and (job := scheduler.next_job()):
                    report.speakers[job.speaker.name].in_flight += 1
                    pending[executor.submit(make_item, job)] = job
                if not pending:
                    break
                finished, _ = concurrent.futures.wait(pending, return_when=concurrent.futures.FIRST_COMPLETED)
                for future in finished:
                    _finish(pending.pop(future), future, report, manifest)
                if progress:
                    progress(report.seconds, report.target_s)
    except concurrent.futures.process.BrokenProcessPool:
        raise TTSError("a worker process died; rerun the same command to go on") from None
    finally:
        executor.shutdown(wait=True, cancel_futures=True)
        if workers == 1:
            close_engines()


def _finish(job: Job, future: concurrent.futures.Future, report: BuildReport, manifest) -> None:
    st = report.speakers[job.speaker.name]
    st.in_flight -= 1
    try:
        record = future.result()
    except TTSError as exc:
        st.failures += 1
        st.failures_in_row += 1
        st.last_error = str(exc)
        logger.warning("%s failed: %s (%r)", job.id, exc, job.sentence.text)
        if st.failures_in_row >= MAX_FAILURES_IN_ROW and not st.stopped:
            st.stopped = True
            logger.error("speaker %s stopped after %d failures in a row: %s", job.speaker.name,
                         st.failures_in_row, exc)
        return
    st.source_s += record.pop("_source_s")
    st.synth_s += record.pop("_synth_s")
    st.item_s += record.pop("_item_s")
    # The audio is in place: only now does the item enter the manifest (one write of one line).
    manifest.write(json.dumps(record, ensure_ascii=False) + "\n")
    manifest.flush()
    os.fsync(manifest.fileno())
    st.failures_in_row = 0
    st.items += 1
    st.new_items += 1
    st.seconds += record["duration"]
    st.new_seconds += record["duration"]


# ---------------------------------------------------------------------------------------------
# README
# ---------------------------------------------------------------------------------------------

def _hours(seconds: float) -> str:
    return f"{seconds / 3600:.2f}"


def _voice_of(speaker: str) -> str:
    for suffix in SPEED_VARIANTS:
        if speaker.endswith(f"-{suffix}"):
            return speaker[: -len(suffix) - 1]
    return speaker


def write_readme(out: Path, records: list[dict], settings: dict, pool: list[Sentence]) -> None:
    """OUT/README.md: what the corpus holds, how it was made, and every voice's and source's licence."""
    by_speaker: dict[str, list[float]] = {}
    by_source: dict[str, list[float]] = {}
    for r in records:
        by_speaker.setdefault(r["speaker"], []).append(r["duration"])
        by_source.setdefault(r["source"], []).append(r["duration"])
    total = sum(sum(d) for d in by_speaker.values())
    speakers = list(dict.fromkeys(settings["speakers"] + list(by_speaker)))
    voices = list(dict.fromkeys(_voice_of(s) for s in speakers))
    speeds = {"": 1.0, **{f"-{k}": v for k, v in SPEED_VARIANTS.items()}}

    lines = [
        "# Synthetic multi-voice English speech corpus",
        "",
        (f"Made by `tts data build-corpus` on {datetime.date.today().isoformat()}: {len(records)} utterances, "
         f"{_hours(total)} hours, {len(by_speaker)} speakers. The speech is synthetic: every utterance "
         "was spoken by an open text-to-speech voice (below), some of them played faster or slower to "
         "make extra pseudo-speakers."),
        "",
        ("`manifest.jsonl` has one JSON object per utterance: `id`, `audio` (path relative to this "
         "directory), `text` (as written), `normalized` (the project's text front-end), `phonemes` "
         "(espeak-ng IPA), `speaker`, `duration` (seconds), `source` (text source). Audio: "
         f"`audio/<speaker>/<id>.flac`, mono, {SAMPLE_RATE} Hz, 16-bit."),
        "",
        "## Speakers",
        "",
        "| speaker | source voice | speed | utterances | hours |",
        "|---|---|---|---|---|",
    ]
    for s in speakers:
        voice = _voice_of(s)
        speed = speeds.get(s[len(voice):], 1.0)
        durations = by_speaker.get(s, [])
        lines.append(f"| {s} | {voice} | {speed:g} | {len(durations)} | {_hours(sum(durations))} |")
    lines += ["", "## Source voices and licences", "", "| voice | what | licence |", "|---|---|---|"]
    for v in voices:
        spec = VOICES.get(v)
        lines.append(f"| {v} | {spec.description if spec else '?'} | {spec.licence if spec else 'unknown'} |")
    lines += ["", "## Text sources and licences", "",
              "| source | what | licence | utterances | hours |", "|---|---|---|---|---|"]
    for name in dict.fromkeys(list(settings["mix"]) + list(by_source)):
        src = SOURCES.get(name)
        durations = by_source.get(name, [])
        lines.append(f"| {name} | {src.origin if src else '?'} | {src.licence if src else 'unknown'} | "
                     f"{len(durations)} | {_hours(sum(durations))} |")
    mix = ", ".join(f"{k} {v:.0%}" for k, v in settings["mix"].items())
    variants = ", ".join(f"`-{k}` x{v:g}" for k, v in SPEED_VARIANTS.items())
    lines += [
        "",
        "## How it was made",
        "",
        (f"- Sentences: {len(pool)} filtered sentences (3-25 words, transliterable to ASCII, no blocked "
         f"word, duplicates removed) from the sources above, shuffled and mixed ({mix}) with seed "
         f"{settings['seed']}. Speaker k of n reads pool positions k, k+n, k+2n, ..., so speakers read "
         "different sentences."),
        ("- Text: `normalized` is `tts.text.normalize.normalize_text(text)` (numbers, money, dates, times "
         "and abbreviations written out); the engines read the normalised text; `phonemes` come from "
         "`tts.text.phonemes.PhonemeTokenizer` (espeak-ng, en-us, with stress and punctuation)."),
        (f"- Audio: engine output resampled to {SAMPLE_RATE} Hz with soxr; the pseudo-speakers {variants} "
         "are the same engine output resampled as if recorded at a higher or lower rate (pitch and tempo "
         f"change together); silence at both ends trimmed to {EDGE_SILENCE_S:g} s; speech RMS scaled to "
         f"{TARGET_RMS_DBFS:g} dBFS with peaks at most {PEAK_LIMIT}."),
        ("- Licences: the table entries were taken from each package's copyright or model card. Keep "
         "these notices with the corpus and with anything that redistributes it."),
        "",
    ]
    lines += _build_time_lines(read_builds(out))
    write_text_atomic(out / README, "\n".join(lines))


def _build_time_lines(builds: list[dict]) -> list[str]:
    """The README's build-time section: wall time of every run, and each voice's cost per item."""
    if not builds:
        return []
    wall = sum(b["wall_s"] for b in builds)
    made = sum(b["new_audio_s"] for b in builds)
    lines = ["## Build time", "",
             f"{len(builds)} build run(s), {wall / 60:.1f} min of wall time in all, {made / 3600:.2f} h of audio "
             f"made (resumed runs add up; `builds.jsonl` has each run). Per voice, summed over runs (CPU time "
             "of a worker per item: synthesis and processing):", "",
             "| voice | items | audio (h) | worker time (min) | x real time per worker |", "|---|---|---|---|---|"]
    voices: dict[str, dict[str, float]] = {}
    for b in builds:
        for name, v in b.get("voices", {}).items():
            acc = voices.setdefault(name, {"audio_s": 0.0, "item_s": 0.0, "items": 0})
            for key in acc:
                acc[key] += v.get(key, 0)
    for name, v in voices.items():
        speed = v["audio_s"] / v["item_s"] if v["item_s"] else 0.0
        lines.append(f"| {name} | {int(v['items'])} | {v['audio_s'] / 3600:.2f} | {v['item_s'] / 60:.1f} | {speed:.1f} |")
    runs = ", ".join(f"{b['finished']} {b['wall_s'] / 60:.1f} min ({b['workers']} workers on {b['cpus']} CPUs)"
                     for b in builds)
    return lines + ["", f"Runs: {runs}.", ""]


def describe_speed(report: BuildReport, speakers: Sequence[str] | None = None) -> list[str]:
    """One line per speaker that made items in this run: items, audio and engine speed."""
    lines = []
    for name, st in report.speakers.items():
        if speakers is not None and name not in speakers:
            continue
        if st.new_items or st.failures:
            item_speed = st.new_seconds / st.item_s if st.item_s else 0.0
            lines.append(f"{name}: {st.new_items} items, {st.new_seconds / 60:.1f} min, engine "
                         f"{st.synth_speed:.0f}x real time, whole item {item_speed:.0f}x"
                         + (f", {st.failures} failed (last: {st.last_error})" if st.failures else ""))
    return lines

