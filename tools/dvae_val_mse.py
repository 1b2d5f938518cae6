"""Score DVAE weights on the validation batches of a DVAE config (whole utterances when the config
has a phoneme probe), so that runs trained differently are compared on the same data.

    python -m tools.dvae_val_mse [--config configs/dvae.toml] DVAE.safetensors...
"""

from __future__ import annotations

import argparse
import random

import torch

from tts.checkpoints import load_component
from tts.precision import cpu_has_native_bf16
from tts.train.config import load_config
from tts.train.tasks import DVAETask


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("weights", nargs="+")
    parser.add_argument("--config", default="configs/dvae.toml")
    args = parser.parse_args()
    torch.set_num_threads(1)
    config = load_config(args.config)
    task = DVAETask(config, torch.device("cpu"))
    task.module.eval()
    native_bf16 = cpu_has_native_bf16()  # as the trainer: float32 where bf16 would be emulated
    for path in args.weights:
        task.module.dvae = load_component(path, "dvae").eval()  # its own config (context blocks or not)
        batches = task.batches("val", random.Random(1234), (0, 1))  # the trainer's validation batches
        mse = 0.0
        for _ in range(config.data.val_batches):
            batch = next(batches)  # outside autocast: mels computed here are cached in float32
            with torch.no_grad(), torch.autocast("cpu", dtype=torch.bfloat16, enabled=native_bf16):
                mse += float(task.module(**batch)["mse"]) / config.data.val_batches
        print(f"{path}: validation MSE {mse:.5f}")


if __name__ == "__main__":
    main()
