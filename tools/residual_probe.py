"""How much of the first level's quantisation error one residual codebook of K entries removes: the
encoder's unit vectors of N corpus utterances, k-means (Lloyd, 15 rounds) on 80% of the first level's
residuals, the squared error on the other 20% (docs/training/GATES.md, tenth session).

    python -m tools.residual_probe [--dvae checkpoints/default/dvae.safetensors] [--corpus /work/corpus]
        [--utterances 400] [--sizes 256,1024,4096]
"""

from __future__ import annotations

import argparse

import numpy as np
import torch
import torch.nn.functional as F

from tts import audio
from tts.checkpoints import load_component
from tts.train.data import Corpus


def kmeans(train: torch.Tensor, k: int, rounds: int = 15) -> torch.Tensor:
    """(N, d) -> k centres (k, d), started on random rows."""
    centres = train[torch.randperm(len(train))[:k]].clone()
    for _ in range(rounds):
        assign = torch.cdist(train, centres).argmin(1)
        sums = torch.zeros_like(centres).index_add_(0, assign, train)
        counts = torch.bincount(assign, minlength=k).float()
        centres = torch.where(counts[:, None] > 0, sums / counts.clamp(min=1)[:, None], centres)
    return centres


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--dvae", default="checkpoints/default/dvae.safetensors")
    parser.add_argument("--corpus", default="/work/corpus")
    parser.add_argument("--utterances", type=int, default=400)
    parser.add_argument("--sizes", default="256,1024,4096")
    args = parser.parse_args()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    dvae = load_component(args.dvae, "dvae").eval()
    corpus = Corpus(args.corpus)
    items = list(corpus.items)
    np.random.default_rng(0).shuffle(items)
    with torch.no_grad():
        z = torch.cat([F.normalize(dvae.encoder(dvae._trim(audio.normalize_mel(torch.from_numpy(corpus.mel(u))[None]))),
                                   dim=1)[0].t() for u in items[:args.utterances]])  # (N, d)
        rest = z - dvae.quantizer.codebook[dvae.quantizer.codes(z)]
        split = int(0.8 * len(rest))
        train, held = rest[:split], rest[split:]
        print(f"{len(z)} vectors; first-level squared error {held.pow(2).sum(1).mean():.4f} (held out; |z|^2 = 1)")
        for k in (int(s) for s in args.sizes.split(",")):
            centres = kmeans(train, k)
            error = (held - centres[torch.cdist(held, centres).argmin(1)]).pow(2).sum(1).mean()
            print(f"residual level of {k}: {error:.4f}")


if __name__ == "__main__":
    main()
