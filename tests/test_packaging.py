"""What setup.cfg and constraints.txt promise about the dependencies."""

import configparser
from pathlib import Path

from packaging.requirements import Requirement

ROOT = Path(__file__).resolve().parent.parent


def install_requires() -> dict[str, Requirement]:
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    lines = [line.strip() for line in config["options"]["install_requires"].splitlines()]
    return {r.name: r for r in map(Requirement, filter(None, lines))}  # pip accepts no inline comments either


def test_torch_floor_excludes_weights_only_bypasses():
    """torch.load(weights_only=True) can be made to run code before torch 2.6 (CVE-2025-32434)."""
    torch = install_requires()["torch"]
    for unsafe in ("2.4.1", "2.5.1"):
        assert not torch.specifier.contains(unsafe), torch
    assert torch.specifier.contains("2.6.0") and torch.specifier.contains("2.13.0")


def test_constraints_pin_the_cpu_torch_the_suite_runs_on():
    pins = [line.strip() for line in (ROOT / "constraints.txt").read_text().splitlines() if line.strip()]
    assert "torch==2.13.0" in pins
