"""Rows out: tables capped with a count of the rest, values never cut or read
as markup, every script format streaming, one representation of times and
stages everywhere, and the views described by `catalog views`."""

from __future__ import annotations

import csv
import io
import json
import re
import subprocess
import sys

import pytest
from conftest import query
from proc import CATALOG

from catalog.output import write_rows

COLUMNS = ["path", "stage", "timestamp"]


def rows(n):
    for i in range(n):
        yield (f"tara/IMG_[v{i}].png", 2.0 if i % 2 else 1.5, "2025-07-25 22:21:42.000000")


def render(n, fmt, **kw):
    out = io.StringIO()
    count = write_rows(COLUMNS, rows(n), fmt, out=out, **kw)
    return count, out.getvalue()


def test_table_shows_the_first_rows_then_counts_the_rest():
    count, text = render(1500, "table")
    assert count == 1500
    assert text.count("IMG_[v") == 1000
    assert text.rstrip().splitlines()[-1] == "... 500 more rows; use --all, or -f csv or -f json for all"
    count, text = render(1500, "table", limit=None)
    assert text.count("IMG_[v") == 1500 and "more rows" not in text


def test_table_never_alters_or_truncates_a_value():
    long_name = "south-asian-late-30s/" + "x" * 150 + "_[final].png"
    out = io.StringIO()
    write_rows(["path"], [(long_name,)], "table", out=out)
    assert long_name in out.getvalue()  # not cut, no markup eaten, not folded when piped
    # on a narrow terminal it folds onto more lines instead of being cut
    out = io.StringIO()
    write_rows(["path"], [(long_name,)], "table", out=out, console_width=60)
    cells = "".join(line.strip("│ \n") for line in out.getvalue().splitlines()[3:-1])
    assert cells == long_name


def test_piped_table_is_as_wide_as_it_needs_not_padded():
    _, text = render(3, "table")
    widths = {len(line) for line in text.splitlines() if line.startswith(("┃", "│"))}
    assert widths == {len("│ tara/IMG_[v0].png │ 1.5   │ 2025-07-25T22:21:42Z │")}


def test_one_representation_of_times_and_stages():
    _, text = render(2, "csv")
    assert list(csv.reader(io.StringIO(text))) == [
        COLUMNS, ["tara/IMG_[v0].png", "1.5", "2025-07-25T22:21:42Z"], ["tara/IMG_[v1].png", "2", "2025-07-25T22:21:42Z"]]
    _, text = render(2, "json")
    assert json.loads(text)[1] == {"path": "tara/IMG_[v1].png", "stage": 2, "timestamp": "2025-07-25T22:21:42Z"}


@pytest.mark.parametrize("fmt, headers", [("csv", True), ("csv", False), ("tsv", True), ("tsv", False)])
def test_csv_and_tsv_with_and_without_headers(fmt, headers):
    _, text = render(3, fmt, headers=headers)
    lines = text.splitlines()
    assert len(lines) == 3 + headers
    sep = "," if fmt == "csv" else "\t"
    assert (lines[0] == sep.join(COLUMNS)) == headers
    assert lines[-1].split(sep)[0] == "tara/IMG_[v2].png"


def test_jsonl_is_one_object_a_line():
    _, text = render(3, "jsonl")
    objects = [json.loads(line) for line in text.splitlines()]
    assert [o["path"] for o in objects] == [f"tara/IMG_[v{i}].png" for i in range(3)]


def test_sql_streams_rows_in_flat_memory(tmp_path, indexed):
    """A recursive CTE of 300K rows through csv and json: the process's peak
    memory stays near what 1K rows need (holding 300K rows would take ~100 MB
    more; the benchmark runs the same at 1M)."""
    _, db, _ = indexed
    peaks = {}
    for n in (1_000, 300_000):
        sql = (f"WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n WHERE i < {n}) "
               "SELECT i, 'tara/20250804_235230_stage2_upscaled.png' AS path, 1.5 AS stage FROM n")
        for fmt in ("csv", "json"):
            # VmHWM, not ru_maxrss: the latter keeps the forking parent's peak across exec.
            code = ("import sys; from catalog.cli import app; sys.argv[0] = 'catalog'\n"
                    "try:\n    app()\nexcept SystemExit:\n    pass\n"
                    "sys.stderr.write('PEAK ' + open('/proc/self/status').read().split('VmHWM:')[1].split()[0])")
            proc = subprocess.run([sys.executable, "-c", code, "--db", str(db), "sql", sql, "-f", fmt],
                                  capture_output=True)
            assert proc.returncode == 0, proc.stderr
            assert proc.stdout.count(b"\n") == n + (1 if fmt == "csv" else 2)
            peaks[(n, fmt)] = int(re.search(rb"PEAK (\d+)", proc.stderr).group(1))
    for fmt in ("csv", "json"):
        assert peaks[(300_000, fmt)] < peaks[(1_000, fmt)] + 20_000, peaks  # KiB: flat, not the rows held


def test_sql_table_through_a_pipe_is_capped(indexed, run):
    _, db, _ = indexed
    run.db = db
    n = query(db, "SELECT count(*) FROM images")[0][0]
    result = run("sql", "SELECT rel_path FROM images", "--limit", "10")
    assert result.exit_code == 0, result.output
    assert result.stdout.rstrip().endswith(f"... {n - 10} more rows; use --all, or -f csv or -f json for all")
    result = run("sql", "SELECT rel_path FROM images", "--all")
    assert "more rows" not in result.stdout
    assert all(p in result.stdout for (p,) in query(db, "SELECT rel_path FROM images"))


def test_views_lists_every_view_with_its_columns(indexed, run):
    _, db, _ = indexed
    run.db = db
    result = run("views", "-f", "json")
    assert result.exit_code == 0, result.output
    listed = {v["view"]: v for v in json.loads(result.stdout)}
    names = {n for (n,) in query(db, "SELECT name FROM sqlite_master WHERE type = 'view'")}
    assert set(listed) == names
    for name, v in listed.items():
        columns = [r[1] for r in query(db, f'PRAGMA table_info("{name}")')]
        assert v["columns"] == ", ".join(columns)
        assert v["description"]
    assert "rejected_higher" in listed["anomalies"]["description"]
    result = run("views", "--sql", "anomalies")
    assert result.stdout.strip() == query(db, "SELECT sql FROM sqlite_master WHERE name = 'anomalies'")[0][0]
    result = run("views", "--sql", "nosuch")
    assert result.exit_code == 2 and "no view named 'nosuch'" in result.stderr


def test_version_and_short_help(run):
    result = run("--version")
    assert result.exit_code == 0 and re.fullmatch(r"catalog \d+\.\d+\.\d+\n", result.stdout)
    for args in (["-h"], ["export", "-h"], ["db", "upgrade", "-h"]):
        result = run(*args)
        assert result.exit_code == 0 and "Usage:" in result.stdout, args


def test_usage_errors_use_the_tools_one_line_style(tmp_path):
    for args, expected in ((["export"], "Missing argument"), (["sql", "select 1", "--bogus"], "No such option"),
                           (["stats", "-f", "xml"], "Invalid value")):
        proc = subprocess.run([*CATALOG, "--db", str(tmp_path / "c.db"), *args], capture_output=True, text=True)
        assert proc.returncode == 2, args
        lines = proc.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("catalog: error: ") and expected in lines[0], proc.stderr
        assert f"(see `catalog {args[0]} --help`)" in lines[0]
