"""Training configuration: a TOML file -> dataclasses, embedded in every checkpoint.

    [task]    name = "gpt" (one of TASKS) and task-specific inputs, e.g. the DVAE to use
    [model]   ...fields of the task's model config (GPTConfig, ...)
    [data]    corpus, lengths, batch size, validation share
    [optim]   learning rate schedule, steps, accumulation, clipping
    [run]     output directory, precision, EMA, logging/validation/checkpoint intervals
"""

from __future__ import annotations

import dataclasses
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from ..errors import TTSError

TASKS = ("dvae", "mel_reader", "gpt", "diffusion", "flow", "vocoder")


@dataclass
class DataConfig:
    corpus: str = "corpus"  # directory written by `tts data build-corpus`
    batch_size: int = 16
    min_seconds: float = 0.5
    max_seconds: float = 10.0
    crop_seconds: float = 0.0  # > 0: random crops of this length; 0: whole utterances
    cond_seconds: float = 4.0  # conditioning clip length (GPT, diffusion)
    val_fraction: float = 0.02
    val_batches: int = 8  # batches of the validation split scored at each validation
    short_first_seconds: float = 0.0  # > 0 (GPT): only utterances this short...
    short_first_steps: int = 0  # ...for this many first steps
    speakers: list[str] = field(default_factory=list)  # empty: all


@dataclass
class OptimConfig:
    lr: float = 3e-4
    min_lr: float = 3e-5
    warmup: int = 500
    steps: int = 10_000
    weight_decay: float = 0.01
    beta1: float = 0.9
    beta2: float = 0.98
    grad_clip: float = 1.0
    grad_accum: int = 1


@dataclass
class RunConfig:
    out: str = "runs/model"
    precision: str = "bf16"  # fp32 | bf16 | fp16 (fp16 on CUDA only, with loss scaling)
    ema: float = 0.999  # 0 disables the moving average of the weights
    log_every: int = 25
    val_every: int = 500
    save_every: int = 1000
    seed: int = 0
    device: str = "auto"
    threads: int = 0  # CPU threads for torch; 0 keeps torch's default


@dataclass
class TrainConfig:
    task: str
    model: dict[str, Any] = field(default_factory=dict)
    data: DataConfig = field(default_factory=DataConfig)
    optim: OptimConfig = field(default_factory=OptimConfig)
    run: RunConfig = field(default_factory=RunConfig)
    task_options: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict, source: str = "config") -> "TrainConfig":
        data = dict(data)
        task = data.pop("task", None)
        if task not in TASKS:
            raise TTSError(f"{source}: task must be one of {', '.join(TASKS)}, got {task!r}")
        sections = {name: data.pop(name, {}) for name in ("model", "data", "optim", "run", "task_options")}
        if data:
            raise TTSError(f"{source}: unknown sections {', '.join(sorted(data))}")
        try:
            return cls(
                task=task,
                model=dict(sections["model"]),
                data=DataConfig(**sections["data"]),
                optim=OptimConfig(**sections["optim"]),
                run=RunConfig(**sections["run"]),
                task_options=dict(sections["task_options"]),
            )
        except TypeError as exc:
            raise TTSError(f"{source}: {exc}") from None

    def with_overrides(self, overrides: list[str]) -> "TrainConfig":
        """Apply `section.field=value` overrides (values parsed as TOML, else kept as strings)."""
        data = self.to_dict()
        for item in overrides:
            key, sep, raw = item.partition("=")
            if not sep or "." not in key:
                raise TTSError(f"override {item!r} should look like section.field=value")
            section, name = key.split(".", 1)
            section = "task_options" if section == "task" else section  # the [task] table
            if section not in data or not isinstance(data[section], dict):
                raise TTSError(f"override {item!r}: no section {section!r}")
            try:
                value = tomllib.loads(f"v = {raw}")["v"]
            except tomllib.TOMLDecodeError:
                value = raw
            data[section][name] = value
        return TrainConfig.from_dict(data, "overrides")


def load_config(path: str | Path) -> TrainConfig:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise TTSError(f"config file {path} does not exist") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise TTSError(f"cannot read config {path}: {exc}") from None
    if not isinstance(data.get("task"), dict):
        raise TTSError(f"{path}: missing [task] table with name = {' | '.join(TASKS)}")
    data["task_options"] = dict(data.pop("task"))
    data["task"] = data["task_options"].pop("name", None)
    return TrainConfig.from_dict(data, str(path))
