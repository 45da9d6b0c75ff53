"""The benchmark still runs (at a tiny size); its timings are never asserted."""

import subprocess
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench" / "bench.py"


@pytest.mark.slow
def test_benchmark_runs_at_a_tiny_size(tmp_path):
    out = tmp_path / "RESULTS.md"
    result = subprocess.run([sys.executable, str(BENCH), "--sizes", "200", "--reps", "1",
                             "--work", str(tmp_path / "work"), "--out", str(out)],
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    text = out.read_text()
    for row in ("index, new database", "re-index, nothing changed", "re-index, 1% changed",
                "export, all rows", "export, all rows (vs bare sqlite3)", "catalog --help",
                "sql count(*) FROM anomalies"):
        assert row in text
    assert "Machine:" in text
    assert "| bare export |" in text and "<= 0.5 s (" in text


def test_make_bench_runs_the_10k_and_120k_sizes():
    result = subprocess.run([sys.executable, str(BENCH), "--help"], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr
    makefile = (BENCH.parent.parent / "Makefile").read_text()
    assert "$(BIN)/python bench/bench.py\n" in makefile  # the defaults
    import importlib.util

    spec = importlib.util.spec_from_file_location("bench", BENCH)
    assert spec is not None and spec.loader is not None
    bench = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(bench)
    parser_defaults = {a.dest: a.default for a in bench.build_parser()._actions}
    assert parser_defaults["sizes"] == "10000,120000"
