"""Our diffusion decoder and DDPM sampler against the Tortoise reference (tools/parity/gen_diffusion.py).

Model calls compare in float32; the sampling runs in float64 (model, inputs and noise), as the
reference made them.
"""


import pytest
import torch

from tests.tortoise_keys import reference_shapes
from tools.parity.fixture import load_fixture, relative_error
from tools.parity.seeded import parameter_shapes, seeded_state_dict
from tts.audio import denormalize_mel
from tts.models.diffusion import DiffusionConfig, DiffusionDecoder, infer_tortoise_config
from tts.sampling.diffusion import NoiseSchedule, space_timesteps
from tts.sampling.generate import generate_mel

TOLERANCE = 1e-5


def tortoise_shapes() -> dict[str, tuple[int, ...]]:
    return reference_shapes("diffusion_decoder")


def test_tortoise_config_has_reference_keys_and_shapes():
    with torch.device("meta"):
        model = DiffusionDecoder(DiffusionConfig.tortoise())
    ours = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    assert ours == tortoise_shapes()


def test_infer_tortoise_config_from_checkpoint_shapes():
    assert infer_tortoise_config(tortoise_shapes()) == DiffusionConfig.tortoise()


@pytest.fixture(scope="module")
def model_ref():
    return load_fixture("diffusion_model")


@pytest.fixture(scope="module")
def model(model_ref):
    _, meta = model_ref
    config = DiffusionConfig(**meta["config"])
    model = DiffusionDecoder(config).eval()
    reference_shapes = {k: tuple(v) for k, v in meta["reference_shapes"].items()}
    assert parameter_shapes(model) == reference_shapes
    assert infer_tortoise_config(reference_shapes) == config
    model.load_state_dict(seeded_state_dict(reference_shapes), strict=True)
    return model


def test_conditioning_latent(model, model_ref):
    ref, _ = model_ref
    with torch.no_grad():
        ours = model.get_conditioning(ref["cond_mels"])
    assert relative_error(ours, ref["conditioning"]) <= TOLERANCE


def test_aligned_embeddings_from_latents_and_codes(model, model_ref):
    ref, meta = model_ref
    with torch.no_grad():
        from_latents = model.timestep_independent(ref["latents"], ref["conditioning"], meta["frames"])
        from_codes = model.timestep_independent(ref["codes"], ref["conditioning"], meta["code_frames"])
    assert relative_error(from_latents, ref["aligned"]) <= TOLERANCE
    assert relative_error(from_codes, ref["aligned_codes"]) <= TOLERANCE


def test_forward_with_precomputed_and_conditioning_free(model, model_ref):
    ref, _ = model_ref
    with torch.no_grad():
        out = model(ref["x"], ref["timesteps"], precomputed=ref["aligned"])
        out_free = model(ref["x"], ref["timesteps"], precomputed=ref["aligned"], conditioning_free=True)
    assert relative_error(out, ref["out"]) <= TOLERANCE
    assert relative_error(out_free, ref["out_free"]) <= TOLERANCE


def test_training_form_forward(model, model_ref):
    ref, _ = model_ref
    with torch.no_grad():
        out, mel_pred = model(
            ref["x"],
            ref["timesteps"],
            aligned_conditioning=ref["latents"],
            conditioning_latent=ref["conditioning"],
            return_code_pred=True,
        )
    assert relative_error(out, ref["out_train"]) <= TOLERANCE
    assert relative_error(mel_pred, ref["mel_pred"]) <= TOLERANCE


@pytest.fixture(scope="module")
def sampling_ref():
    return load_fixture("diffusion_sampling")


def test_respacing_matches_reference(sampling_ref):
    _, meta = sampling_ref
    for count, timesteps in meta["spacing"].items():
        assert space_timesteps(4000, int(count)) == timesteps


def test_schedule_tables_match_reference(sampling_ref):
    ref, meta = sampling_ref
    steps = next(run["steps"] for run in meta["runs"] if run["name"] == "cfg")
    schedule = NoiseSchedule.respaced(steps)
    assert schedule.timesteps.tolist() == ref["schedule_timesteps"].tolist()
    ours = {
        "alphas_cumprod": schedule.alphas_cumprod,
        "alphas_cumprod_prev": schedule.alphas_cumprod_prev,
        "sqrt_recip_alphas_cumprod": schedule.sqrt_recip_alphas_cumprod,
        "sqrt_recipm1_alphas_cumprod": schedule.sqrt_recipm1_alphas_cumprod,
        "posterior_mean_coef1": schedule.posterior_mean_coef1,
        "posterior_mean_coef2": schedule.posterior_mean_coef2,
        "posterior_log_variance_clipped": schedule.posterior_log_variance,
        "log_betas": schedule.log_betas,
    }
    for name, table in ours.items():
        assert relative_error(table, ref[f"schedule_{name}"]) <= 1e-6, name


@pytest.fixture(scope="module")
def model64(model_ref):
    _, meta = model_ref
    model = DiffusionDecoder(DiffusionConfig(**meta["config"])).eval()
    model.load_state_dict(seeded_state_dict({k: tuple(v) for k, v in meta["reference_shapes"].items()}))
    return model.double()


@pytest.mark.parametrize("run_name", ["cfg", "plain"])
def test_ddpm_sampling_matches_reference_in_float64(model64, sampling_ref, run_name):
    ref, meta = sampling_ref
    run = next(r for r in meta["runs"] if r["name"] == run_name)
    assert run["dtype"] == "float64"
    generator = torch.Generator().manual_seed(run["seed"])  # the reference seeds the global generator
    mel = generate_mel(
        model64,
        ref["latents"].double(),
        ref["conditioning"].double(),
        steps=run["steps"],
        cond_free=run["cond_free"],
        cond_free_k=run["cond_free_k"],
        temperature=run["temperature"],
        sampler="ddpm",
        generator=generator,
    )
    assert mel.dtype == torch.float64
    assert relative_error(mel, ref[f"{run_name}_mel"]) <= TOLERANCE
    assert relative_error(denormalize_mel(mel), ref[f"{run_name}_log_mel"]) <= TOLERANCE
