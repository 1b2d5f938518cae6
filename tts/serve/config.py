"""The server's settings (one frozen dataclass, checked once) and the model they load."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from ..errors import TTSError
from ..sampling.options import Options, preset

API_KEY_ENV = "TTS_API_KEY"  # read by `tts serve` when --api-key is not given


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"  # loopback only unless told otherwise
    port: int = 8000
    model_dir: str | None = None  # None: the bundled default model
    device: str = "cpu"
    precision: str = "fp32"
    # generation: one setting for every request (OpenAI's API has no per-request quality knobs)
    preset: str = "ultra_fast"  # a server answers many: Tortoise's fastest preset (speak's default is fast)
    candidates: int | None = None
    diffusion_steps: int | None = None
    sampler: str | None = None
    min_length_ratio: float | None = None  # no stop code before this fraction of a chunk's expected codes
    max_tokens: int | None = None  # speech codes per chunk at most
    gpt_batch: int | None = None  # GPT rows (candidates of any chunks) decoded at once; None: a whole batch
    # load
    max_batch: int = 8  # text chunks sampled together in one GPT batch; 1 turns batching off
    batch_window_ms: float = 50.0  # how long the first request of a batch waits for others
    max_queue: int = 64  # speech requests held (waiting or being made); more are refused with 503
    max_input_chars: int = 4096  # OpenAI's limit
    request_timeout_s: float = 600.0  # a speech request that takes longer is cut off
    # access
    api_key: str | None = None  # when set, every endpoint but /health needs "Authorization: Bearer KEY"
    voices_dir: str | None = None  # user voices (default: $TTS_VOICES_DIR or ~/.local/share/tts/voices)
    ffmpeg: str | None = "auto"  # "auto": from PATH; None: none (mp3 by libsndfile, no aac); or its path

    def validate(self) -> ServerConfig:
        checks = [
            (0 <= self.port <= 65535, "port must be between 0 and 65535"),
            (self.max_batch >= 1, "max batch must be at least 1"),
            (self.batch_window_ms >= 0, "batch window must be non-negative"),
            (self.max_queue >= 1, "max queue must be at least 1"),
            (self.max_input_chars >= 1, "max input chars must be at least 1"),
            (self.request_timeout_s > 0, "request timeout must be positive"),
            (self.api_key is None or self.api_key.strip() != "", "the API key is empty"),
        ]
        for ok, message in checks:
            if not ok:
                raise TTSError(message)
        return self

    def options(self, card_presets: dict | None = None) -> Options:
        """The generation options: the preset, the model card's settings for it, then this config's overrides.
        GPT rows at once (`batch_size`): `gpt_batch`, or enough for `max_batch` chunks' candidates."""
        overrides = {"candidates": self.candidates, "diffusion_steps": self.diffusion_steps, "sampler": self.sampler,
                     "min_length_ratio": self.min_length_ratio, "max_mel_tokens": self.max_tokens}
        chosen = {k: v for k, v in overrides.items() if v is not None}
        options = preset(self.preset, **{**(card_presets or {}).get(self.preset, {}), **chosen})
        rows = self.gpt_batch or max(options.batch_size, options.candidates * self.max_batch)
        return dataclasses.replace(options, batch_size=rows).validate()

    def replace(self, **changes) -> ServerConfig:
        return dataclasses.replace(self, **changes).validate()
