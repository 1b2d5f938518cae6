"""Silence: the level below which audio is silence, and cutting it from the ends of a clip.

Two measures, each defined once:

- a whole clip is silent when its RMS is below :data:`SILENT_RMS` (-50 dBFS): a voice clip that
  cannot be used, a synthesis that made nothing to listen to;
- within a clip, a 10 ms frame is silence when it is more than :data:`SILENCE_BELOW_PEAK_DB` below
  the clip's loudest frame, or below :data:`SILENCE_FLOOR_DBFS`; :func:`trim_silence` cuts such
  frames from both ends (narration chunks before they are joined, corpus recordings).
"""

from __future__ import annotations

import numpy as np

SILENT_RMS_DBFS = -50.0
SILENT_RMS = 10 ** (SILENT_RMS_DBFS / 20)  # a clip quieter than this RMS is silence
SILENCE_BELOW_PEAK_DB = 40.0  # a frame this far below the clip's loudest frame is silence ...
SILENCE_FLOOR_DBFS = -65.0  # ... and so is any frame below this level
FRAME_SECONDS = 0.01


def rms(wav: np.ndarray) -> float:
    """Root mean square of a clip (computed in float64)."""
    wav = np.asarray(wav).reshape(-1)
    return float(np.sqrt(np.mean(wav.astype(np.float64) ** 2))) if wav.size else 0.0


def is_silent(wav: np.ndarray) -> bool:
    """Whether a whole clip is silence (RMS below SILENT_RMS)."""
    return rms(wav) < SILENT_RMS


def frame_levels(wav: np.ndarray, frame: int) -> np.ndarray:
    """Level of each `frame`-sample frame in dBFS -> (frames,)."""
    frames = len(wav) // frame
    power = np.square(wav[: frames * frame].reshape(frames, frame), dtype=np.float64).mean(axis=1)
    return 10 * np.log10(power + 1e-12)


def speech_frames(wav: np.ndarray, sample_rate: int) -> tuple[np.ndarray, int]:
    """(mask of the FRAME_SECONDS frames that are not silence (frames,), samples per frame)."""
    frame = max(1, round(FRAME_SECONDS * sample_rate))
    levels = frame_levels(wav, frame)
    if levels.size == 0:
        return np.zeros(0, dtype=bool), frame
    threshold = max(levels.max() - SILENCE_BELOW_PEAK_DB, SILENCE_FLOOR_DBFS)
    return levels > threshold, frame


def trim_silence(wav: np.ndarray, sample_rate: int, keep_seconds: float, pad: bool = False) -> np.ndarray:
    """`wav` with the silence at both ends cut to `keep_seconds` (a margin that keeps onsets and decays);
    with `pad`, zeros are added where less than that is left. Empty if the clip has no speech at all."""
    speech, frame = speech_frames(wav, sample_rate)
    if not speech.any():
        return np.zeros(0, dtype=np.float32)
    voiced = np.flatnonzero(speech)
    keep = round(keep_seconds * sample_rate)
    start, end = voiced[0] * frame - keep, (voiced[-1] + 1) * frame + keep
    body = np.asarray(wav[max(start, 0): min(end, len(wav))], dtype=np.float32)
    if not pad:
        return body
    return np.pad(body, (max(-start, 0), max(end - len(wav), 0)))
