"""The training loop shared by every task: mixed precision, gradient accumulation, EMA, validation,
checkpoint and resume, CSV log and PNG plot, and multi-process data parallelism (torchrun + DDP).

A task provides a trainable module whose `forward(**batch)` returns a dict of scalar losses (the
key "loss" is optimised), an endless batch iterator per split, and an `export` of the trained
weights. Only rank 0 writes files.
"""

from __future__ import annotations

import contextlib
import csv
import logging
import math
import os
import random
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Protocol

import torch
import torch.distributed as dist
from torch import nn

from ..device import resolve_device
from ..errors import TTSError
from ..fileio import atomic_path
from ..precision import cpu_has_native_bf16, half_dtype
from .config import TrainConfig

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pt"
LOG = "log.csv"
PLOT = "losses.png"


def within_module(name: str, prefix: str) -> bool:
    """Whether parameter `name` is `prefix` or lies in the module it names."""
    return name == prefix or name.startswith(prefix + ".")


def param_groups(module: nn.Module, weight_decay: float) -> list[dict]:
    """The optimizer's groups: weight decay on matrices and kernels but not on biases, gains or
    embeddings; a part named in the module's `lr_scales` ({name prefix: factor}, e.g. a critic that
    starts from scratch beside a trained generator) steps at that multiple of the schedule's rate."""
    scales: dict[str, float] = getattr(module, "lr_scales", {})
    groups: dict[tuple[bool, float], list[nn.Parameter]] = {(True, 1.0): [], (False, 1.0): []}  # as checkpoints have
    for name, p in module.named_parameters():
        if p.requires_grad:
            decays = p.dim() >= 2 and "emb" not in name
            scale = next((f for prefix, f in scales.items() if within_module(name, prefix)), 1.0)
            groups.setdefault((decays, scale), []).append(p)
    return [{"params": params, "weight_decay": weight_decay if decays else 0.0, "lr_scale": scale}
            for (decays, scale), params in sorted(groups.items(), key=lambda item: (not item[0][0], item[0][1]))]


class Task(Protocol):
    module: nn.Module
    find_unused_parameters: bool

    def batches(self, split: str, rng: random.Random, shard: tuple[int, int]) -> Iterator[dict]: ...

    def export(self, module: nn.Module, run_dir: Path) -> Path: ...


class EMA:
    """Exponential moving average of the parameters (float32); buffers are copied as they are.

    The decay warms up as min(decay, (1 + n) / (10 + n)) after n updates, so the average follows the
    fast early changes instead of holding on to the random initialisation (with a fixed 0.999 the
    average lags ~1000 steps: at step 2000 of a diffusion run its validation MSE was 0.22 while the
    training MSE was 0.08)."""

    def __init__(self, module: nn.Module, decay: float, updates: int = 0):
        self.decay = decay
        self.updates = updates
        self.shadow = {k: v.detach().float().clone() for k, v in module.state_dict().items()}
        self.params = [k for k, _ in module.named_parameters()]

    def current_decay(self) -> float:
        return min(self.decay, (1 + self.updates) / (10 + self.updates))

    @torch.no_grad()
    def update(self, module: nn.Module) -> None:
        decay = self.current_decay()
        self.updates += 1
        state = module.state_dict()
        for key in self.params:
            self.shadow[key].lerp_(state[key].float(), 1 - decay)
        for key, value in state.items():
            if key not in self.params:
                self.shadow[key].copy_(value)

    @contextlib.contextmanager
    def applied(self, module: nn.Module):
        """Temporarily load the averaged weights into `module`."""
        saved = {k: v.detach().clone() for k, v in module.state_dict().items()}
        module.load_state_dict(self.shadow)
        try:
            yield module
        finally:
            module.load_state_dict(saved)


def learning_rate(step: int, config: TrainConfig) -> float:
    """Linear warm-up, then cosine decay to min_lr."""
    o = config.optim
    if step < o.warmup:
        return o.lr * (step + 1) / o.warmup
    progress = min(1.0, (step - o.warmup) / max(1, o.steps - o.warmup))
    return o.min_lr + 0.5 * (o.lr - o.min_lr) * (1 + math.cos(math.pi * progress))


class Trainer:
    def __init__(self, config: TrainConfig, task_factory):
        self.config = config
        self.world = int(os.environ.get("WORLD_SIZE", "1"))
        self.rank = int(os.environ.get("RANK", "0"))
        local_rank = int(os.environ.get("LOCAL_RANK", "0"))
        if config.run.threads > 0:
            torch.set_num_threads(config.run.threads)
        self.device = resolve_device(config.run.device, index=local_rank)
        if self.world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if self.device.type == "cuda" else "gloo")
        torch.manual_seed(config.run.seed + self.rank)
        self.run_dir = Path(config.run.out)
        if self.rank == 0:
            self.run_dir.mkdir(parents=True, exist_ok=True)
        self.task: Task = task_factory(config, self.device)
        self.module = self.task.module.to(self.device)
        o = config.optim
        self.optimizer = torch.optim.AdamW(param_groups(self.module, o.weight_decay), lr=o.lr, betas=(o.beta1, o.beta2))
        precision = config.run.precision
        self.autocast_dtype = half_dtype(precision)  # TTSError for an unknown name
        if precision == "fp16" and self.device.type != "cuda":
            raise TTSError("fp16 training needs a CUDA GPU; use bf16 on CPU")
        if precision == "bf16" and self.device.type == "cpu" and not cpu_has_native_bf16():
            # emulated bf16 convolutions ran 25x slower than float32 on an AVX2-only CPU (1.1 s -> 26 s
            # for the DVAE encoder on 16 x 80 x 400 mels, one thread)
            log.warning("this CPU has no native bf16 (AVX512-BF16 or AMX): training in float32")
            self.autocast_dtype = None
        self.scaler = torch.amp.GradScaler("cuda", enabled=precision == "fp16")
        self.ema: EMA | None = None  # made in _resume, from the weights the run starts or resumes with
        self.step = 0
        self.train_model = self.module
        if self.world > 1:
            self.train_model = nn.parallel.DistributedDataParallel(
                self.module, device_ids=[self.device.index] if self.device.type == "cuda" else None,
                find_unused_parameters=self.task.find_unused_parameters,
            )
        self._resume()

    # -- state -----------------------------------------------------------------------------------
    def _resume(self) -> None:
        path = self.run_dir / CHECKPOINT
        decay = self.config.run.ema
        if not path.is_file():
            self._init_from_component()
            self.ema = EMA(self.module, decay) if decay > 0 else None
            return
        try:
            state = torch.load(path, map_location=self.device, weights_only=True)
        except Exception as exc:
            raise TTSError(f"cannot resume from {path}: {str(exc).splitlines()[0]}") from None
        if state.get("task") != self.config.task:
            raise TTSError(f"{path} is a {state.get('task')} run, not {self.config.task}")
        self.module.load_state_dict(state["model"])
        self.optimizer.load_state_dict(state["optimizer"])
        self.scaler.load_state_dict(state["scaler"])
        self.step = int(state["step"])
        if decay > 0:
            # a run that had no average (run.ema turned on when resuming) starts it at the resumed
            # weights: already at its full decay, it would otherwise hold on to whatever it started from
            self.ema = EMA(self.module, decay, updates=self.step)
            if "ema" in state:
                self.ema.shadow = {k: v.float() for k, v in state["ema"].items()}
        log.info("resumed %s at step %d", path, self.step)

    def _init_from_component(self) -> None:
        """A new run with `[task] init = "<component.safetensors>"` starts from those weights (a model
        committed to the repository, say) instead of random ones; optimiser state starts afresh. A
        config may add parts the component lacks (the DVAE's context blocks): they keep their
        initialisation; weights the config lacks are an error. With `[task] init_partial = true` only
        the tensors whose name and shape both match are taken (a DVAE with another codebook or code
        rate starting from a trained one); the rest keep their initialisation and are logged."""
        init = self.config.task_options.get("init")
        if not init:
            return
        from ..checkpoints import load_component

        kind = self.config.task
        component = load_component(init, kind)
        target = getattr(self.module, kind, None)
        if target is None:
            raise TTSError(f"[task] init: the {kind} trainer has no {kind} module to load into")
        weights = component.state_dict()
        if self.config.task_options.get("init_partial", False):
            own = target.state_dict()
            skipped = sorted(k for k, v in weights.items() if k not in own or own[k].shape != v.shape)
            weights = {k: v for k, v in weights.items() if k not in skipped}
            if skipped:
                log.info("init_partial: not taken from %s (no tensor of that name and shape here): %s",
                         init, ", ".join(skipped))
        try:
            result = target.load_state_dict(weights, strict=False)
        except RuntimeError as exc:  # a tensor of another shape
            raise TTSError(f"[task] init: {init} does not fit this {kind} config: {str(exc).splitlines()[0]}") from None
        if result.unexpected_keys:
            raise TTSError(f"[task] init: {init} has weights this {kind} config lacks: "
                           f"{', '.join(result.unexpected_keys[:3])}")
        log.info("initialised %s from %s", kind, init)
        if result.missing_keys:  # parts this config adds (new blocks) keep their own initialisation
            log.info("not in %s, left as initialised: %s", init, ", ".join(sorted({k.rsplit('.', 2)[0] for k in result.missing_keys})))

    def save(self) -> None:
        if self.rank != 0:
            return
        state = {
            "task": self.config.task, "step": self.step, "config": self.config.to_dict(),
            "model": self.module.state_dict(), "optimizer": self.optimizer.state_dict(),
            "scaler": self.scaler.state_dict(),
        }
        if self.ema is not None:
            state["ema"] = self.ema.shadow
        with atomic_path(self.run_dir / CHECKPOINT) as tmp:
            torch.save(state, tmp)
        self.export()
        plot_losses(self.run_dir / LOG, self.run_dir / PLOT)

    def export(self, weights: str = "ema") -> Path:
        """Write the component file from the averaged ("ema") or the current ("live") weights."""
        if weights not in ("ema", "live"):
            raise TTSError(f"weights must be ema or live, got {weights!r}")
        if weights == "live":
            return self.task.export(self.module, self.run_dir)
        with self._averaged() as module:
            return self.task.export(module, self.run_dir)

    @contextlib.contextmanager
    def _averaged(self):
        if self.ema is None:
            yield self.module
        else:
            with self.ema.applied(self.module) as module:
                yield module

    # -- loop ------------------------------------------------------------------------------------
    def _autocast(self):
        if self.autocast_dtype is None:
            return contextlib.nullcontext()
        return torch.autocast(self.device.type, dtype=self.autocast_dtype)

    def _losses(self, model: nn.Module, batch: dict) -> dict[str, torch.Tensor]:
        batch = {k: v.to(self.device, non_blocking=True) if torch.is_tensor(v) else v for k, v in batch.items()}
        with self._autocast():
            return model(**batch)

    @torch.no_grad()
    def validate(self) -> dict[str, float]:
        rng = random.Random(1234)  # the same validation batches every time
        batches = self.task.batches("val", rng, (0, 1))
        totals: dict[str, float] = {}
        n = self.config.data.val_batches
        with self._averaged() as module:
            module.eval()
            for _ in range(n):
                for key, value in self._losses(module, next(batches)).items():
                    totals[key] = totals.get(key, 0.0) + float(value) / n
            module.train()
        return totals

    def run(self) -> None:
        cfg = self.config
        steps = cfg.optim.steps
        if self.step >= steps:
            log.info("already trained %d steps", self.step)
            if self.rank == 0:
                self.save()
            return
        rng = random.Random(cfg.run.seed * 1_000_003 + self.step * 7919 + self.rank)
        batches = self.task.batches("train", rng, (self.rank, self.world))
        logger = CsvLog(self.run_dir / LOG, resumed_at=self.step) if self.rank == 0 else None
        self.module.train()
        started, sums, micro_batches = time.time(), {}, 0
        while self.step < steps:
            if hasattr(self.task, "set_step"):
                self.task.set_step(self.step)
            lr = learning_rate(self.step, cfg)
            for group in self.optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            for micro in range(cfg.optim.grad_accum):
                sync = micro == cfg.optim.grad_accum - 1 or self.world == 1
                with contextlib.nullcontext() if sync else self.train_model.no_sync():
                    losses = self._losses(self.train_model, next(batches))
                    loss = losses["loss"] / cfg.optim.grad_accum
                    if not torch.isfinite(loss):
                        raise TTSError(f"loss became {float(loss)} at step {self.step}; lower optim.lr")
                    self.scaler.scale(loss).backward()
                for key, value in losses.items():
                    sums[key] = sums.get(key, 0.0) + float(value.detach())
                micro_batches += 1
            self.scaler.unscale_(self.optimizer)
            grad_norm = nn.utils.clip_grad_norm_(self.module.parameters(), cfg.optim.grad_clip)
            self.scaler.step(self.optimizer)
            self.scaler.update()
            self.optimizer.zero_grad(set_to_none=True)
            if self.ema is not None:
                self.ema.update(self.module)
            self.step += 1
            if self.step % cfg.run.log_every == 0 or self.step == steps:
                row = {k: v / micro_batches for k, v in sums.items()}
                sums, micro_batches = {}, 0
                row.update(step=self.step, lr=lr, grad_norm=float(grad_norm), elapsed=time.time() - started)
                val = self.validate() if self.rank == 0 and (self.step % cfg.run.val_every == 0 or self.step == steps) else {}
                row.update({f"val_{k}": v for k, v in val.items()})
                if logger is not None:
                    logger.write(row)
                    log.info("step %d %s", self.step, " ".join(f"{k}={v:.4g}" for k, v in row.items() if k != "step"))
            if self.step % cfg.run.save_every == 0 or self.step == steps:
                self.save()
            if self.step % cfg.run.val_every == 0 and hasattr(self.task, "refresh") and self.task.refresh():
                batches = self.task.batches("train", rng, (self.rank, self.world))
        if self.world > 1:
            dist.barrier()


class CsvLog:
    """Appends rows to a CSV file; the header is the union of keys seen (rewritten when it grows).
    Rows after `resumed_at` (logged by a run that stopped before its next checkpoint) are dropped."""

    def __init__(self, path: Path, resumed_at: int):
        self.path = path
        self.rows: list[dict] = []
        if path.is_file():
            with open(path, newline="") as f:
                self.rows = [r for r in csv.DictReader(f) if int(r["step"]) <= resumed_at]

    def write(self, row: dict) -> None:
        self.rows.append({k: (f"{v:.6g}" if isinstance(v, float) else v) for k, v in row.items()})
        keys = ["step"] + sorted({k for r in self.rows for k in r} - {"step"})
        with atomic_path(self.path) as tmp:
            with open(tmp, "w", newline="") as f:
                writer = csv.DictWriter(f, fieldnames=keys)
                writer.writeheader()
                writer.writerows(self.rows)


def plot_losses(log_path: Path, png_path: Path) -> None:
    """Training losses (thin) and validation losses (markers) against steps, one panel per loss."""
    if not log_path.is_file():
        return
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    with open(log_path, newline="") as f:
        rows = list(csv.DictReader(f))
    names = sorted({k for r in rows for k in r if k not in ("step", "lr", "elapsed", "grad_norm") and not k.startswith("val_")})
    if not names:
        return
    fig, axes = plt.subplots(len(names), 1, figsize=(7, 2.4 * len(names)), squeeze=False)
    for ax, name in zip(axes[:, 0], names):
        for key, style in ((name, "-"), (f"val_{name}", "o")):
            points = [(int(r["step"]), float(r[key])) for r in rows if r.get(key) not in (None, "")]
            if points:
                xs, ys = zip(*points)
                ax.plot(xs, ys, style, label=key, markersize=3)
        ax.set_ylabel(name)
        ax.legend(loc="upper right", fontsize=8)
    axes[-1, 0].set_xlabel("step")
    fig.tight_layout()
    with atomic_path(png_path) as tmp:
        fig.savefig(tmp, format="png", dpi=90)
    plt.close(fig)
