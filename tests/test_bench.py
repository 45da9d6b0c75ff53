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
                "export, all rows", "catalog --help", "sql count(*) FROM anomalies"):
        assert row in text
    assert "Machine:" in text
