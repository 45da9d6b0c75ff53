"""`catalog sql`: answers, formats, and the read-only guarantee."""

import csv
import io
import json

import pytest
from conftest import is_postgres, query

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

TABLES = ["projects", "images", "image_groups", "group_members", "matches", "scans"]

PG_SCHEMA = """SELECT c.relname, c.relkind, c.relacl::text, CASE WHEN c.relkind = 'v' THEN pg_get_viewdef(c.oid) END
               FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
               WHERE n.nspname = 'public' ORDER BY 1"""


def fingerprint(db):
    schema = PG_SCHEMA if is_postgres(db) else "SELECT type, name, sql FROM sqlite_master ORDER BY name"
    return {t: query(db, f"SELECT * FROM {t} ORDER BY 1") for t in TABLES} | {"schema": query(db, schema)}


def test_count_anomalies_equals_what_the_sample_was_written_with(indexed, run):
    _, db, expected = indexed
    run.db = db
    result = run("sql", "SELECT count(*) AS n FROM anomalies", "--format", "json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout) == [{"n": expected.anomalies}]


def test_formats(indexed, run):
    _, run.db, expected = indexed
    sql = "SELECT project, count(*) AS n FROM groups GROUP BY project ORDER BY project"
    rows = list(csv.DictReader(io.StringIO(run("sql", sql, "-f", "csv").stdout)))
    assert {r["project"]: int(r["n"]) for r in rows} == {n: len(p.groups) for n, p in expected.projects.items()}
    table = run("sql", sql).stdout
    assert "tattersail" in table and "┃" in table


def test_query_from_stdin_and_file(indexed, run, tmp_path):
    _, run.db, _ = indexed
    assert json.loads(run("sql", "-", "-f", "json", input="SELECT 2 AS two").stdout) == [{"two": 2}]
    f = tmp_path / "q.sql"
    f.write_text("-- a comment; with a semicolon\nSELECT 'a;b' AS s;\n")
    assert json.loads(run("sql", f"@{f}", "-f", "json").stdout) == [{"s": "a;b"}]
    result = run("sql", f"@{tmp_path / 'missing.sql'}")
    assert result.exit_code == 2 and "does not exist" in result.stderr


def test_bad_query_prints_the_database_message(indexed, run):
    _, run.db, _ = indexed
    result = run("sql", "SELECT nope FROM anomalies")
    assert result.exit_code == 1
    said = 'column "nope" does not exist' if is_postgres(run.db) else "no such column: nope"
    assert said in result.stderr and "Traceback" not in result.output


WRITES = [
    "INSERT INTO projects (name, sandbox_dir) VALUES ('x', '/x')",
    "UPDATE images SET stage = 9",
    "DELETE FROM matches",
    "DROP TABLE images",
    "DROP VIEW anomalies",
    "CREATE TABLE evil (x)",
    "CREATE INDEX ix_evil ON images(stage)",
    "ALTER TABLE images ADD COLUMN evil",
    "ATTACH DATABASE '{tmp}/new.db' AS other",
    "PRAGMA writable_schema = ON",
    "PRAGMA journal_mode = DELETE",
    "PRAGMA user_version = 7",
    "PRAGMA query_only = OFF",
    "SELECT load_extension('/nonexistent/lib')",
    "WITH x AS (SELECT 1) DELETE FROM images",
    "WITH x AS (SELECT 1) INSERT INTO scans SELECT * FROM scans",
    "REPLACE INTO projects (id, name, sandbox_dir) VALUES (1, 'x', '/x')",
    "VACUUM",
    "REINDEX",
    "SELECT 1; DELETE FROM images",
    "DELETE FROM images; SELECT 1",
]


@pytest.mark.parametrize("statement", WRITES)
def test_nothing_can_change_the_catalogue(indexed, run, tmp_path, statement):
    _, run.db, _ = indexed
    before = fingerprint(run.db)
    result = run("sql", statement.format(tmp=tmp_path))
    assert result.exit_code != 0, result.output
    assert "Traceback" not in result.output
    assert fingerprint(run.db) == before
    assert not (tmp_path / "new.db").exists()


def test_write_attempt_says_read_only(indexed, run):
    _, run.db, _ = indexed
    result = run("sql", "DELETE FROM images")
    assert result.exit_code == 1 and "read-only" in result.stderr


@pytest.mark.sqlite_only("PRAGMA is SQLite's own statement")
def test_reading_pragmas_still_work(indexed, run):
    _, run.db, _ = indexed
    result = run("sql", "PRAGMA table_info(images)", "-f", "json")
    assert result.exit_code == 0, result.output
    assert "rel_path" in {r["name"] for r in json.loads(result.stdout)}


ENDLESS = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"


def test_timeout_stops_an_endless_query(indexed, run):
    _, run.db, _ = indexed
    before = fingerprint(run.db)
    result = run("sql", ENDLESS, "--timeout", "0.2")
    assert result.exit_code == 1, result.output
    assert "ran past --timeout 0.2 s" in result.stderr and "Traceback" not in result.output
    assert fingerprint(run.db) == before


@pytest.mark.sqlite_only("the query_running point is in SQLite's progress handler; Ctrl-C on the server "
                         "is tests/test_postgres_sql.py's")
def test_ctrl_c_stops_a_query_running_inside_sqlite(indexed):
    """A real SIGINT, sent by the process to itself once the statement is
    running in SQLite's C code (where Python's own handler never gets a turn)."""
    from proc import catalog, crash_env

    _, db, _ = indexed
    proc = catalog(db, "sql", ENDLESS, env=crash_env("query_running", how="sigint"), timeout=120)
    assert proc.returncode == 130, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert lines == ["catalog: crash point query_running reached",
                     "catalog: error: interrupted; the query was stopped; nothing was changed"]


@pytest.mark.parametrize("cmd", ["export", "export-anomalies"])
def test_ctrl_c_during_export_says_the_file_was_kept(indexed, tmp_path, cmd):
    from proc import catalog, crash_env

    _, db, _ = indexed
    out = tmp_path / "out.csv"
    out.write_text("previous\n")
    proc = catalog(db, cmd, out, "--force", env=crash_env("export_written", how="interrupt"))
    assert proc.returncode == 130, proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("catalog: error: interrupted; OUT was left as it was")
    assert out.read_text() == "previous\n"
