"""`catalog sql` on SQLite runs on the sqlite3 module, without SQLAlchemy.

The path through SQLAlchemy (`query.engine_statement`, still the path of
PostgreSQL) is the reference: on random statements, both give the same
columns, rows, output in every format, and errors (message and exit code);
the settings the sqlite3 reader repeats from catalog/dialects.py agree with
it; and broken catalogues are refused by both with the same line.
"""

from __future__ import annotations

import sqlite3
import subprocess
import sys
from contextlib import contextmanager

import pytest
from conftest import Run
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import catalog.query as query
from catalog import database
from catalog.schema import HEAD_REVISION

FORMATS = ["table", "csv", "tsv", "json", "jsonl"]


@contextmanager
def through_sqlalchemy(monkeypatch):
    """Make run_sql take the engine path for a SQLite file too (as before)."""
    with monkeypatch.context() as m:
        m.setattr(query, "sqlite_path", lambda target: None)
        yield


def both(monkeypatch, db, *args, input=None):
    """(fast, reference) results of the same `catalog sql` command line."""
    run = Run(db)
    fast = run("sql", *args, input=input)
    with through_sqlalchemy(monkeypatch):
        slow = run("sql", *args, input=input)
    return fast, slow


def same(fast, slow):
    assert (fast.exit_code, fast.stdout, fast.stderr) == (slow.exit_code, slow.stdout, slow.stderr)
    assert "Traceback" not in fast.output


# ---------------------------------------------------------------- the reader's settings


def test_the_reader_has_the_engine_connection_settings(indexed_master):
    _, db, _ = indexed_master
    pragmas = ["busy_timeout", "foreign_keys", "query_only", "journal_mode"]
    con = database.open_sqlite_reader(str(db))
    fast = [con.execute(f"PRAGMA {p}").fetchall() for p in pragmas] + [con.isolation_level]
    con.close()
    engine = database.open_catalog(str(db), write=False)
    with engine.connect() as conn:
        raw = conn.connection.dbapi_connection
        assert raw is not None
        slow = [raw.execute(f"PRAGMA {p}").fetchall() for p in pragmas] + [raw.isolation_level]
    engine.dispose()
    assert fast == slow


def test_catalog_sql_on_sqlite_imports_neither_sqlalchemy_nor_alembic(indexed_master):
    _, db, _ = indexed_master
    code = ("import sys; from catalog.cli import app\n"
            "try:\n    app(['--db', sys.argv[1], 'sql', 'SELECT count(*) FROM anomalies', '-f', 'csv'])\n"
            "except SystemExit:\n    pass\n"
            "print(sorted({m.split('.')[0] for m in sys.modules} & {'sqlalchemy', 'alembic'}))")
    proc = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines() == ["count(*)", str(query_one(db, "SELECT count(*) FROM anomalies")), "[]"]


def query_one(db, sql):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql).fetchone()[0]
    finally:
        con.close()


# ---------------------------------------------------------------- random statements

RELATIONS = ["projects", "images", "image_groups", "group_members", "matches", "scans", "crop_boxes",
             "review_marks", "groups", "winners", "losers", "decisions", "anomalies", "skipped_groups",
             "orphans", "crops", "alembic_version", "sqlite_master", "no_such_view"]
COLUMNS = ["*", "project", "set_id", "stage", "rel_path", "timestamp", "chosen_stage", "max_stage", "is_anomaly",
           "indexed_at", "mtime_ns", "size", "stages", "width", "nope", "count(*)", "sum(stage)", "avg(stage)",
           "min(timestamp)", "typeof(stage)", "x'00ff'", "1.5", "2.0", "-0.0", "NULL", "'a;b'"]


def literal(value) -> str:
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, bytes):
        return f"x'{value.hex()}'"
    return "'" + value.replace("'", "''") + "'"


values = st.one_of(
    st.none(), st.booleans(), st.integers(min_value=-2**63, max_value=2**63 - 1),
    st.floats(allow_nan=False, allow_infinity=False), st.binary(max_size=6),
    st.text(max_size=12),
    st.sampled_from(["2025-07-08 06:07:11.000000", "2025-07-08 06:07:11", "1.5", "", "[b]IMG[/b]", "a\nb", "é😀"]),
)
aliases = st.sampled_from(["a", "b", "a", "x y", "\"q\"", "Ünï", "count"])


@st.composite
def selects_of_values(draw):
    items = draw(st.lists(st.tuples(values, aliases), min_size=1, max_size=4))
    return "SELECT " + ", ".join(f'{literal(v)} AS "{a.replace(chr(34), chr(34) * 2)}"' for v, a in items)


@st.composite
def selects_from_relations(draw):
    cols = draw(st.lists(st.sampled_from(COLUMNS), min_size=1, max_size=3))
    sql = f"SELECT {', '.join(cols)} FROM {draw(st.sampled_from(RELATIONS))}"
    if draw(st.booleans()):
        sql += f" WHERE {draw(st.sampled_from(COLUMNS[1:]))} {draw(st.sampled_from(['=', '<', 'IS NOT', 'LIKE']))} " \
               f"{literal(draw(values))}"
    sql += " ORDER BY 1"
    if draw(st.booleans()):
        sql += f" LIMIT {draw(st.integers(min_value=-1, max_value=1500))}"
    return sql


writes = st.sampled_from([
    "DELETE FROM images", "UPDATE projects SET name = 'x'", "DROP VIEW anomalies", "CREATE TABLE t (x)",
    "INSERT INTO scans DEFAULT VALUES", "PRAGMA journal_mode = DELETE", "PRAGMA query_only = OFF",
    "ATTACH DATABASE ':memory:' AS other", "SELECT load_extension('/nonexistent')", "VACUUM", "REINDEX",
    "WITH x AS (SELECT 1) DELETE FROM images", "BEGIN", "COMMIT", "ROLLBACK", "SAVEPOINT s", "ANALYZE",
    "PRAGMA table_info(images)", "PRAGMA integrity_check", "PRAGMA user_version", "EXPLAIN SELECT 1",
    "SELECT 1; SELECT 2", "SELECT ?", "SELECT :name", "SELECT 1 AS a, 2 AS a", "SELECT", "",
    "SELECT * FROM decisions WHERE 0", "SELECT abs(-9223372036854775808)", "SELECT zeroblob(3)",
    "SELECT 'a' || char(0) || 'b'", "SELECT 1e999", "SELECT -1e999",
])
junk = st.text(max_size=30)
statements = st.one_of(selects_of_values(), selects_from_relations(), writes, junk)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=statements, fmt=st.sampled_from(FORMATS), extra=st.sampled_from(
    [[], ["--all"], ["--limit", "3"], ["--no-headers"], ["--timeout", "30"]]))
def test_random_statements_give_the_same_output_and_errors(indexed_master, monkeypatch, sql, fmt, extra):
    _, db, _ = indexed_master
    if "\x00" in sql:
        return  # a NUL cannot travel in a command-line argument; sent on stdin below
    same(*both(monkeypatch, db, sql, "-f", fmt, *extra))


@settings(max_examples=30, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(sql=statements, fmt=st.sampled_from(FORMATS))
def test_random_statements_from_stdin(indexed_master, monkeypatch, sql, fmt):
    _, db, _ = indexed_master
    same(*both(monkeypatch, db, "-", "-f", fmt, input=sql))


def test_a_statement_that_runs_too_long_is_stopped_the_same_way(indexed_master, monkeypatch):
    _, db, _ = indexed_master
    endless = "WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n) SELECT count(*) FROM n"
    fast, slow = both(monkeypatch, db, endless, "--timeout", "0.05")
    same(fast, slow)
    assert fast.exit_code == 1 and "ran past --timeout 0.05 s" in fast.stderr


def test_rows_stream_in_both(indexed_master, monkeypatch):
    """Errors that happen while rows are read (not at the first step) too."""
    _, db, _ = indexed_master
    sql = "SELECT i, CASE WHEN i < 1500 THEN i ELSE abs(-9223372036854775808) END FROM " \
          "(WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i + 1 FROM n LIMIT 2000) SELECT i FROM n)"
    for fmt in FORMATS:
        fast, slow = both(monkeypatch, db, sql, "-f", fmt, "--all")
        same(fast, slow)
        assert fast.exit_code == 1 and "integer overflow" in fast.stderr


# ---------------------------------------------------------------- catalogues that are not at head


def _old_revision(db):
    """Take the catalogue back to revision 0004 (0005 changed nothing on SQLite)."""
    con = sqlite3.connect(db)
    con.execute("ALTER TABLE projects DROP COLUMN generation")  # added by 0006
    con.execute("UPDATE alembic_version SET version_num = '0004_review_marks'")
    con.commit()
    con.close()


BROKEN = {
    "missing": lambda p: None,
    "folder": lambda p: p.mkdir(),
    "empty file": lambda p: p.write_bytes(b""),
    "not a database": lambda p: p.write_bytes(b"hello, this is not SQLite" * 100),
    "truncated header": lambda p: p.write_bytes(b"SQLite format 3\x00" + b"\xff" * 84),
    "another program's": lambda p: sqlite3.connect(p).executescript("CREATE TABLE notes (x); INSERT INTO notes "
                                                                    "VALUES (1);"),
    "newer schema": lambda p: sqlite3.connect(p).executescript(
        "CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL); "
        "INSERT INTO alembic_version VALUES ('9999_future');"),
}


@pytest.mark.parametrize("kind", list(BROKEN))
def test_broken_catalogues_are_refused_with_the_same_line(tmp_path, monkeypatch, kind):
    db = tmp_path / "catalog.db"
    BROKEN[kind](db)
    fast, slow = both(monkeypatch, db, "SELECT 1")
    same(fast, slow)
    assert fast.exit_code in (1, 2) and fast.stderr.startswith("catalog: error: ")
    assert len(fast.stderr.splitlines()) == 1


def test_a_catalogue_behind_is_upgraded_first_by_both(indexed_master, tmp_path, monkeypatch):
    _, master, _ = indexed_master
    outs = []
    for k in range(2):
        db = tmp_path / f"old{k}.db"
        src, dst = sqlite3.connect(master), sqlite3.connect(db)
        src.backup(dst)
        src.close()
        dst.close()
        _old_revision(db)
        run = Run(db)
        if k == 0:
            outs.append(run("sql", "SELECT version_num FROM alembic_version", "-f", "csv"))
        else:
            with through_sqlalchemy(monkeypatch):
                outs.append(run("sql", "SELECT version_num FROM alembic_version", "-f", "csv"))
    same(*outs)
    assert outs[0].stdout == f"version_num\n{HEAD_REVISION}\n"
