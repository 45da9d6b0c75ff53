"""Exports that never give a wrong answer that looks right: typos in project
names, merges across projects, line ends, a catalogue given as OUT, formats,
missing folders, and file-system errors."""

from __future__ import annotations

import csv
import io
import os
import shutil
import sqlite3
import subprocess
import tempfile
from pathlib import Path

import pytest
from conftest import is_postgres, query
from proc import CATALOG, exists, views

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

IS_ROOT = os.geteuid() == 0


def read_csv(path: Path) -> list[dict]:
    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


@pytest.mark.parametrize("args", [["export", "{out}", "-p", "nosuch"], ["export-anomalies", "{out}", "-p", "Aiko"],
                                  ["stats", "-p", "nosuch"], ["check", "-p", "nosuch", "--strict"]])
def test_unknown_project_is_an_error_listing_the_known(indexed, run, tmp_path, args):
    _, run.db, _ = indexed
    out = tmp_path / "out.csv"
    result = run(*[a.format(out=out) for a in args])
    assert result.exit_code == 2, result.output
    assert "no project named" in result.stderr and "aiko, mojo-1, tattersail" in result.stderr
    if "Aiko" in args:
        assert "did you mean 'aiko'?" in result.stderr
    assert not out.exists()


def test_merge_keys_rows_by_project_and_file_name(indexed, run, tmp_path):
    """A log that holds another project's image with the same file name does
    not stop this project's row; the count of rows already there is exact."""
    _, run.db, _ = indexed
    full = tmp_path / "full.csv"
    assert run("export", full).exit_code == 0
    rows = read_csv(full)
    aiko = [r for r in rows if r["project"] == "aiko"]
    # The log: two aiko rows as they are, and one row of another project that
    # happens to use the file name of a third aiko winner.
    log = tmp_path / "log.csv"
    other = dict(aiko[2], session_id="elsewhere_extraction", project="elsewhere",
                 chosen_path="/old/elsewhere/" + aiko[2]["chosen_path"].rsplit("/", 1)[1])
    with open(log, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=list(rows[0]), lineterminator="\n")
        writer.writeheader()
        writer.writerows([aiko[0], aiko[1], other])
    result = run("export", log, "--merge")
    assert result.exit_code == 0, result.output
    assert f"wrote {len(rows) - 2} rows" in result.stdout and "(2 already there)" in result.stdout
    merged = read_csv(log)
    assert len(merged) == 3 + len(rows) - 2
    assert sum(1 for r in merged if r["chosen_path"] == aiko[2]["chosen_path"]) == 1


def test_merge_into_a_historical_log_uses_its_session_ids(indexed, run, tmp_path):
    _, run.db, _ = indexed
    full = tmp_path / "full.csv"
    assert run("export", full).exit_code == 0
    first = read_csv(full)[0]
    log = tmp_path / "log.csv"
    # Historical rows have only the trainer's five columns: the project is in the session id.
    log.write_text("session_id,set_id,chosen_path,neg_paths,timestamp\n"
                   f"{first['session_id']},{first['set_id']},/Users/x/{first['chosen_path'].rsplit('/', 1)[1]},[],"
                   f"{first['timestamp']}\n", encoding="utf-8")
    result = run("export", log, "--merge")
    assert result.exit_code == 0, result.output
    assert "(1 already there)" in result.stdout


def test_merge_into_a_crlf_log_keeps_crlf(indexed, run, tmp_path):
    _, run.db, _ = indexed
    log = tmp_path / "log.csv"
    previous = b"session_id,set_id,chosen_path,neg_paths,timestamp\r\nold_extraction,group_1,/x/a.png,[],t\r\n"
    log.write_bytes(previous)
    assert run("export", log, "--merge").exit_code == 0
    data = log.read_bytes()
    assert data.startswith(previous)
    assert data.count(b"\r\n") == data.count(b"\n") > 2


def test_the_catalogue_or_any_database_is_never_overwritten(indexed, run, tmp_path):
    _, db, _ = indexed
    run.db = db

    def contents():
        return views(db) if is_postgres(db) else db.read_bytes()

    before = contents()
    if not is_postgres(db):  # a PostgreSQL catalogue is no file that OUT could name
        result = run("export", db, "--force")
        assert result.exit_code == 2 and "is the catalogue itself" in result.stderr
    other = tmp_path / "other.sqlite"
    con = sqlite3.connect(other)
    con.execute("CREATE TABLE t (x)")
    con.close()
    other_bytes = other.read_bytes()
    for cmd in ("export", "export-anomalies"):
        result = run(cmd, other, "--force")
        assert result.exit_code == 2 and "is a SQLite database" in result.stderr
    assert contents() == before and other.read_bytes() == other_bytes


def test_format_follows_the_extension_and_a_mismatch_is_refused(indexed, run, tmp_path):
    _, run.db, _ = indexed
    result = run("export", tmp_path / "rows.jsonl")
    assert result.exit_code == 0, result.output
    first = (tmp_path / "rows.jsonl").read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("{") and '"neg_paths": [' in first
    result = run("export", tmp_path / "rows.csv", "--format", "jsonl")
    assert result.exit_code == 2 and "looks like csv" in result.stderr
    assert not (tmp_path / "rows.csv").exists()


def test_relative_to_a_missing_folder_is_refused(indexed, run, tmp_path):
    _, run.db, _ = indexed
    result = run("export", tmp_path / "o.csv", "--relative-to", tmp_path / "nope")
    assert result.exit_code == 2 and "is not an existing folder" in result.stderr
    assert not (tmp_path / "o.csv").exists()


def test_read_only_commands_never_create_a_catalogue(run):
    # run.db: a file that does not exist, or a database without the schema
    for args in (["db", "current"], ["stats"], ["sql", "select 1"], ["views"]):
        result = run(*args)
        assert result.exit_code == 2, (args, result.output)
        assert ("no catalogue in" if is_postgres(run.db) else "no catalogue at") in result.stderr
    assert not exists(run.db)


def test_export_into_a_folder_it_cannot_write_is_one_line(indexed):
    """Run as an unprivileged user (root writes anywhere): the folder of OUT
    is not writable, so the temporary file cannot be made."""
    _, db, _ = indexed
    place = Path(tempfile.mkdtemp(prefix="catalog-ro-"))
    try:
        os.chmod(place, 0o755)
        dbdir = place / "db"
        dbdir.mkdir()
        target = str(db) if is_postgres(db) else str(dbdir / "c.db")  # the server's database, or a copy
        if not is_postgres(db):
            shutil.copyfile(db, dbdir / "c.db")
        locked = place / "locked"
        locked.mkdir(mode=0o755)
        if IS_ROOT:
            os.chown(dbdir, 65534, 65534)
            if not is_postgres(db):
                os.chown(dbdir / "c.db", 65534, 65534)
            prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]
        else:
            locked.chmod(0o555)
            prefix = []
        for cmd in ("export", "export-anomalies"):
            # --include-missing: the unprivileged user cannot see the sample's folders either.
            proc = subprocess.run([*prefix, *CATALOG, "--db", target, cmd, str(locked / "out.csv"),
                                   "--include-missing"], capture_output=True, text=True, cwd=place)
            assert proc.returncode == 1, proc.stderr
            lines = proc.stderr.strip().splitlines()
            assert len(lines) == 1 and lines[0].startswith("catalog: error: cannot write"), proc.stderr
            assert "Permission denied" in lines[0] and "choose a folder you can write to" in lines[0]
            assert os.listdir(locked) == []
    finally:
        shutil.rmtree(place)
    assert query(db, "SELECT count(*) FROM projects")[0][0] == 3


def test_export_summary_per_project_with_what_was_left_out(indexed, run, tmp_path):
    root, run.db, expected = indexed
    result = run("export", tmp_path / "o.csv")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for name, p in expected.projects.items():
        line = next(text for text in lines if text.startswith(f"{name}: "))
        assert line == (f"{name}: {len(p.decisions)} rows, {p.anomalies} anomalies; left out {p.skipped} skipped "
                        f"groups (no winner) and {p.kept_twice} kept twice (two or more winners)")
    assert lines[-1] == f"wrote {sum(len(p.decisions) for p in expected.projects.values())} rows to {tmp_path / 'o.csv'}"
