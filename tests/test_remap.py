import pytest
import torch
import torch.nn.functional as F

from tts.errors import TTSError
from tts.models.gpt import SpeechGPT
from tts.train.remap import remap_speech_codes
from tests.test_gpt import tiny_config


def test_a_remapped_gpt_predicts_what_the_old_one_did():
    """Each old code split into two new ones: the pair's total probability is the old code's, and
    reading either of the pair is reading the old code."""
    torch.manual_seed(0)
    old_gpt = SpeechGPT(tiny_config(number_mel_codes=6, dropout=0.0)).eval()  # 4 codes + start, stop
    old_book = F.normalize(torch.randn(4, 8), dim=1)
    order = torch.tensor([2, 0, 3, 1, 0, 2, 1, 3])  # new code i is a copy of old code order[i]
    new_book = F.normalize(old_book[order] + 1e-3 * torch.randn(8, 8), dim=1)
    new_gpt = remap_speech_codes(old_gpt, old_book, new_book)
    assert new_gpt.config.number_mel_codes == 10

    cond, text = torch.randn(1, 64), torch.randint(0, 30, (1, 5))
    old_codes = torch.tensor([[1, 3, 0, 2]])
    new_codes = torch.tensor([[3, 2, 4, 0]])  # order maps them to 1, 3, 0, 2
    with torch.no_grad():
        _, old_logits = old_gpt(cond, text, old_codes)  # (1, 6, 6)
        _, new_logits = new_gpt(cond, text, new_codes)  # (1, 10, 6)
    old_p, new_p = old_logits.softmax(1)[0], new_logits.softmax(1)[0]
    grouped = torch.zeros_like(old_p).index_add_(0, torch.cat([order, torch.tensor([4, 5])]), new_p)
    torch.testing.assert_close(grouped, old_p, atol=1e-5, rtol=1e-4)


def test_remap_refuses_a_codebook_of_another_width():
    gpt = SpeechGPT(tiny_config(number_mel_codes=6))
    with pytest.raises(TTSError, match="width"):
        remap_speech_codes(gpt, torch.randn(4, 8), torch.randn(8, 16))


def test_a_doubled_code_rate_stretches_the_speech_positions():
    """Two codes a step where there was one: position 2k holds old position k, 2k + 1 lies halfway
    to k + 1, and everything else is the old GPT's."""
    from tts.train.remap import stretch_code_rate

    torch.manual_seed(0)
    old_gpt = SpeechGPT(tiny_config(number_mel_codes=6, dropout=0.0)).eval()
    new_gpt = stretch_code_rate(old_gpt, 2)
    old_rows = old_gpt.mel_pos_embedding.emb.weight
    new_rows = new_gpt.mel_pos_embedding.emb.weight
    assert new_gpt.config.mel_positions == 2 * old_gpt.config.mel_positions
    assert new_gpt.config.samples_per_code == old_gpt.config.samples_per_code // 2
    torch.testing.assert_close(new_rows[0::2], old_rows)
    torch.testing.assert_close(new_rows[1:-1:2], (old_rows[:-1] + old_rows[1:]) / 2)
    torch.testing.assert_close(new_rows[-1], old_rows[-1])
    new_state = new_gpt.state_dict()
    for name, value in old_gpt.state_dict().items():
        if name != "mel_pos_embedding.emb.weight":
            assert torch.equal(new_state[name], value), name
    assert stretch_code_rate(old_gpt, 1) is old_gpt


def test_a_code_rate_must_grow_by_a_whole_factor():
    from types import SimpleNamespace

    from tts.train.remap import rate_factor

    def dvae(frames):
        return SimpleNamespace(config=SimpleNamespace(downsample_factor=frames))

    assert rate_factor(dvae(4), dvae(2)) == 2
    assert rate_factor(dvae(4), dvae(4)) == 1
    for old, new in ((2, 4), (4, 3)):
        with pytest.raises(TTSError, match="whole factor"):
            rate_factor(dvae(old), dvae(new))


def test_codes_are_paired_by_the_frames_they_cover():
    """At twice the rate, new codes 2k and 2k + 1 lie inside old code k; a new sequence longer than
    twice the old one is cut."""
    from tts.train.remap import code_cooccurrence

    old = torch.tensor([3, 0, 1])
    new = torch.tensor([5, 5, 2, 4, 0, 0, 1])  # the last code has no old partner
    counts = code_cooccurrence([(old, new), (old[:1], new[:2])], factor=2, k_old=4, k_new=6)
    assert counts.shape == (6, 4)
    assert counts[5, 3] == 4 and counts[2, 0] == 1 and counts[4, 0] == 1 and counts[0, 1] == 2
    assert counts.sum() == 8


def test_counted_use_chooses_the_source_and_splits_its_probability():
    """Codebooks that say nothing (the new codes all nearest to old code 0) lose to counted use: each
    new code reads as the old code it was seen beside, and a source's probability is shared in
    proportion to its new codes' uses."""
    from tts.train.remap import code_cooccurrence

    torch.manual_seed(0)
    old_gpt = SpeechGPT(tiny_config(number_mel_codes=6, dropout=0.0)).eval()
    old_book = F.normalize(torch.randn(4, 8), dim=1)
    new_book = old_book[[0, 0, 0, 0, 0]]
    source = torch.tensor([2, 2, 1, 3, 0])  # where each new code is seen
    old_codes = torch.tensor([2, 1, 3, 0, 2])
    new_codes = torch.tensor([0, 2, 3, 4, 1])
    pairs = [(old_codes, new_codes)] + [(torch.tensor([2]), torch.tensor([0]))] * 2
    counts = code_cooccurrence(pairs, factor=1, k_old=4, k_new=5)
    assert counts.argmax(1).tolist() == source.tolist()
    new_gpt = remap_speech_codes(old_gpt, old_book, new_book, counts)

    cond, text = torch.randn(1, 64), torch.randint(0, 30, (1, 5))
    with torch.no_grad():
        _, old_logits = old_gpt(cond, text, old_codes[None, :4])
        _, new_logits = new_gpt(cond, text, new_codes[None, :4])
    old_p, new_p = old_logits.softmax(1)[0], new_logits.softmax(1)[0]
    grouped = torch.zeros_like(old_p).index_add_(0, torch.cat([source, torch.tensor([4, 5])]), new_p)
    torch.testing.assert_close(grouped, old_p, atol=1e-5, rtol=1e-4)
    # new codes 0 (3 uses + 1) and 1 (1 use + 1) share old code 2: 4 to 2
    torch.testing.assert_close(new_p[0] / new_p[1], torch.full_like(new_p[0], 2.0), rtol=1e-4, atol=0)
