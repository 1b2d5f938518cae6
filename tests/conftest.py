import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # one thread unless asked: OMP_NUM_THREADS=2 bin/test
# Vocoders in float32 on every CPU, in this process and the workers it starts: "auto" would pick bf16
# on CPUs that have it natively, and the tests must not depend on which CPU runs them
# (tests/test_precision.py checks the choice itself).
os.environ["TTS_VOCODER_PRECISION"] = "fp32"

import pytest  # noqa: E402
import torch  # noqa: E402

torch.set_num_threads(int(os.environ["OMP_NUM_THREADS"]))


def pytest_collection_modifyitems(config, items):
    if torch.cuda.is_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA GPU")
    for item in items:
        if "cuda" in item.keywords:
            item.add_marker(skip)


@pytest.fixture(autouse=True)
def isolated_dirs(tmp_path_factory, monkeypatch):
    """Keep every test away from the real user voice, data and cache directories."""
    home = tmp_path_factory.mktemp("home")
    monkeypatch.setenv("TTS_VOICES_DIR", str(home / "voices"))
    monkeypatch.setenv("TTS_CACHE_DIR", str(home / "cache"))
    monkeypatch.setenv("TTS_DATA_DIR", str(home / "data"))


@pytest.fixture(scope="session")
def tiny_tortoise_dir(tmp_path_factory):
    from tests.tiny import make_tiny_tortoise_dir

    return make_tiny_tortoise_dir(tmp_path_factory.mktemp("models") / "tortoise")


@pytest.fixture(scope="session")
def tiny_model_dir(tmp_path_factory):
    from tests.tiny import make_tiny_model_dir

    return make_tiny_model_dir(tmp_path_factory.mktemp("models") / "ours")
