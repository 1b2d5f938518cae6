"""tools.mel_ablation: the detail each ablation removes from a mel, and only that."""

import pytest
import torch

from tools.mel_ablation import ablate, dct_basis, parse_ablation


def test_the_cosine_basis_is_orthonormal():
    basis = dct_basis(80, 80)
    assert torch.allclose(basis @ basis.T, torch.eye(80), atol=1e-5)


def test_nothing_removed_is_the_mel_itself():
    mel = torch.randn(1, 80, 37)
    assert torch.allclose(ablate(mel, 1, 80), mel)


def test_keeping_the_envelope_removes_only_the_ripple_over_the_bins():
    basis = dct_basis(80, 80)
    envelope = basis[:20].T @ torch.randn(20, 37)  # (80, 37): in the kept coefficients
    ripple = basis[20:].T @ torch.randn(60, 37)  # outside them
    assert torch.allclose(ablate((envelope + ripple)[None], 1, 20)[0], envelope, atol=1e-4)


def test_blocks_keep_each_block_mean_and_the_length():
    mel = torch.randn(1, 80, 38)  # not a multiple of the block: the last block is padded by repetition
    out = ablate(mel, 4, 80)
    assert out.shape == mel.shape
    steady = torch.randn(1, 80, 1).expand(1, 80, 40)  # a mel that does not change keeps its value
    assert torch.allclose(ablate(steady, 4, 80), steady, atol=1e-6)


def test_bad_ablations_are_refused():
    assert parse_ablation("4:20") == (4, 20)
    assert parse_ablation("2") == (2, 80)
    for bad in ("0:80", "4:0", "4:81", "x:20"):
        with pytest.raises(SystemExit, match="ablation"):
            parse_ablation(bad)
