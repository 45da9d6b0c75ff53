"""`catalog export` and `export-anomalies`, read back the way the trainer reads them."""

import csv
import io
import json
import os
from pathlib import Path

import pytest

from catalog.export import ANOMALY_COLUMNS, EXPORT_COLUMNS

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL


def trainer_read(path_or_text):
    """What the trainer does: DictReader, chosen_path, json.loads(neg_paths)."""
    text = Path(path_or_text).read_text(encoding="utf-8") if isinstance(path_or_text, Path) else path_or_text
    return list(csv.DictReader(io.StringIO(text, newline="")))


def expected_pairs(root, expected, anomalies_only=False):
    out = set()
    for name, p in expected.projects.items():
        base = root / "sandbox" / name
        for winner, losers, is_anomaly in p.decisions:
            if anomalies_only and not is_anomaly:
                continue
            out.add((str(base / winner), tuple(str(base / loser) for loser in losers)))
    return out


def test_rows_read_back_into_the_expected_winner_loser_sets(indexed, run, tmp_path):
    root, run.db, expected = indexed
    out = tmp_path / "selection_only_log.csv"
    result = run("export", out)
    assert result.exit_code == 0, result.output
    rows = trainer_read(out)
    assert list(rows[0].keys()) == EXPORT_COLUMNS
    got = {(r["chosen_path"], tuple(json.loads(r["neg_paths"]))) for r in rows}
    assert got == expected_pairs(root, expected)  # losers ordered by stage, then filename
    assert len(rows) == len(got)
    assert f"wrote {len(rows)} rows" in result.stdout
    for r in rows:
        assert r["session_id"] == f"{r['project']}_extraction"
        assert r["set_id"].startswith("group_")
        assert r["is_anomaly"] in ("0", "1")
        assert r["timestamp"].endswith("Z") and "T" in r["timestamp"]
        chosen = Path(r["chosen_path"]).name
        assert r["timestamp"].replace("-", "").replace(":", "").replace("T", "_")[:15] == chosen[:15]
        # the trainer refuses rows mixing projects
        assert all(f"/sandbox/{r['project']}/" in p for p in json.loads(r["neg_paths"]))
    set_ids = [(r["project"], r["set_id"]) for r in rows]
    assert len(set_ids) == len(set(set_ids))
    assert sum(int(r["is_anomaly"]) for r in rows) == expected.anomalies


def test_anomalies_only_project_filter_and_jsonl(indexed, run, tmp_path):
    root, run.db, expected = indexed
    result = run("export", "-", "--anomalies-only", "--format", "jsonl")
    assert result.exit_code == 0, result.output
    rows = [json.loads(line) for line in result.stdout.splitlines()]
    assert {(r["chosen_path"], tuple(r["neg_paths"])) for r in rows} == expected_pairs(root, expected, True)
    assert all(r["is_anomaly"] == 1 and r["chosen_stage"] < r["max_stage"] for r in rows)
    assert "wrote" in result.stderr  # the count goes to stderr when rows go to stdout
    result = run("export", "-", "--project", "aiko", "--project", "mojo-1")
    assert {r["project"] for r in trainer_read(result.stdout)} == {"aiko", "mojo-1"}


def test_relative_paths(indexed, run, tmp_path):
    root, run.db, expected = indexed
    result = run("export", "-", "--relative-to", root)
    rows = trainer_read(result.stdout)
    for r in rows:
        assert r["chosen_path"].startswith(f"sandbox/{r['project']}/")
        assert (root / r["chosen_path"]).is_file()
        assert all((root / p).is_file() for p in json.loads(r["neg_paths"]))


def test_existing_file_refused_without_force(indexed, run, tmp_path):
    _, run.db, _ = indexed
    out = tmp_path / "log.csv"
    out.write_text("precious\n")
    result = run("export", out)
    assert result.exit_code == 2 and "--force" in result.stderr
    assert out.read_text() == "precious\n"
    assert run("export", out, "--force").exit_code == 0
    assert out.read_text().startswith("session_id,")


HISTORIC = (
    'session_id,set_id,chosen_path,neg_paths,timestamp\r\n'
    'aiko_extraction,group_x,/Users/old/aiko/{name},"[""/Users/old/aiko/a.png""]",2025-07-01T00:00:00Z\r\n'
)


def test_merge_keeps_existing_bytes_and_is_idempotent(indexed, run, tmp_path):
    root, run.db, expected = indexed
    full = trainer_read(run("export", "-").stdout)
    known = Path(full[0]["chosen_path"]).name
    out = tmp_path / "selection_only_log.csv"
    original = HISTORIC.format(name=known).encode()
    out.write_bytes(original)
    result = run("export", out, "--merge")
    assert result.exit_code == 0, result.output
    assert f"wrote {len(full) - 1} rows" in result.stdout and "(1 already there)" in result.stdout
    merged = out.read_bytes()
    assert merged.startswith(original)
    rows = trainer_read(out)
    assert len(rows) == len(full)
    assert set(rows[0].keys()) == set(EXPORT_COLUMNS[:5])  # appended rows follow the log's own header
    again = run("export", out, "--merge")
    assert "wrote 0 rows" in again.stdout
    assert out.read_bytes() == merged


def test_merge_refuses_a_file_that_is_not_a_training_log(indexed, run, tmp_path):
    _, run.db, _ = indexed
    out = tmp_path / "other.csv"
    out.write_text("a,b,c\n1,2,3\n")
    result = run("export", out, "--merge")
    assert result.exit_code == 2 and "not a training log" in result.stderr
    assert out.read_text() == "a,b,c\n1,2,3\n"
    result = run("export", tmp_path / "missing.csv", "--merge")
    assert result.exit_code == 2 and "nothing to merge into" in result.stderr


def test_export_anomalies(indexed, run, tmp_path):
    root, run.db, expected = indexed
    out = tmp_path / "anomaly_cases.csv"
    assert run("export-anomalies", out).exit_code == 0
    rows = trainer_read(out)
    assert list(rows[0].keys()) == ANOMALY_COLUMNS
    assert {(r["chosen_path"], tuple(json.loads(r["rejected_paths"]))) for r in rows} == \
        expected_pairs(root, expected, True)
    assert all(float(r["chosen_stage"]) < float(r["max_rejected_stage"]) for r in rows)
    assert run("export-anomalies", out).exit_code == 2


def test_no_temporary_files_left_and_stale_ones_cleared(indexed, run, tmp_path):
    _, run.db, _ = indexed
    out = tmp_path / "log.csv"
    stale = tmp_path / ".log.csv.abc123.tmp"
    stale.write_text("left by a killed run")
    assert run("export", out).exit_code == 0
    # ("db" holds the SQLite copy of the catalogue)
    assert sorted(name for name in os.listdir(tmp_path) if name != "db") == ["log.csv"]
