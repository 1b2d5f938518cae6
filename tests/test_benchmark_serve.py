"""benchmarks/serve.py end to end on the tiny random model: both modes, every concurrency, a table."""

from benchmarks import serve


def test_serve_benchmark_runs_both_modes(tmp_path, capsys):
    out = tmp_path / "serve.json"
    report = serve.main(["--random", "tiny", "--requests", "4", "--concurrency", "1,2", "--candidates", "1", "--diffusion-steps", "2",
                         "--max-tokens", "8", "--json", str(out)])
    assert report["model"].startswith("tiny random model") and out.is_file()
    for mode in ("off", "on"):
        assert [r["concurrency"] for r in report["results"][mode]] == [1, 2]
        assert all(r["requests_per_s"] > 0 and 0 < r["p50_s"] <= r["p95_s"] for r in report["results"][mode])
    assert all(r["requests_per_batch"] == 1.0 for r in report["results"]["off"])
    printed = capsys.readouterr().out
    assert "| 2 | on |" in printed and "tiny random model" in printed
