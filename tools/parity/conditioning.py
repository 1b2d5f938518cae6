"""How far float32 rounding moves each parity check: our model in float32 against the same in float64.

    python -m tools.parity.conditioning

A parity check against a float32 fixture holds on every x86-64 CPU only if the computation is
well-conditioned: other CPUs (AVX2 or AVX-512 kernels, other thread counts, other BLAS blockings)
round float32 differently, and the result may move by about as much as float32 rounding moves it
here. This prints, for each float32 check, ||ours_fp32 - ours_fp64|| / ||ours_fp64|| on the
fixture's inputs: it must stay far below the tests' tolerance. (Layers that compute in float32 on
purpose, such as GroupNorm32, stay float32 in the float64 run too.) Checks whose fixture is float64
are left out: they compare in float64.
"""

from __future__ import annotations

import torch

from tests.tortoise_keys import reference_shapes
from tools.parity.fixture import load_fixture, relative_error
from tools.parity.seeded import parameter_shapes, seeded_state_dict


def _both(model: torch.nn.Module, fn) -> float:
    """fn(model, dtype) in float32 and in float64 (model cast in place) -> their relative distance."""
    with torch.no_grad():
        low = fn(model.float(), torch.float32)
        high = fn(model.double(), torch.float64)
    model.float()
    return relative_error(low, high)


def gpt() -> dict[str, float]:
    from tts.models.gpt import GPTConfig, SpeechGPT

    ref, meta = load_fixture("gpt")
    model = SpeechGPT(GPTConfig(layers=meta["layers"], conditioning_blocks=meta["conditioning_blocks"])).eval()
    model.load_state_dict(seeded_state_dict(parameter_shapes(model)), strict=True)

    def logits(m, dtype):
        cond = ref["cond_latent"].to(dtype).repeat(2, 1)
        _, mel = m(cond, ref["text"].repeat(2, 1), ref["codes"], ref["code_lengths"])
        return mel[:, :, ref["logit_positions"]]

    def latents(m, dtype):
        return m(ref["cond_latent"].to(dtype).repeat(2, 1), ref["text"].repeat(2, 1), ref["codes"],
                 return_latent=True)

    return {
        "gpt conditioning latent": _both(model, lambda m, d: m.get_conditioning(ref["cond_mels"].to(d))),
        "gpt teacher-forced logits": _both(model, logits),
        "gpt latents": _both(model, latents),
    }


def clvp() -> dict[str, float]:
    from tts.models.clvp import CLVP, infer_tortoise_config, masked_mean, tortoise_state_dict

    tensors, meta = load_fixture("clvp")
    state = seeded_state_dict({k: tuple(v) for k, v in meta["parameter_shapes"].items()})
    state.update({k.removeprefix("state."): v for k, v in tensors.items() if k.startswith("state.")})
    model = CLVP(infer_tortoise_config(state)).eval()
    model.load_state_dict(tortoise_state_dict(state), strict=True)
    text, codes = tensors["text_tokens"], tensors["speech_codes"]
    return {
        "clvp pooled text": _both(model, lambda m, d: masked_mean(m.text_transformer(m.text_emb(text)), None)),
        "clvp pooled speech": _both(model, lambda m, d: masked_mean(m.speech_transformer(m.speech_emb(codes)), None)),
        "clvp text latents": _both(model, lambda m, d: m.text_latents(text)),
        "clvp speech latents": _both(model, lambda m, d: m.speech_latents(codes)),
        "clvp scores": _both(model, lambda m, d: m(text, codes)),
        "clvp loss": _both(model, lambda m, d: m(text, codes, return_loss=True)),
    }


def diffusion() -> dict[str, float]:
    from tts.models.diffusion import DiffusionConfig, DiffusionDecoder

    ref, meta = load_fixture("diffusion_model")
    model = DiffusionDecoder(DiffusionConfig(**meta["config"])).eval()
    model.load_state_dict(seeded_state_dict({k: tuple(v) for k, v in meta["reference_shapes"].items()}))

    def aligned(m, dtype, source="latents", frames=meta["frames"]):
        conditioning = ref["conditioning"].to(dtype)
        inputs = ref["latents"].to(dtype) if source == "latents" else ref["codes"]
        return m.timestep_independent(inputs, conditioning, frames)

    def out(m, dtype, **kwargs):
        return m(ref["x"].to(dtype), ref["timesteps"], precomputed=aligned(m, dtype), **kwargs)

    def training_form(m, dtype, part):
        return m(ref["x"].to(dtype), ref["timesteps"], aligned_conditioning=ref["latents"].to(dtype),
                 conditioning_latent=ref["conditioning"].to(dtype), return_code_pred=True)[part]

    return {
        "diffusion conditioning latent": _both(model, lambda m, d: m.get_conditioning(ref["cond_mels"].to(d))),
        "diffusion aligned embeddings (latents)": _both(model, aligned),
        "diffusion aligned embeddings (codes)": _both(
            model, lambda m, d: aligned(m, d, "codes", meta["code_frames"])),
        "diffusion model call": _both(model, out),
        "diffusion model call, conditioning-free": _both(model, lambda m, d: out(m, d, conditioning_free=True)),
        "diffusion training form": _both(model, lambda m, d: training_form(m, d, 0)),
        "diffusion training form, mel prediction": _both(model, lambda m, d: training_form(m, d, 1)),
    }


def sampled_codes_under_perturbation(runs: int = 3, size: float = 1e-6) -> int:
    """How many of `runs` GPTs, each with every weight moved by a relative N(0, size) perturbation
    (far more than float32 rounding), still sample the reference's codes for the fixture's seed."""
    from tts.models.gpt import GPTConfig, SpeechGPT
    from tts.sampling.generate import sample_codes
    from tts.sampling.logits import SamplingParams

    ref, meta = load_fixture("gpt")
    model = SpeechGPT(GPTConfig(layers=meta["layers"], conditioning_blocks=meta["conditioning_blocks"])).eval()
    weights = seeded_state_dict(parameter_shapes(model))
    params = SamplingParams(temperature=meta["temperature"], top_k=meta["top_k"], top_p=meta["top_p"],
                            repetition_penalty=meta["repetition_penalty"])
    same = 0
    for run in range(runs):
        noise = torch.Generator().manual_seed(run)
        model.load_state_dict({k: v * (1 + size * torch.randn(v.shape, generator=noise)) for k, v in weights.items()})
        with torch.no_grad():
            codes = sample_codes(model, ref["cond_latent"], ref["text"], num_samples=meta["num_samples"],
                                 batch_size=meta["num_samples"], max_tokens=meta["max_tokens"], params=params,
                                 generator=torch.Generator().manual_seed(meta["seed"]), cache="static")
        same += int(torch.equal(codes, ref["sampled"]))
    return same


def frontend() -> dict[str, float]:
    from tts import audio

    ref, _ = load_fixture("frontend")
    checks = {
        "AR mel front-end": lambda d: audio.normalize_by_norms(
            audio.mel_spectrogram(ref["wav22"].to(d), audio.TORTOISE_AR_MEL), ref["mel_norms"]),
        "UnivNet mel front-end": lambda d: audio.mel_spectrogram(ref["wav24"].to(d), audio.UNIVNET_MEL),
    }
    return {name: relative_error(fn(torch.float32), fn(torch.float64)) for name, fn in checks.items()}


def univnet() -> dict[str, float]:
    from tools.parity.seeded import UNIVNET_SCALES
    from tts.models.univnet import UnivNet, UnivNetConfig, tortoise_state_dict

    ref, _ = load_fixture("univnet")
    weights = seeded_state_dict(reference_shapes("vocoder_univnet_before_remove_weight_norm"), scales=UNIVNET_SCALES)
    model = UnivNet(UnivNetConfig.tortoise()).eval()
    model.load_state_dict(tortoise_state_dict(weights), strict=True)
    return {"univnet": _both(model, lambda m, d: m.vocode(ref["mel"].to(d), noise=ref["z"].to(d)))}


CHECKS = (frontend, gpt, clvp, diffusion, univnet)


def measure() -> dict[str, float]:
    results = {}
    for check in CHECKS:
        results.update(check())
    return results


if __name__ == "__main__":
    torch.set_num_threads(1)
    for name, error in measure().items():
        print(f"{name:<45} float32 vs float64: {error:.1e}")
    runs = 3
    print(f"{'gpt sampled codes':<45} the reference's codes in {sampled_codes_under_perturbation(runs)} of {runs} "
          "runs with weights perturbed by 1e-6")
