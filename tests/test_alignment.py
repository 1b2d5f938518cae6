"""Guided attention for the GPT (tts.train.alignment)."""

import torch

from tts.models.gpt import GPTConfig, SpeechGPT
from tts.train.alignment import AlignmentConfig, AttentionTap, diagonality, guided_attention_loss


def one_hot_attention(m: int, n: int, diagonal: bool) -> torch.Tensor:
    rows = torch.arange(m)
    cols = (rows * n // m) if diagonal else (n - 1 - rows * n // m)
    a = torch.zeros(1, 1, m, n)
    a[0, 0, rows, cols] = 1
    return a


def test_the_guide_rewards_the_diagonal():
    m, n = torch.tensor([40]), torch.tensor([20])
    good, bad = one_hot_attention(40, 20, True), one_hot_attention(40, 20, False)
    assert guided_attention_loss(good, m, n, 0.2) < 0.02 < 0.5 < guided_attention_loss(bad, m, n, 0.2)
    assert diagonality(good, m, n) > 0.95 and diagonality(bad, m, n) < 0.3


def test_padding_is_ignored():
    a = one_hot_attention(40, 20, True)
    padded = torch.zeros(1, 1, 50, 25)
    padded[..., :40, :20] = a
    padded[..., 40:, :] = 1 / 25  # beyond the real speech: must not count
    assert torch.allclose(guided_attention_loss(padded, torch.tensor([40]), torch.tensor([20]), 0.2),
                          guided_attention_loss(a, torch.tensor([40]), torch.tensor([20]), 0.2))


def test_weight_schedule():
    c = AlignmentConfig(layers=(1,), weight=2.0, hold=10, end=20)
    assert [c.weight_at(s) for s in (0, 9, 15, 20, 30)] == [2.0, 2.0, 1.0, 0.0, 0.0]
    assert AlignmentConfig().weight_at(0) == 0.0  # no layers: off


def test_tap_recomputes_the_heads_attention_rows():
    torch.manual_seed(0)
    gpt = SpeechGPT(GPTConfig(layers=2, model_dim=32, heads=2, conditioning_blocks=1, number_text_tokens=20,
                              number_mel_codes=18, mel_channels=8)).eval()
    tap = AttentionTap(gpt.gpt, (1,), heads=1)
    text, codes = torch.randint(0, 19, (2, 5)), torch.randint(0, 16, (2, 7))
    gpt(gpt.get_conditioning(torch.randn(2, 1, 8, 12)), text, codes, torch.tensor([7, 4]))
    a = tap.speech_to_text(1, 2, 5, 8, 7, torch.tensor([5, 3]))
    assert a.shape == (2, 1, 7, 5)
    assert torch.allclose(a.sum(-1), torch.ones(2, 1, 7))
    assert torch.all(a[1, :, :, 3:] == 0)  # beyond the second row's text


def test_diagonality_of_several_rows_and_heads():
    a = one_hot_attention(40, 20, True).expand(3, 4, 40, 20)
    assert diagonality(a, torch.tensor([40] * 3), torch.tensor([20] * 3)) > 0.95
