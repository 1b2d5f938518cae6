"""Carry a trained GPT over to a new DVAE codebook, so that its training goes on instead of restarting.

    python -m tts.train.remap GPT OLD_DVAE NEW_DVAE OUT

When a DVAE is retrained from an old one (`[task] init_partial`, say with a bigger codebook), its
encoder still writes into nearly the same space, so each new code has a nearest old code. The new GPT
takes, for every new code, the speech embedding and output row of that old code. Where n new codes
share one old code, each of their output biases loses log(n): the group's total probability is then
the old code's, and the remapped GPT starts out predicting what the old one did. Everything else
(text side, transformer, voice encoder, position tables) is copied as it is.
"""

from __future__ import annotations

import argparse
import dataclasses

import torch

from ..checkpoints import load_component, save_component
from ..errors import TTSError
from ..models.gpt import SpeechGPT


def nearest_old_codes(old_codebook: torch.Tensor, new_codebook: torch.Tensor) -> torch.Tensor:
    """Unit-vector codebooks (K_old, d), (K_new, d) -> (K_new,) index of the most similar old code."""
    if old_codebook.shape[1] != new_codebook.shape[1]:
        raise TTSError(f"the codebooks differ in width ({old_codebook.shape[1]} and {new_codebook.shape[1]}): "
                       "the new DVAE must write into the old one's space")
    return (new_codebook.float() @ old_codebook.float().t()).argmax(dim=1)


@torch.no_grad()
def remap_speech_codes(gpt: SpeechGPT, old_codebook: torch.Tensor, new_codebook: torch.Tensor) -> SpeechGPT:
    """`gpt` reads and writes the codes of `old_codebook` (K_old, d) -> a GPT for `new_codebook` (K_new, d)."""
    k_old, k_new = old_codebook.shape[0], new_codebook.shape[0]
    codes = gpt.config.start_mel_token  # the speech vocabulary is the codes, then start and stop
    if codes != k_old:
        raise TTSError(f"the GPT reads {codes} codes, the old DVAE has {k_old}")
    source = nearest_old_codes(old_codebook, new_codebook)  # (K_new,)
    shared = torch.bincount(source, minlength=k_old).float()  # new codes per old code
    specials = torch.arange(k_old, gpt.config.number_mel_codes)  # start and stop map to themselves
    rows = torch.cat([source, specials])
    config = dataclasses.replace(gpt.config, number_mel_codes=k_new + len(specials))
    new = SpeechGPT(config)
    state = {k: v for k, v in gpt.state_dict().items() if not k.startswith(("mel_embedding.", "mel_head."))}
    state["mel_embedding.weight"] = gpt.mel_embedding.weight[rows].clone()
    state["mel_head.weight"] = gpt.mel_head.weight[rows].clone()
    bias = gpt.mel_head.bias[rows].clone()
    bias[:k_new] -= torch.log(shared[source].clamp_min(1))
    state["mel_head.bias"] = bias
    new.load_state_dict(state)
    return new.eval()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gpt", help="the trained GPT (a component file)")
    parser.add_argument("old_dvae", help="the DVAE whose codes that GPT learned")
    parser.add_argument("new_dvae", help="the retrained DVAE")
    parser.add_argument("out", help="where the remapped GPT goes (a component file; [task] init of a GPT run)")
    args = parser.parse_args()

    gpt = load_component(args.gpt, "gpt")
    old, new = (load_component(p, "dvae").quantizer.codebook for p in (args.old_dvae, args.new_dvae))
    remapped = remap_speech_codes(gpt, old, new)
    used = nearest_old_codes(old, new).unique().numel()
    save_component(args.out, "gpt", remapped)
    print(f"{args.out}: {new.shape[0]} codes from {used} of the old {old.shape[0]} "
          f"(on average {new.shape[0] / used:.1f} new codes share an old one)")


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
