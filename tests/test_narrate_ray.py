"""`tts narrate --ray` on a local Ray cluster of 2 CPUs that this module starts (one for all its tests):
two books across 2 workers match a single-process run, a worker killed mid-run is replaced, a
killed driver resumes; and the one-line errors of the Ray and multi-book flags (no cluster needed).
"""

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf

from tests.books import long_txt
from tests.test_cli import assert_one_line_error
from tests.test_narrate_cli import (FAST, ROOT, _done_count, _kill_when_done, _run_in_subprocess, assert_complete,
                                    file_stamps, manifest_rows, narrate, voices)  # noqa: F401 - voices: a fixture

# Ray turns token authentication on by itself when ~/.ray/auth_token exists (a head then wants the token
# from every driver) and reads the mode when it is imported: this module's cluster listens on 127.0.0.1
# only and runs without it, whatever the machine holds, as do the drivers here (they inherit this).
os.environ["RAY_AUTH_MODE"] = "disabled"
ray = pytest.importorskip("ray")  # the test extra installs it; skipped only where it was left out

SLOW = ["--text-batch", "1", "--diffusion-steps", "10", "--max-tokens", "32"]  # time to kill something mid-way


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture(scope="module")
def cluster():
    """The address of a Ray head with 2 CPUs, stopped (with every process it started) after the module."""
    port = _free_port()
    temp = tempfile.mkdtemp(prefix="ray", dir="/tmp")  # short: Ray's socket paths must fit 107 characters
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT), "RAY_USAGE_STATS_ENABLED": "0"}
    head = subprocess.Popen([sys.executable, "-m", "ray.scripts.scripts", "start", "--head", "--block",
                             f"--port={port}", "--node-ip-address=127.0.0.1", "--num-cpus=2", "--num-gpus=0",
                             "--include-dashboard=false",
                             f"--temp-dir={temp}"],
                            env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and head.poll() is None:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                time.sleep(0.2)
        assert head.poll() is None, "the Ray head did not start"
        yield address
    finally:
        head.terminate()  # `ray start --block` stops the processes it started, then itself
        try:
            head.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(head.pid, signal.SIGKILL)
            head.wait()
        _wait_gone(temp)
        shutil.rmtree(temp, ignore_errors=True)


def _wait_gone(temp: str, seconds: float = 20) -> None:
    """Until no process of this cluster (one naming its temp dir, or a worker of it) is left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline and _processes(temp):
        time.sleep(0.2)
    assert not _processes(temp), "the Ray cluster left processes behind"


def _processes(marker: str) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if marker.encode() in (entry / "cmdline").read_bytes():
                    found.append(int(entry.name))
            except OSError:
                pass
    return found


def _workers_making() -> list[int]:
    """Pids of Ray actors of ours busy with a batch (Ray titles the process after the method)."""
    return _processes("ray::NarrationWorker.make")


def _books(tmp_path: Path) -> list[Path]:
    return [long_txt(tmp_path / "lighthouse.txt", chapters=2, paragraphs=3),  # 8 chunks
            long_txt(tmp_path / "harbour.txt", chapters=1, paragraphs=4)]  # 5 chunks


def test_two_books_on_two_workers_match_a_single_process_run(cluster, tiny_model_dir, voices, tmp_path):
    books = _books(tmp_path)
    alone = narrate(tiny_model_dir, *books, "--books", "-o", tmp_path / "alone", "--format", "flac", *FAST)
    assert alone.exit_code == 0, alone.output
    spread = narrate(tiny_model_dir, *books, "--books", "-o", tmp_path / "ray", "--format", "flac", *FAST,
                     "--ray", cluster)
    assert spread.exit_code == 0, spread.output
    for book, chunks in zip(("lighthouse", "harbour"), (8, 5)):
        one, many = tmp_path / "alone" / book, tmp_path / "ray" / book
        rows = assert_complete(many, chunks)
        assert rows.keys() == manifest_rows(one).keys()
        assert sorted(p.name for p in (many / "chapters").iterdir()) == \
            sorted(p.name for p in (one / "chapters").iterdir())
        for row in rows.values():  # batched and seeded as in one process: the same audio
            assert np.array_equal(sf.read(many / row["audio"])[0], sf.read(one / row["audio"])[0])
        assert sf.info(many / "book.flac").frames == sf.info(one / "book.flac").frames
    assert f"{tmp_path / 'ray' / 'harbour'}: harbour" in spread.output


def test_a_worker_killed_mid_batch_is_replaced_and_the_run_completes(cluster, tiny_model_dir, voices, tmp_path,
                                                                    monkeypatch, caplog):
    import tts.narrate.runner

    writes: list[str] = []
    real_save = tts.narrate.runner.save_audio

    def counted(path, *args):
        writes.append(Path(path).name)
        return real_save(path, *args)

    monkeypatch.setattr(tts.narrate.runner, "save_audio", counted)
    book = long_txt(tmp_path / "book.txt", chapters=3, paragraphs=5)  # 18 chunks
    out = tmp_path / "out"
    killed: list[int] = []

    def kill_one_worker_mid_batch() -> None:
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline and not killed:
            busy = _workers_making()
            if busy and _done_count(out) >= 2:
                os.kill(busy[0], signal.SIGKILL)
                killed.append(busy[0])
            time.sleep(0.02)

    killer = threading.Thread(target=kill_one_worker_mid_batch)
    killer.start()
    result = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST, *SLOW, "--ray", cluster)
    killer.join()
    assert killed, "no worker was busy to be killed"
    assert result.exit_code == 0, result.output
    assert "lost a Ray worker with a batch of 1 chunks" in caplog.text
    rows = assert_complete(out, chunks=18)
    assert sorted(writes) == sorted(Path(r["audio"]).name for r in rows.values())  # each chunk written once


def test_a_killed_driver_resumes_without_redoing_finished_chunks(cluster, tiny_model_dir, voices, tmp_path):
    book = long_txt(tmp_path / "book.txt", chapters=3, paragraphs=5)  # 18 chunks
    out = tmp_path / "out"
    driver = _run_in_subprocess(tiny_model_dir, book, out, voices, [*SLOW, "--ray", cluster])
    done_before = _kill_when_done(driver, out, 3)
    assert 3 <= done_before < 18, "the run ended before it could be killed"
    kept = {Path(r["audio"]).name for r in manifest_rows(out).values() if r["status"] == "done"}
    stamps = {name: stamp for name, stamp in file_stamps(out).items() if name in kept}

    resumed = narrate(tiny_model_dir, book, "-o", out, "--format", "flac", *FAST, *SLOW, "--ray", cluster)
    assert resumed.exit_code == 0, resumed.output
    assert f"made {18 - done_before} chunks" in resumed.output
    rows = assert_complete(out, chunks=18)
    assert all(r["take"] == 0 for r in rows.values())
    assert {name: stamp for name, stamp in file_stamps(out).items() if name in kept} == stamps  # not made again
    assert (out / "book.flac").exists()


# -- bad input: one line, nothing made (no cluster is started) ------------------------------------

@pytest.mark.parametrize("flags, fragment", [
    (["--ray", "nowhere"], "--ray 'nowhere' is not a Ray cluster"),
    (["--ray", "local:0"], "at least 1 worker"),
    (["--ray-workers", "2"], "--ray-workers needs --ray"),
    (["--ray-cpus-per-worker", "2"], "--ray-cpus-per-worker needs --ray"),
    (["--ray", "local:1", "--device", "tpu"], "the workers take cpu, cuda or auto"),
    (["--books", "--regenerate", "1.1"], "--regenerate names the chunks of one book"),
])
def test_bad_ray_and_books_flags(flags, fragment, tiny_model_dir, voices, tmp_path):
    books = _books(tmp_path)
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, *books, "-o", out, *FAST, *flags)
    assert_one_line_error(result, fragment)
    assert not out.exists()


def test_books_sharing_a_name_are_refused(tiny_model_dir, voices, tmp_path):
    (tmp_path / "a").mkdir()
    first = long_txt(tmp_path / "book.txt", chapters=1, paragraphs=1)
    second = long_txt(tmp_path / "a" / "book.txt", chapters=1, paragraphs=1)
    out = tmp_path / "out"
    result = narrate(tiny_model_dir, first, second, "--books", "-o", out, *FAST)
    assert_one_line_error(result, "would both be narrated into", "rename one")
    assert not out.exists()


def test_an_unreachable_cluster_is_one_line(tiny_model_dir, voices, tmp_path):
    result = narrate(tiny_model_dir, _books(tmp_path)[0], "-o", tmp_path / "out", *FAST,
                     "--ray", f"127.0.0.1:{_free_port()}")
    assert_one_line_error(result, "cannot connect to the Ray cluster at 127.0.0.1:")
