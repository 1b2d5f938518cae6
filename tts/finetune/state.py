"""The resumable state of an unfinished fine-tuning: the tuned vectors, Adam's moments, the step, the
training time so far and the held-out figures measured before training, in one safetensors file
written atomically (a kill leaves the previous state whole)."""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ..fileio import atomic_path

log = logging.getLogger(__name__)

FORMAT = "tts-finetune-state/1"


@dataclass
class RunState:
    key: str  # what the run is (config, model, clips, texts): a state with another key is not resumed
    step: int
    elapsed: float  # training seconds so far, over every part of the run
    params: dict[str, torch.Tensor]
    moments: dict[str, dict[str, torch.Tensor]]  # param name -> Adam's {"step", "exp_avg", "exp_avg_sq"}
    before: dict = field(default_factory=dict)  # held-out figures of the zero-shot vectors


def optimizer_moments(optimizer: torch.optim.Optimizer, names: list[str]) -> dict[str, dict[str, torch.Tensor]]:
    """Adam's per-parameter state by name (one parameter per group, in `names` order)."""
    state = optimizer.state_dict()["state"]
    return {name: {k: v.detach().clone() for k, v in state[i].items()} for i, name in enumerate(names) if i in state}


def restore_moments(optimizer: torch.optim.Optimizer, names: list[str], moments: dict) -> None:
    saved = optimizer.state_dict()
    saved["state"] = {i: moments[name] for i, name in enumerate(names) if name in moments}
    optimizer.load_state_dict(saved)


def save_state(path: Path, state: RunState) -> None:
    from safetensors.torch import save_file

    tensors = {f"param.{k}": v.detach().float().cpu().contiguous() for k, v in state.params.items()}
    for name, moment in state.moments.items():
        for k, v in moment.items():
            tensors[f"moment.{name}.{k}"] = v.detach().float().cpu().reshape(v.shape).contiguous()
    meta = {"format": FORMAT, "key": state.key, "step": state.step, "elapsed": state.elapsed, "before": state.before}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"state": json.dumps(meta)})


def load_state(path: Path, key: str, device: torch.device) -> RunState | None:
    """The state at `path` if it belongs to the run `key`; None when there is none, it is another run's,
    or it cannot be read (with a warning)."""
    if not path.is_file():
        return None
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="pt", device=str(device)) as f:
            meta = json.loads((f.metadata() or {}).get("state", "{}"))
            tensors = {k: f.get_tensor(k) for k in f.keys()}
    except Exception as exc:  # noqa: BLE001 - a damaged state means starting again, not failing
        log.warning("cannot read the unfinished fine-tuning in %s (%s): starting again", path, exc)
        return None
    if meta.get("format") != FORMAT or meta.get("key") != key:
        return None
    params = {k.removeprefix("param."): v for k, v in tensors.items() if k.startswith("param.")}
    moments: dict[str, dict[str, torch.Tensor]] = {}
    for k, v in tensors.items():
        if k.startswith("moment."):
            name, part = k.removeprefix("moment.").rsplit(".", 1)
            moments.setdefault(name, {})[part] = v.cpu() if part == "step" else v
    return RunState(key, int(meta["step"]), float(meta["elapsed"]), params, moments, meta.get("before") or {})
