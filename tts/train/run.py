"""Entry point of `tts train`: load the config, build the task, run the loop."""

from __future__ import annotations

from ..errors import TTSError
from .config import load_config
from .loop import Trainer
from .tasks import make_task


def train(task: str, config_path: str, overrides: list[str] | None = None, export: str | None = None) -> Trainer:
    """Train (resuming a run that stopped); with `export` ("ema" or "live") only rewrite the run's
    component file from its checkpoint."""
    config = load_config(config_path)
    if overrides:
        config = config.with_overrides(overrides)
    if config.task != task:
        raise TTSError(f"{config_path} configures {config.task!r}, not {task!r}")
    trainer = Trainer(config, make_task)
    if export is not None:
        if trainer.step == 0:
            raise TTSError(f"{config.run.out} has no checkpoint to export")
        trainer.export(export)
    else:
        trainer.run()
    return trainer
