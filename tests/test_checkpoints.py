"""Model directories and components: round trips, quantised storage, strict loading errors."""

import pytest
import torch

from tests.tiny import tiny_tortoise_modules
from tts.checkpoints import load_component, load_model_dir, read_component, save_component
from tts.errors import TTSError


@pytest.mark.parametrize("int8, tolerance", [(False, 0.0), (True, 0.02)])
def test_component_round_trip(tmp_path, int8, tolerance):
    gpt = tiny_tortoise_modules()["gpt"]
    path = tmp_path / "gpt.safetensors"
    save_component(path, "gpt", gpt, int8=int8)
    loaded = load_component(path, "gpt")
    assert loaded.config == gpt.config
    for key, value in gpt.state_dict().items():
        error = (loaded.state_dict()[key] - value).norm() / value.norm().clamp_min(1e-12)
        assert error <= tolerance, key
    if int8:
        assert path.stat().st_size < 0.4 * sum(v.numel() * 4 for v in gpt.state_dict().values())


def test_component_of_wrong_kind(tmp_path):
    save_component(tmp_path / "g.safetensors", "gpt", tiny_tortoise_modules()["gpt"])
    with pytest.raises(TTSError, match="holds a gpt model, expected diffusion"):
        load_component(tmp_path / "g.safetensors", "diffusion")


def test_corrupt_component(tmp_path):
    (tmp_path / "x.safetensors").write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{}garbage")
    with pytest.raises(TTSError, match="cannot read"):
        read_component(tmp_path / "x.safetensors")


def test_our_layout_loads_identically(tiny_tortoise_dir, tiny_model_dir):
    a, b = load_model_dir(tiny_tortoise_dir), load_model_dir(tiny_model_dir)
    for role in ("gpt", "diffusion", "clvp", "latent_decoder"):
        sa, sb = getattr(a, role).state_dict(), getattr(b, role).state_dict()
        assert all(torch.allclose(sa[k], sb[k], atol=1e-6) for k in sa), role  # weight norm folds with rounding
    assert torch.equal(a.mel_norms, b.mel_norms)
    assert a.model_id != b.model_id


def test_model_card_missing_component(tiny_model_dir, tmp_path):
    import json
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    card = json.loads((model / "model.json").read_text())
    del card["components"]["diffusion"]
    (model / "model.json").write_text(json.dumps(card))
    with pytest.raises(TTSError, match="names no diffusion component"):
        load_model_dir(model)


@pytest.mark.parametrize("where", ["parent", "absolute", "nested_parent"])
def test_model_card_names_only_files_inside_its_directory(where, tiny_model_dir, tmp_path):
    import json
    import shutil

    model = shutil.copytree(tiny_model_dir, tmp_path / "m")
    outside = tmp_path / "outside"
    outside.mkdir()
    shutil.move(model / "gpt.safetensors", outside / "gpt.safetensors")  # a loadable file, but not the model's
    card = json.loads((model / "model.json").read_text())
    card["components"]["gpt"] = {"parent": "../outside/gpt.safetensors", "absolute": str(outside / "gpt.safetensors"),
                                 "nested_parent": "sub/../../outside/gpt.safetensors"}[where]
    (model / "model.json").write_text(json.dumps(card))
    with pytest.raises(TTSError, match="outside the model directory"):
        load_model_dir(model)


def test_pickled_code_in_mel_norms_is_refused_by_name(tiny_tortoise_dir, tmp_path):
    import pickle
    import shutil
    from pathlib import Path

    class Evil:
        def __reduce__(self):
            return (Path.touch, (tmp_path / "pwned",))

    model = shutil.copytree(tiny_tortoise_dir, tmp_path / "m")
    with open(model / "mel_norms.pth", "wb") as f:
        pickle.dump(Evil(), f)
    with pytest.raises(TTSError) as caught:
        load_model_dir(model)
    message = str(caught.value)
    assert "mel_norms.pth" in message and "contains code" in message and "weights_only" not in message
    assert "\n" not in message and not (tmp_path / "pwned").exists()
