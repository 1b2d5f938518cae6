"""The package's shape, read from its source (every import, lazy ones inside functions included)."""

import pytest

from tools.imports import cycles, import_graph

GRAPH = import_graph("tts")


def reachable(start: str) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        module = todo.pop()
        if module not in seen:
            seen.add(module)
            todo += GRAPH[module]
    return seen


@pytest.mark.parametrize("package", ["tts", "tts.sampling", "tts.narrate"])
def test_no_import_cycles(package):
    assert cycles(GRAPH, package) == []


def test_eager_sampling_never_imports_the_graph_runners():
    graph_side = {"tts.sampling.ar_graph", "tts.sampling.diffusion_graph", "tts.sampling.generate"}
    for eager in ("tts.sampling.ar", "tts.sampling.diffusion"):
        assert not reachable(eager) & graph_side, eager
    assert "tts.sampling.ar" in GRAPH["tts.sampling.ar_graph"]
    assert "tts.sampling.diffusion" in GRAPH["tts.sampling.diffusion_graph"]


def test_only_the_generate_module_picks_graph_or_eager():
    users = {m for m, imports in GRAPH.items() if imports & {"tts.sampling.ar_graph", "tts.sampling.diffusion_graph"}}
    assert users == {"tts.sampling.generate"}


@pytest.mark.parametrize("entry", ["tts.pipeline", "tts.narrate", "tts.streaming", "tts.voices", "tts.adapters",
                                   "tts.serve.engine"])
def test_inference_never_imports_training_code(entry):
    assert not {m for m in reachable(entry) if m.startswith(("tts.train", "tts.data", "tts.finetune"))}


def test_fine_tuning_does_not_import_the_trainers():
    assert not {m for m in reachable("tts.finetune.run") if m.startswith(("tts.train", "tts.data"))}


def test_narration_does_not_import_the_evaluation():
    assert "tts.evaluate" not in reachable("tts.narrate")
