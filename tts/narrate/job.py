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
from .runner import CHUNKS_DIR, Failure, Progress, Runner, combined_report, start_progress
from .store import DONE, Manifest, Row
from .writers import require_ffmpeg

log = logging.getLogger(__name__)

MANIFEST = "manifest.sqlite"
LOCK = ".narrate.lock"
LISTING = "chunks.tsv"
# Options that do not change what a chunk sounds like: changing them keeps the chunks made so far.
NOT_AUDIO_SETTINGS = frozenset({"batch_size", "text_batch", "sentence_pause", "paragraph_pause", "seed"})
# Options added after books were narrated that change nothing while 0: left out of the settings then.
OFF_BY_DEFAULT = ("min_length_ratio",)
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
    timings: dict = field(default_factory=dict)  # a Ray run's costs (see cluster.RayEngine.timings)

    @property
    def chunks(self) -> int:
        return len(self.plan.chunks)

    @property
    def reused(self) -> int:
        return self.chunks - self.made - len(self.failures)


def settings_of(options, voice, model_id: str, sample_rate: int) -> dict:
    """Everything a chunk's audio depends on besides its text and seed."""
    chosen = {k: v for k, v in dataclasses.asdict(options).items() if k not in NOT_AUDIO_SETTINGS}
    for name in OFF_BY_DEFAULT:
        if not chosen.get(name):
            chosen.pop(name, None)  # off, as before the setting existed: books begun earlier keep their chunks
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


@dataclass
class BookJob:
    """One book of a run, opened: its plan, output directory and manifest (held under its lock), and
    once :meth:`sync` ran, its settings hash, seed and the chunks still to make."""

    plan: Plan
    outdir: Path
    manifest: Manifest
    regenerate: list[str]
    digest: str = ""
    seed: int = 0
    todo: list = field(default_factory=list)  # PlannedChunk, in plan order

    def __post_init__(self):
        self.summary = Summary(self.plan.title, self.outdir, self.plan)

    def sync(self, settings: dict, digest: str, seed: int | None) -> None:
        """Check the chunks made so far against `settings`, record the run's settings and seed, and find
        what is left to make (the audio of chunks gone from the text is deleted)."""
        manifest, outdir = self.manifest, self.outdir
        rows = manifest.rows()
        intact = {key for key, row in rows.items()
                  if row.status == DONE and row.audio and audio_intact(outdir / row.audio, row.samples)}
        outdated = sum(1 for key in intact if rows[key].settings_hash != digest)
        if outdated:
            changes = changed_settings(json.loads(manifest.get("settings") or "{}"), settings)
            log.warning("%d chunks were made with other settings (%s) and will be made again; each keeps its old "
                        "audio until it is replaced", outdated, ", ".join(changes) or "unknown")
        manifest.set("title", self.plan.title)
        manifest.set("settings", json.dumps(settings, sort_keys=True))
        self.digest, self.seed = digest, book_seed(manifest, seed)
        todo, stale = manifest.sync(self.plan.chunks, digest, intact, self.regenerate)
        for row in stale:
            if row.audio:
                (outdir / row.audio).unlink(missing_ok=True)
        wanted = set(todo)
        self.todo = [c for c in self.plan.chunks if c.key in wanted]
        if todo:
            log.info("%s: %d of %d chunks to make", self.plan.title, len(todo), len(self.plan.chunks))

    def made(self, progress: Progress, failures: list[Failure]) -> None:
        """What the synthesis of :attr:`todo` came to."""
        self.summary.progress = progress
        self.summary.failures = sorted(failures, key=lambda f: (f.chunk.chapter, f.chunk.position))
        self.summary.made = progress.chunks_done


class LocalEngine:
    """Synthesis in this process: one loaded TextToSpeech, the books one after another (:class:`Runner`)."""

    def __init__(self, tts):
        self.tts = tts
        self.card, self.model_id, self.sample_rate = tts.models.card, tts.models.model_id, tts.sample_rate

    def __enter__(self) -> LocalEngine:
        return self

    def __exit__(self, *exc) -> None:
        pass

    def synthesize(self, jobs: list[BookJob], voice, options, check: DurationCheck, retries: int,
                   progress: Callable[[Progress], None] | None) -> None:
        cond = self.tts.conditioning(voice)
        states = [start_progress(job.todo) for job in jobs]
        report = combined_report(states, progress)
        for job, state in zip(jobs, states):
            runner = Runner(self.tts, cond, options, job.manifest, job.outdir, job.digest, job.seed,
                            check=check, retries=retries, progress=report)
            job.made(runner.run(job.todo, state), runner.failures)


def book_outdirs(inputs: Sequence[str | os.PathLike], library: str | os.PathLike) -> list[tuple[list[Path], Path]]:
    """Several books, one input file each: (inputs, LIBRARY/NAME) with NAME the file's name without its
    suffix; TTSError when two files would share a folder."""
    library = Path(library)
    folders: dict[str, Path] = {}
    for path in map(Path, inputs):
        name = path.stem or path.name
        if name in folders:
            raise TTSError(f"{folders[name]} and {path} would both be narrated into {library / name}; "
                           "rename one of them")
        folders[name] = path
    return [([path], library / name) for name, path in folders.items()]


def narrate(inputs: Sequence[str | os.PathLike], outdir: str | os.PathLike, voice: str, **kwargs) -> Summary:
    """Narrate the input files (read in order, as one book) into `outdir`, making only what is missing;
    see the module docstring and :func:`narrate_books` for the keywords."""
    return narrate_books([(inputs, outdir)], voice, **kwargs)[0]


def narrate_books(books: Sequence[tuple[Sequence[str | os.PathLike], str | os.PathLike]], voice: str, *,
                  model_dir: str | os.PathLike | None = None, device: str = "cpu", voices_dir: str | None = None,
                  preset_name: str = "fast", overrides: dict | None = None, fmt: str = "flac",
                  regenerate: Sequence[str] = (), seed: int | None = None,
                  target_lufs: float = DEFAULT_TARGET_LUFS, check: DurationCheck = DEFAULT_CHECK, retries: int = 1,
                  progress: Callable[[Progress], None] | None = None, tts=None, cluster=None) -> list[Summary]:
    """Narrate each book ((input files, output directory)) into its own directory, making only what is
    missing; one Summary per book. Everything the user can get wrong is checked for every book before
    a model is loaded or any chunk is made.

    ``overrides``: Options fields over the preset (and the model's own preset adjustments).
    ``tts``: an already loaded TextToSpeech (else one is loaded from ``model_dir`` on ``device``).
    ``cluster``: a :class:`.cluster.ClusterSpec`: the chunks are made by Ray workers (each with its
    own model) and this process keeps every book's manifest and files; ``device`` is then the
    workers' ("auto": a GPU each where the cluster has them).
    """
    from ..adapters import AdapterStore
    from ..pipeline import TextToSpeech, model_text_splitter
    from ..sampling.options import resolve
    from ..voices import VoiceLibrary

    output = output_format(fmt)
    if output.soundfile is None:
        require_ffmpeg()
    if not books:
        raise TTSError("give at least one book")
    if regenerate and len(books) > 1:
        raise TTSError("--regenerate names the chunks of one book: narrate that book on its own to regenerate them")
    splitter = tts.splitter if tts is not None else model_text_splitter(model_dir)
    plans = [make_plan(read_book(inputs), splitter) for inputs, _ in books]
    regenerate_keys = [plan.select(regenerate) for plan in plans]
    voice_obj = VoiceLibrary(voices_dir).get(voice)
    if cluster is not None:
        from .cluster import RayEngine

        ray_engine = RayEngine(cluster, model_dir, device)  # checks the device and reads the model card
    outdirs = [Path(outdir) for _, outdir in books]
    if len({d.resolve() for d in outdirs}) < len(outdirs):
        raise TTSError("two books would be narrated into the same output directory")
    outdirs = [prepare_outdir(d) for d in outdirs]
    with contextlib.ExitStack() as stack:
        jobs = []
        for plan, outdir, keys in zip(plans, outdirs, regenerate_keys):
            stack.enter_context(exclusive(outdir))
            manifest = stack.enter_context(Manifest(outdir / MANIFEST))
            remove_leftovers(outdir)
            check_same_book(manifest, plan, outdir)
            jobs.append(BookJob(plan, outdir, manifest, keys))
        if cluster is not None:
            engine = stack.enter_context(ray_engine)  # connects to the cluster (or starts one)
        else:
            engine = LocalEngine(tts or TextToSpeech(model_dir, device=device))
        options = resolve(preset_name, engine.card, **(overrides or {}))
        settings = settings_of(options, voice_obj, engine.model_id, engine.sample_rate)
        adapter = (engine.tts.adapter(voice_obj) if isinstance(engine, LocalEngine)
                   else AdapterStore().load(engine.model_id, voice_obj))
        if adapter is not None:  # a fine-tuned voice: its chunks are remade when it is tuned again
            settings["voice_adapter"] = adapter.digest
        digest = settings_hash(settings)
        for job in jobs:
            job.sync(settings, digest, seed)
        try:
            pending = [job for job in jobs if job.todo]
            if pending:
                engine.synthesize(pending, voice_obj, options, check, retries, progress)
                for job in pending:
                    job.summary.timings = dict(getattr(engine, "timings", {}))
            for job in jobs:
                job.summary.rendered = render(job.plan, job.manifest.rows(), job.outdir, output, engine.sample_rate,
                                              target_lufs, Pauses.from_options(options))
        finally:
            for job in jobs:
                with contextlib.suppress(TTSError, OSError):
                    write_listing(job.outdir / LISTING, job.plan, job.manifest.rows())
    return [job.summary for job in jobs]
