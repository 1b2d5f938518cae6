"""Carry a trained GPT over to a new DVAE codebook, so that its training goes on instead of restarting.

    python -m tts.train.remap GPT OLD_DVAE NEW_DVAE OUT [--corpus DIR [--utterances 2000]]

Every new code takes the speech embedding and output row of one old code, its source. With
`--corpus`, the source is the old code the new one most often stands beside: both DVAEs encode the
same utterances, and each new code is counted against the old code covering the same mel frames.
Without it, the source is the old code nearest in the codebooks' shared space, which holds only
while the new encoder writes where the old one did (a DVAE retrained with `[task] init_partial`
whose encoder changed drifts away from it: the x2 DVAE's nearest codes covered 377 of 1,024 old
ones). Where several new codes share a source, each output bias gets the log of its share of the
group's uses (log 1/n when uses are not counted): the group's total probability is the old code's,
and the remapped GPT starts out predicting what the old one did. Everything else (text side,
transformer, voice encoder, position tables) is copied as it is.

When the new DVAE also writes more codes a second (fewer mel frames per code: the x2 DVAE writes one
per 2 frames where the old one wrote one per 4), the speech position table is stretched by that
factor: new position j takes the old table at j / factor, linearly interpolated, so a code keeps the
position embedding of the moment it stands for. The GPT then still speaks at the old rhythm and has
to learn the new one; what it keeps is its text side, voice encoder and alignment.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable, Iterator

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


def code_cooccurrence(pairs: Iterable[tuple[torch.Tensor, torch.Tensor]], factor: int, k_old: int,
                      k_new: int) -> torch.Tensor:
    """Codes of the same utterances from both DVAEs, (old (T,), new (about factor T,)) a pair ->
    (K_new, K_old) counts: new code i covers the mel frames of old code i // factor."""
    counts = torch.zeros(k_new * k_old, dtype=torch.float64)
    for old, new in pairs:
        n = min(len(new), len(old) * factor)
        pair_ids = new[:n].long() * k_old + old.long()[torch.arange(n) // factor]
        counts += torch.bincount(pair_ids, minlength=k_new * k_old).double()
    return counts.view(k_new, k_old)


def source_codes(old_codebook: torch.Tensor, new_codebook: torch.Tensor,
                 counts: torch.Tensor | None = None) -> torch.Tensor:
    """(K_new,) each new code's source: the old code it was most often seen beside in `counts`
    (K_new, K_old), else the nearest old code in the codebooks."""
    nearest = nearest_old_codes(old_codebook, new_codebook)
    if counts is None:
        return nearest
    return torch.where(counts.sum(1) > 0, counts.argmax(1), nearest)


@torch.no_grad()
def remap_speech_codes(gpt: SpeechGPT, old_codebook: torch.Tensor, new_codebook: torch.Tensor,
                       counts: torch.Tensor | None = None) -> SpeechGPT:
    """`gpt` reads and writes the codes of `old_codebook` (K_old, d) -> a GPT for `new_codebook` (K_new, d).
    `counts` (K_new, K_old), from `code_cooccurrence`, chooses each new code's source where it was seen."""
    k_old, k_new = old_codebook.shape[0], new_codebook.shape[0]
    codes = gpt.config.start_mel_token  # the speech vocabulary is the codes, then start and stop
    if codes != k_old:
        raise TTSError(f"the GPT reads {codes} codes, the old DVAE has {k_old}")
    source = source_codes(old_codebook, new_codebook, counts)  # (K_new,)
    # (K_new,) how often each new code is used; one more: a code never seen keeps some probability
    uses = torch.ones(k_new, dtype=torch.float64) if counts is None else counts.sum(1) + 1
    group = torch.zeros(k_old, dtype=torch.float64).index_add_(0, source, uses)  # (K_old,) uses per source
    specials = torch.arange(k_old, gpt.config.number_mel_codes)  # start and stop map to themselves
    rows = torch.cat([source, specials])
    config = dataclasses.replace(gpt.config, number_mel_codes=k_new + len(specials))
    new = SpeechGPT(config)
    state = {k: v for k, v in gpt.state_dict().items() if not k.startswith(("mel_embedding.", "mel_head."))}
    state["mel_embedding.weight"] = gpt.mel_embedding.weight[rows].clone()
    state["mel_head.weight"] = gpt.mel_head.weight[rows].clone()
    bias = gpt.mel_head.bias[rows].clone()
    bias[:k_new] += torch.log(uses / group[source]).to(bias.dtype)
    state["mel_head.bias"] = bias
    new.load_state_dict(state)
    return new.eval()


@torch.no_grad()
def stretch_code_rate(gpt: SpeechGPT, factor: int) -> SpeechGPT:
    """A GPT for codes `factor` times as frequent: the speech position table (P, D) -> (factor P, D),
    new row j = the old table at j / factor (linear between rows, the last row held)."""
    if factor < 1:
        raise TTSError(f"the code rate can only grow by a whole factor, got {factor}")
    if factor == 1:
        return gpt
    old = gpt.mel_pos_embedding.emb.weight  # (P, D)
    rows = old.shape[0]
    at = torch.arange(rows * factor, dtype=torch.float64) / factor  # (factor P,) old positions
    low = at.floor().long().clamp(max=rows - 1)
    high = (low + 1).clamp(max=rows - 1)
    frac = (at - low).to(old.dtype)[:, None]
    config = dataclasses.replace(gpt.config, mel_positions=rows * factor,
                                 samples_per_code=gpt.config.samples_per_code // factor)
    new = SpeechGPT(config)
    state = gpt.state_dict()
    state["mel_pos_embedding.emb.weight"] = old[low] * (1 - frac) + old[high] * frac
    new.load_state_dict(state)
    return new.eval()


def rate_factor(old_dvae, new_dvae) -> int:
    """How many times as many codes a second the new DVAE writes (a whole number)."""
    old, new = old_dvae.config.downsample_factor, new_dvae.config.downsample_factor
    if new > old or old % new:
        raise TTSError(f"the new DVAE writes one code per {new} mel frames, the old one per {old}: "
                       "only a rate that grows by a whole factor can be carried over")
    return old // new


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("gpt", help="the trained GPT (a component file)")
    parser.add_argument("old_dvae", help="the DVAE whose codes that GPT learned")
    parser.add_argument("new_dvae", help="the retrained DVAE")
    parser.add_argument("out", help="where the remapped GPT goes (a component file; [task] init of a GPT run)")
    parser.add_argument("--corpus", help="a corpus both DVAEs encode, to pair the codes by use")
    parser.add_argument("--utterances", type=int, default=2000, help="how many of its utterances (a spread sample)")
    args = parser.parse_args()
    if args.utterances < 1:
        raise TTSError(f"--utterances must be at least 1, got {args.utterances}")

    gpt = load_component(args.gpt, "gpt")
    old_dvae, new_dvae = (load_component(p, "dvae") for p in (args.old_dvae, args.new_dvae))
    factor = rate_factor(old_dvae, new_dvae)
    old, new = old_dvae.quantizer.codebook, new_dvae.quantizer.codebook
    counts = None
    if args.corpus:
        counts = code_cooccurrence(corpus_code_pairs(args.corpus, old_dvae, new_dvae, args.utterances),
                                   factor, old.shape[0], new.shape[0])
    remapped = stretch_code_rate(remap_speech_codes(gpt, old, new, counts), factor)
    save_component(args.out, "gpt", remapped)
    used = source_codes(old, new, counts).unique().numel()
    how = ("nearest in the codebooks" if counts is None else
           f"by use over {int(counts.sum())} codes; {int((counts.sum(1) > 0).sum())} new codes seen")
    rate = f"; {factor} times the codes a second ({remapped.config.mel_positions} speech positions)" if factor > 1 else ""
    print(f"{args.out}: {new.shape[0]} codes from {used} of the old {old.shape[0]} ({how}){rate}")


def corpus_code_pairs(root: str, old_dvae, new_dvae, limit: int) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """Both DVAEs' codes of up to `limit` corpus utterances, spread over the whole corpus (cached in it)."""
    from .data import Corpus
    from .tasks import component_id

    corpus = Corpus(root)
    items = corpus.items[::max(1, len(corpus.items) // limit)][:limit]
    ids = component_id(old_dvae), component_id(new_dvae)
    for utt in items:
        yield (torch.from_numpy(corpus.codes(utt, old_dvae, ids[0])),
               torch.from_numpy(corpus.codes(utt, new_dvae, ids[1])))


if __name__ == "__main__":
    try:
        main()
    except TTSError as exc:
        raise SystemExit(f"error: {exc}") from None
