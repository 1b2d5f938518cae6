"""`tts serve` as a process: it starts on a free port, answers, and on SIGTERM finishes the request in flight and
exits with status 0; setup errors are one line."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import threading
from pathlib import Path

import httpx
import numpy as np
import pytest
from click.testing import CliRunner

from cli import main
from tests.tiny import make_voice

ROOT = Path(__file__).resolve().parent.parent
WAIT_S = 120.0
RATE = 24000
CHUNK_SAMPLES = 40 * 4 * RATE // 22050 * 256  # random weights never stop: --max-tokens codes per chunk


class ServerProcess:
    def __init__(self, args: list[str], env: dict[str, str]):
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "cli.py"), "serve", *args], env=env, cwd=ROOT,
                                     stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                     text=True)
        self.lines: list[str] = []
        self.listening = threading.Event()
        self.port: int | None = None
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()

    def _read(self) -> None:
        for line in self.proc.stderr:
            self.lines.append(line)
            found = re.search(r"Uvicorn running on http://127\.0\.0\.1:(\d+)", line)
            if found:
                self.port = int(found.group(1))
                self.listening.set()
        self.listening.set()  # the process ended

    def url(self) -> str:
        assert self.listening.wait(WAIT_S) and self.port is not None, "".join(self.lines)
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(WAIT_S)


@pytest.fixture
def start_server(tiny_tortoise_dir, tmp_path):
    make_voice(tmp_path / "voices", "alice")
    started = []

    def start(*extra: str) -> ServerProcess:
        env = {**os.environ, "OMP_NUM_THREADS": "1", "TTS_CACHE_DIR": str(tmp_path / "cache"),
               "PYTHONPATH": str(ROOT)}
        server = ServerProcess(["--port", "0", "--model-dir", str(tiny_tortoise_dir), "--voices-dir",
                                str(tmp_path / "voices"), "--preset", "ultra_fast", "--candidates", "1",
                                "--diffusion-steps", "2", "--max-tokens", "40", *extra], env)
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


def test_sigterm_finishes_the_request_in_flight_and_exits(start_server):
    server = start_server("--max-batch", "1")
    url = server.url()
    assert httpx.get(url + "/health", timeout=30).json()["ready"]
    text = "\n\n".join(f"Paragraph number {i}." for i in range(6))
    body = {"model": "tts-1", "input": text, "voice": "alice", "response_format": "pcm"}
    with httpx.stream("POST", url + "/v1/audio/speech", json=body, timeout=WAIT_S) as response:
        assert response.status_code == 200
        parts = response.iter_bytes()
        received = next(parts)
        server.proc.send_signal(signal.SIGTERM)
        received += b"".join(parts)
    # every paragraph was spoken: the five pauses between them, and speech after the last. Random weights
    # almost never sample the stop code (then each chunk is CHUNK_SAMPLES long), but the server has no seed
    pause = int(0.6 * RATE)
    assert 2 * (6 + 5 * pause) <= len(received) <= 2 * (6 * CHUNK_SAMPLES + 5 * pause) and len(received) % 2 == 0
    assert np.abs(np.frombuffer(received, dtype=np.int16)[-256:]).max() > 0
    assert server.proc.wait(WAIT_S) == 0, "".join(server.lines)
    assert "Traceback" not in "".join(server.lines)


def test_api_key_from_the_environment(start_server, monkeypatch):
    monkeypatch.setenv("TTS_API_KEY", "from-env")
    server = start_server()
    url = server.url()
    assert httpx.get(url + "/v1/models", timeout=30).status_code == 401
    assert httpx.get(url + "/v1/models", headers={"Authorization": "Bearer from-env"}, timeout=30).status_code == 200


@pytest.mark.parametrize("args, fragment", [
    (["--model-dir", "/nonexistent/model"], "/nonexistent/model"),
    (["--device", "tpu"], "unknown device"),
])
def test_setup_errors_are_one_line(args, fragment, tmp_path):
    result = CliRunner().invoke(main, ["serve", *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error:") and fragment in lines[0], result.output


def test_a_port_in_use_is_one_line_before_the_model_loads(tmp_path):
    import socket

    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = CliRunner().invoke(main, ["serve", "--port", str(port), "--model-dir", str(tmp_path / "none")])
    assert result.exit_code == 1
    assert result.output.strip() == f"error: cannot listen on 127.0.0.1:{port}: Address already in use"
