"""The flow decoder and the speaker-conditioned DVAE, with tiny random models."""

import torch
import torch.nn.functional as F

from tts.checkpoints import load_component, save_component
from tts.models.dvae import DVAE, DVAEConfig
from tts.models.flow import FlowConfig, FlowDecoder


def tiny_flow() -> FlowDecoder:
    torch.manual_seed(0)
    return FlowDecoder(FlowConfig(mel_channels=16, channels=32, layers=2, num_codes=64, code_dim=8,
                                  speaker_dim=8, speaker_channels=8, time_dim=16))


def tiny_dvae(speaker_dim: int = 8) -> DVAE:
    torch.manual_seed(0)
    return DVAE(DVAEConfig(mel_channels=16, channels=32, num_tokens=64, codebook_dim=16, resblocks=1,
                           speaker_dim=speaker_dim, speaker_channels=8))


def test_flow_shapes_and_generation():
    flow = tiny_flow().eval()
    coarse, codes, ref = torch.rand(2, 16, 24) * 2 - 1, torch.randint(0, 64, (2, 6)), torch.randn(2, 16, 30)
    v = flow(coarse, torch.rand(2), coarse, codes, flow.speaker(ref))
    assert v.shape == (2, 16, 24)
    assert torch.count_nonzero(v) == 0  # the output layer starts at zero: the flow starts as the prior
    out = flow.generate(coarse, codes, ref, steps=3, generator=torch.Generator().manual_seed(1))
    assert out.shape == (2, 16, 24) and out.abs().max() <= 1.0
    again = flow.generate(coarse, codes, ref, steps=3, generator=torch.Generator().manual_seed(1))
    assert torch.equal(out, again)


def test_flow_learns_to_move_the_prior_to_the_target():
    flow = tiny_flow().train()
    target = torch.sin(torch.arange(24.0) / 3)[None, None].expand(2, 16, 24) * 0.5
    coarse = target + 0.3  # a biased guess the flow has to correct
    codes, ref = torch.randint(0, 64, (2, 6)), torch.randn(2, 16, 30)
    opt = torch.optim.Adam(flow.parameters(), lr=3e-3)
    for _ in range(200):
        t = torch.rand(2)
        x0 = flow.prior(coarse)
        x_t = (1 - t[:, None, None]) * x0 + t[:, None, None] * target
        loss = F.mse_loss(flow(x_t, t, coarse, codes, flow.speaker(ref)), target - x0)
        opt.zero_grad()
        loss.backward()
        opt.step()
    out = flow.eval().generate(coarse, codes, ref, steps=4, generator=torch.Generator().manual_seed(0))
    assert F.mse_loss(out, target) < 0.5 * F.mse_loss(coarse, target)  # 0.31 when measured


def test_flow_component_round_trip(tmp_path):
    flow = tiny_flow().eval()
    save_component(tmp_path / "flow.safetensors", "flow", flow)
    again = load_component(tmp_path / "flow.safetensors", "flow")
    assert again.config == flow.config
    for key, value in flow.state_dict().items():
        assert torch.equal(value, again.state_dict()[key])


def test_speaker_conditioned_dvae_decoder_hears_the_speaker():
    model = tiny_dvae().eval()
    mel, ref_a, ref_b = torch.randn(1, 16, 32), torch.randn(1, 16, 20), torch.randn(1, 16, 20) * 3
    codes = model.encode(mel)
    a, b = model.decode(codes, model.speaker(ref_a)), model.decode(codes, model.speaker(ref_b))
    assert a.shape == (1, 16, 32) and not torch.allclose(a, b)
    recon, _, codes_fwd = model(mel, ref_a)
    assert torch.equal(codes_fwd, codes) and torch.allclose(recon, a, atol=1e-6)


def test_unconditioned_dvae_keeps_its_layout():
    model = tiny_dvae(speaker_dim=0)
    assert not model.conditioned and not any(k.startswith("speaker") for k in model.state_dict())
