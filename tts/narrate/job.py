"""One narration run: input files -> plan -> manifest -> synthesis of what is missing -> audiobook files.

    summary = narrate(["book.epub"], "out/", "joe", preset_name="fast", fmt="m4b")

A run can be stopped at any moment (Ctrl-C, a kill, a crash, a full disk) and started again with
the same command: chunks already made are checked and kept, the rest are made. Everything the user
can get wrong is checked before the model is loaded: the format (and ffmpeg for m4b), the input
files, the voice, the output directory, the chunks named by ``regenerate``.

What a chunk's audio depends on (its settings hash): the model, the voice's clips and every
generation option that changes the sound (not the batch sizes, the pauses or the seed). When it
changes, every chunk is made again.
"""

from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json
import logging
import os
import re
import secrets
import tempfile
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from ..errors import TTSError
from ..fileio import exclusive_lock, write_text_atomic
from ..quality import DurationCheck
from .book import Book
from .inputs import read_book
from .loudness import DEFAULT_TARGET_LUFS
from .plan import Plan, make_plan
from .render import Pauses, Rendered, output_format, remove_scratch, render
from .runner import CHUNKS_DIR, Failure, Progress, Runner
from .store import DONE, Manifest, Row
from .writers import require_ffmpeg

log = logging.getLogger(__name__)

MANIFEST = "manifest.sqlite"
LOCK = ".narrate.lock"
LISTING = "chunks.tsv"
# Options that do not change what a chunk sounds like: changing them keeps the chunks made so far.
NOT_AUDIO_SETTINGS = frozenset({"batch_size", "text_batch", "sentence_pause", "paragraph_pause", "seed"})
DEFAULT_CHECK = DurationCheck()


@dataclass
class Summary:
    title: str
    outdir: Path
    plan: Plan
    made: int = 0  # chunks synthesised by this run
    failures: list[Failure] = field(default_factory=list)
    progress: Progress | None = None
    rendered: Rendered | None = None

    @property
    def chunks(self) -> int:
        return len(self.plan.chunks)

    @property
    def reused(self) -> int:
        return self.chunks - self.made - len(self.failures)


def settings_of(options, voice, model_id: str, sample_rate: int) -> dict:
    """Everything a chunk's audio depends on besides its text and seed."""
    chosen = {k: v for k, v in dataclasses.asdict(options).items() if k not in NOT_AUDIO_SETTINGS}
    return {"model": model_id, "sample_rate": sample_rate, "voice": voice.name, "voice_clips": voice.fingerprint(),
            "options": chosen}


def settings_hash(settings: dict) -> str:
    return hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:16]


def prepare_outdir(outdir: Path) -> Path:
    """Create the output directory if needed; TTSError unless files can be created in it."""
    if outdir.exists() and not outdir.is_dir():
        raise TTSError(f"cannot use {outdir} as the output directory: it is a file")
    try:
        (outdir / CHUNKS_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=outdir):
            pass
    except OSError as exc:
        raise TTSError(f"cannot write to the output directory {outdir}: {exc.strerror or exc}") from None
    return outdir


def exclusive(outdir: Path) -> contextlib.AbstractContextManager:
    """Hold the output directory's lock (released by the OS however the process ends)."""
    return exclusive_lock(outdir / LOCK, f"{outdir} is in use by another `tts narrate` run")


# Temporary names (tts.fileio.atomic_path: ".NAME.RANDOM.SUFFIX.tmp") of the files a run writes at the top.
_OUR_TEMPORARY = re.compile(r"\.(book\.|chapters\.|chunks\.tsv\.).*\.tmp")  # fullmatch


def remove_leftovers(outdir: Path) -> None:
    """Temporary files that a killed run left behind (complete files are never named like this)."""
    for folder in (outdir / CHUNKS_DIR, outdir / "chapters"):  # ours alone
        if folder.is_dir():
            for path in folder.iterdir():
                if path.name.startswith(".") and ".tmp" in path.name and path.is_file():
                    path.unlink(missing_ok=True)
    for path in outdir.iterdir():  # may be shared with the user's own files
        if _OUR_TEMPORARY.fullmatch(path.name) and path.is_file():
            path.unlink(missing_ok=True)
    remove_scratch(outdir)


def audio_intact(path: Path, samples: int | None) -> bool:
    """A chunk file is intact if it opens and holds the number of samples recorded for it."""
    import soundfile as sf

    try:
        return samples is not None and sf.info(str(path)).frames == samples
    except Exception:
        return False


def check_same_book(manifest: Manifest, plan: Plan, outdir: Path) -> None:
    rows = manifest.rows()
    done = [row for row in rows.values() if row.status == DONE]
    if done and not any(chunk.key in rows for chunk in plan.chunks):
        title = manifest.get("title") or "another text"
        raise TTSError(f"{outdir} holds the narration of {title!r} ({len(done)} chunks), which shares no text with "
                       f"this input; use another output directory")


def changed_settings(old: dict, new: dict) -> list[str]:
    """What differs between two settings records ("model", "voice clips", "options.candidates 16 -> 2")."""
    changes = [name.replace("_", " ") for name in ("model", "sample_rate", "voice", "voice_clips")
               if old.get(name) != new.get(name)]
    old_options, new_options = old.get("options", {}), new.get("options", {})
    for name in sorted(set(old_options) | set(new_options)):
        if old_options.get(name) != new_options.get(name):
            changes.append(f"{name} {old_options.get(name)} -> {new_options.get(name)}")
    return changes


def book_seed(manifest: Manifest, seed: int | None) -> int:
    """The seed given, else the one this book was started with, else a new one (kept in the manifest)."""
    stored = manifest.get("seed")
    chosen = seed if seed is not None else int(stored) if stored is not None else secrets.randbits(63)
    if stored != str(chosen):
        manifest.set("seed", str(chosen))
    return chosen


def write_listing(path: Path, plan: Plan, rows: dict[str, Row]) -> None:
    """chunks.tsv: label, key, status, seconds, error and text of every chunk, to pick --regenerate ids."""
    lines = ["label\tkey\tstatus\tseconds\terror\ttext"]
    for chunk in plan.chunks:
        row = rows.get(chunk.key)
        seconds = f"{row.seconds:.2f}" if row and row.seconds and row.status == DONE else ""
        status = row.status if row else "pending"
        error = (row.error or "") if row and status != DONE else ""
        lines.append("\t".join([chunk.label, chunk.key, status, seconds, error.replace("\t", " "), chunk.text]))
    write_text_atomic(path, "\n".join(lines) + "\n")


@dataclass(frozen=True)
class Preview:
    """What a narration of some inputs would make, found without loading a model (`--dry-run`)."""

    book: Book
    plan: Plan | None  # None when no model is at hand to measure the chunks in its tokens


def preview(inputs: Sequence[str | os.PathLike], model_dir: str | os.PathLike | None = None) -> Preview:
    """The book's chapters and, when the model's text front-end can be read (`model_dir`, else the
    bundled model if one is installed), the chunks it would be narrated in."""
    from ..pipeline import model_text_splitter

    book = read_book(inputs)
    try:
        splitter = model_text_splitter(model_dir)
    except TTSError:
        if model_dir is not None:
            raise
        return Preview(book, None)
    return Preview(book, make_plan(book, splitter))


def narrate(inputs: Sequence[str | os.PathLike], outdir: str | os.PathLike, voice: str, *,
            model_dir: str | os.PathLike | None = None, device: str = "cpu", voices_dir: str | None = None,
            preset_name: str = "fast", overrides: dict | None = None, fmt: str = "flac",
            regenerate: Sequence[str] = (), seed: int | None = None, target_lufs: float = DEFAULT_TARGET_LUFS,
            check: DurationCheck = DEFAULT_CHECK, retries: int = 1,
            progress: Callable[[Progress], None] | None = None, tts=None) -> Summary:
    """Narrate the input files into `outdir`, making only what is missing; see the module docstring.

    ``overrides``: Options fields over the preset (and the model's own preset adjustments).
    ``tts``: an already loaded TextToSpeech (else one is loaded from ``model_dir`` on ``device``).
    """
    from ..pipeline import TextToSpeech, model_text_splitter
    from ..sampling.options import resolve
    from ..voices import VoiceLibrary

    output = output_format(fmt)
    if output.soundfile is None:
        require_ffmpeg()
    book = read_book(inputs)
    plan = make_plan(book, tts.splitter if tts is not None else model_text_splitter(model_dir))
    regenerate_keys = plan.select(regenerate)
    voice_obj = VoiceLibrary(voices_dir).get(voice)
    outdir = prepare_outdir(Path(outdir))
    with exclusive(outdir), Manifest(outdir / MANIFEST) as manifest:
        remove_leftovers(outdir)
        check_same_book(manifest, plan, outdir)
        tts = tts or TextToSpeech(model_dir, device=device)
        options = resolve(preset_name, tts.models.card, **(overrides or {}))
        settings = settings_of(options, voice_obj, tts.models.model_id, tts.sample_rate)
        digest = settings_hash(settings)
        rows = manifest.rows()
        intact = {key for key, row in rows.items()
                  if row.status == DONE and row.audio and audio_intact(outdir / row.audio, row.samples)}
        outdated = sum(1 for key in intact if rows[key].settings_hash != digest)
        if outdated:
            changes = changed_settings(json.loads(manifest.get("settings") or "{}"), settings)
            log.warning("%d chunks were made with other settings (%s) and will be made again; each keeps its old "
                        "audio until it is replaced", outdated, ", ".join(changes) or "unknown")
        manifest.set("title", plan.title)
        manifest.set("settings", json.dumps(settings, sort_keys=True))
        seed_value = book_seed(manifest, seed)

        todo, stale = manifest.sync(plan.chunks, digest, intact, regenerate_keys)
        for row in stale:
            if row.audio:
                (outdir / row.audio).unlink(missing_ok=True)
        summary = Summary(plan.title, outdir, plan)
        try:
            if todo:
                log.info("%d of %d chunks to make", len(todo), len(plan.chunks))
                wanted = set(todo)
                runner = Runner(tts, tts.conditioning(voice_obj), options, manifest, outdir, digest, seed_value,
                                check=check, retries=retries, progress=progress)
                summary.progress = runner.run([c for c in plan.chunks if c.key in wanted])
                summary.failures = sorted(runner.failures, key=lambda f: (f.chunk.chapter, f.chunk.position))
                summary.made = summary.progress.chunks_done
            rows = manifest.rows()
            summary.rendered = render(plan, rows, outdir, output, tts.sample_rate, target_lufs,
                                      Pauses.from_options(options))
        finally:
            with contextlib.suppress(TTSError, OSError):
                write_listing(outdir / LISTING, plan, manifest.rows())
    return summary
