"""`catalog sql` on a real PostgreSQL server: whatever the statement and
whatever the role, no row changes, no file is written, no program runs;
one statement per call, enforced by the server; `%` is plain text; the
statement timeout, Ctrl-C and a killed client stop the server-side query.

Each write attempt is checked against a fingerprint of every table, the
schema and the server's roles, taken by the superuser before and after.
"""

from __future__ import annotations

import os
import signal
import tempfile
import time
from pathlib import Path

import pytest
from conftest import Run
from pg import OWNER, READER, SUPERUSER, wait_for
from proc import start

from catalog.dialects import SCHEMA_LOCK_KEY
from catalog.query import split_statements

pytest_plugins = ["conftest_pg"]

TABLES = ["projects", "images", "image_groups", "group_members", "matches", "scans", "crop_boxes",
          "review_marks", "alembic_version"]


def fingerprint(pg, db) -> dict:
    out = {t: pg.execute(f"SELECT * FROM {t} ORDER BY 1", db=db.name) for t in TABLES}
    out["schema"] = pg.execute(
        "SELECT c.relname, c.relkind, c.relacl::text, pg_get_viewdef(c.oid) FROM pg_class c "
        "JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'public' ORDER BY 1", db=db.name)
    out["roles"] = pg.execute("SELECT rolname, rolsuper, rolcanlogin FROM pg_roles ORDER BY 1")
    out["settings"] = pg.execute("SELECT name, setting FROM pg_settings WHERE source NOT IN "
                                 "('default', 'session', 'client', 'override') ORDER BY 1")
    out["large_objects"] = pg.execute("SELECT count(*) FROM pg_largeobject_metadata", db=db.name)
    return out


@pytest.fixture(scope="module")
def drop() -> Path:
    """A folder the server's user could write into, had an attack got through."""
    folder = Path(tempfile.mkdtemp(prefix="catalog-drop-"))
    folder.chmod(0o1777)
    yield folder
    import shutil

    shutil.rmtree(folder, ignore_errors=True)


def clean_error(result) -> str:
    """The one error line, checked for the conventions (no traceback, no password)."""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("catalog: error: "), result.stderr
    assert "Traceback" not in result.output
    for _, password in (SUPERUSER, OWNER, READER):
        assert password not in result.output
    return lines[0]


# Items 1-3 of the issue, and their neighbours: every statement below is tried
# as the SELECT-only role and as the owner (who may write outside catalog sql).
REFUSED = [
    # More than one statement, whatever the quoting does to a splitter.
    "SELECT E'\\''; COMMIT; DROP VIEW orphans; DELETE FROM images; SELECT 'x'",
    "SELECT 1; DELETE FROM images",
    "DELETE FROM images; SELECT 1",
    "COMMIT; DELETE FROM images",
    "SELECT $$;$$; DELETE FROM images",
    "SELECT 1 AS a$b$; DELETE FROM images; SELECT $b$",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE; DELETE FROM images",
    "SET TRANSACTION READ WRITE; INSERT INTO projects (name, sandbox_dir) VALUES ('x', '/x')",
    # Writes, direct and indirect.
    "SET TRANSACTION READ WRITE",
    "SELECT set_config('transaction_read_only', 'off', true), (SELECT count(*) FROM images)",
    "DELETE FROM images",
    "UPDATE images SET stage = 9",
    "INSERT INTO projects (name, sandbox_dir) VALUES ('x', '/x')",
    "TRUNCATE images CASCADE",
    "DROP VIEW orphans",
    "DROP TABLE images CASCADE",
    "CREATE TABLE evil (x int)",
    "CREATE TEMP TABLE evil AS SELECT * FROM images",
    "CREATE INDEX ON images (stage)",
    "ALTER TABLE images ADD COLUMN evil int",
    "GRANT ALL ON images TO PUBLIC",
    "COMMENT ON TABLE images IS 'evil'",
    "WITH gone AS (DELETE FROM images RETURNING 1) SELECT count(*) FROM gone",
    "SELECT query_to_xml('DELETE FROM images RETURNING 1', true, true, '')",
    "DO $$BEGIN DELETE FROM images; END$$",
    "DO $$BEGIN COMMIT; DELETE FROM images; END$$",
    "SELECT * FROM projects FOR UPDATE",
    "SELECT nextval('images_id_seq')",
    "VACUUM images",
    "COPY images FROM STDIN",
    "COPY images TO STDOUT",
    # Server files and programs (item 2): refused for every role catalog sql runs as.
    "COPY (SELECT 1) TO '{drop}/file'",
    "COPY (SELECT 1) TO PROGRAM 'touch {drop}/program'",
    "COPY images FROM PROGRAM 'touch {drop}/program'",
    "SELECT pg_read_file('/etc/hostname')",
    "SELECT pg_ls_dir('.')",
    "SELECT lo_import('/etc/hostname')",
    "SELECT lo_export(0, '{drop}/lo')",
    "SELECT pg_reload_conf()",
    "SELECT pg_rotate_logfile()",
    "ALTER SYSTEM SET work_mem = '1GB'",
    "CREATE EXTENSION dblink",
    "LOAD 'plpgsql'",
]

# Accepted, and harmless: one statement, in a read-only transaction that is
# rolled back, in a session that ends with the command.
HARMLESS = [
    "COMMIT",
    "SELECT set_config('default_transaction_read_only', 'off', false)",
    "SET SESSION CHARACTERISTICS AS TRANSACTION READ WRITE",
    "SELECT pg_advisory_lock(7), pg_advisory_xact_lock(8)",
    "PREPARE evil AS DELETE FROM images",  # EXECUTE would be a second statement
]


@pytest.mark.parametrize("role", [READER, OWNER], ids=["reader", "owner"])
def test_nothing_can_change_the_catalogue(pg, pg_indexed, drop, role):
    _, db, _ = pg_indexed
    run = Run(pg.url(db.name, role))  # type: ignore[arg-type]
    before = fingerprint(pg, db)
    for statement in REFUSED:
        result = run("sql", statement.format(drop=drop))
        assert result.exit_code in (1, 2), (statement, result.output)
        clean_error(result)
    for statement in HARMLESS:
        result = run("sql", statement)
        assert result.exit_code == 0, (statement, result.output)
    assert fingerprint(pg, db) == before
    assert list(drop.iterdir()) == []


def test_refusals_say_why(pg, pg_indexed):
    _, db, _ = pg_indexed
    run = Run(db.reader)  # type: ignore[arg-type]
    assert "read-only" in clean_error(run("sql", "DELETE FROM images"))
    assert "one statement per call" in clean_error(run("sql", "SELECT 1; SELECT 2"))
    assert "does not run COPY" in clean_error(run("sql", "COPY images TO STDOUT"))


def test_the_server_counts_the_statements(pg, pg_indexed, monkeypatch):
    """Even a splitter fooled into seeing one statement cannot pass two: the
    text goes to the server as one prepared statement."""
    import catalog.query

    _, db, _ = pg_indexed
    before = fingerprint(pg, db)
    monkeypatch.setattr(catalog.query, "one_statement", lambda sql: sql)
    result = Run(db.owner)("sql", "SELECT 1; DELETE FROM images")  # type: ignore[arg-type]
    assert result.exit_code == 2
    assert "the server found more" in clean_error(result)
    assert fingerprint(pg, db) == before


def test_escape_strings_do_not_fool_the_splitter():
    assert split_statements("SELECT E'\\''; COMMIT; DELETE FROM images") == [
        "SELECT E'\\''", "COMMIT", "DELETE FROM images"]
    assert split_statements("SELECT e'a\\\\'; SELECT 2") == ["SELECT e'a\\\\'", "SELECT 2"]
    assert split_statements("SELECT 'a\\'; SELECT 2") == ["SELECT 'a\\'", "SELECT 2"]  # standard string
    assert split_statements("SELECT name'x'; SELECT 2") == ["SELECT name'x'", "SELECT 2"]
    assert split_statements("SELECT 1 AS a$b$; SELECT $b$") == ["SELECT 1 AS a$b$", "SELECT $b$"]


def test_superuser_and_server_file_roles_are_refused(pg, pg_indexed):
    _, db, _ = pg_indexed
    result = Run(db.superuser)("sql", "SELECT count(*) FROM images")  # type: ignore[arg-type]
    assert result.exit_code == 1
    line = clean_error(result)
    assert "superuser" in line and "SELECT-only role" in line
    pg.execute("DO $$BEGIN IF NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'catalog_filer') THEN "
               "CREATE ROLE catalog_filer LOGIN PASSWORD 'filer-Secret-7' IN ROLE pg_write_server_files; "
               "END IF; END$$")
    pg.execute("GRANT SELECT ON ALL TABLES IN SCHEMA public TO catalog_filer", db=db.name)
    result = Run(pg.url(db.name, ("catalog_filer", "filer-Secret-7")))("sql", "SELECT 1")  # type: ignore[arg-type]
    assert result.exit_code == 1
    assert "pg_write_server_files" in clean_error(result)


def test_percent_and_placeholders_are_plain_text(pg, pg_indexed):
    _, db, expected = pg_indexed
    run = Run(pg.url(db.name, READER, scheme="postgres"))  # type: ignore[arg-type]
    result = run("sql", "SELECT 'x%sy' AS s, 5 % 3 AS m, '%(a)s $1 %%' AS p, "
                        "(SELECT count(*) FROM images WHERE rel_path LIKE '%stage%') > 0 AS found", "-f", "csv")
    assert result.exit_code == 0, result.output
    assert result.stdout == "s,m,p,found\nx%sy,2,%(a)s $1 %%,True\n"


def test_answers_match_the_sample(pg, pg_indexed):
    _, db, expected = pg_indexed
    run = Run(db.reader)  # type: ignore[arg-type]
    result = run("sql", "SELECT count(*) AS n FROM anomalies", "-f", "json")
    assert result.exit_code == 0, result.output
    assert result.stdout == f'[\n{{"n": {expected.anomalies}}}\n]\n'
    empty = run("sql", "SELECT project, set_id FROM anomalies WHERE false", "-f", "csv")
    assert empty.exit_code == 0 and empty.stdout == "project,set_id\n"
    big = run("sql", "SELECT g, g * 1.5 AS x FROM generate_series(1, 50000) g", "-f", "csv")
    assert big.exit_code == 0 and big.stdout.count("\n") == 50001
    assert big.stdout.endswith("\n50000,75000\n")


def test_timeout_stops_the_statement_on_the_server(pg, pg_indexed):
    _, db, _ = pg_indexed
    clock = time.monotonic()
    result = Run(db.reader)("sql", "SELECT pg_sleep(30)", "--timeout", "0.3")  # type: ignore[arg-type]
    assert result.exit_code == 1
    assert "ran past --timeout 0.3 s" in clean_error(result)
    assert time.monotonic() - clock < 15
    assert pg.backends(db.name, "%pg_sleep(30)%") == []


def test_a_reader_cannot_stall_the_indexers_and_ctrl_c_stops_it(pg, pg_db, sample):
    """A long statement holding every lock a reader can take (advisory locks,
    including the key the sync lock used to be, and shared locks on the
    tables, which PostgreSQL takes on every table a statement names, even
    one that reads no row: the statement sleeps rather than burning the
    CPU the index needs) does not stop an index; Ctrl-C then ends the
    statement on the server at once."""
    root, _ = sample
    first = Run(pg_db.owner)("index", root, "-q")  # type: ignore[arg-type]
    assert first.exit_code == 0, first.output
    (root / "sandbox" / "aiko" / "20250101_000000_stage1_new.png").write_bytes(
        next((root / "sandbox" / "aiko").glob("*.png")).read_bytes())
    stall = (f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY}), pg_advisory_xact_lock(hashtext('aiko')), "
             "count(*), pg_sleep(120) FROM images, projects, image_groups, group_members, matches WHERE false")
    reader = start(pg_db.reader, "sql", stall)  # type: ignore[arg-type]
    try:
        wait_for(lambda: [b for b in pg.backends(pg_db.name, "%pg_sleep(120)%") if b[1] == "active"],
                 "the reader's statement to run")
        refused = Run(pg_db.reader)("sql", "LOCK TABLE projects IN SHARE ROW EXCLUSIVE MODE")  # type: ignore[arg-type]
        assert refused.exit_code == 1 and "permission denied" in clean_error(refused)
        index = Run(pg_db.owner)("index", root)  # type: ignore[arg-type]
        assert index.exit_code == 0, index.output
        assert "aiko: 1 added" in index.stdout
        reader.send_signal(signal.SIGINT)
        _, err = reader.communicate(timeout=30)
        assert reader.returncode == 130, err
        assert err.strip().splitlines() == ["catalog: error: interrupted; the query was stopped; nothing was changed"]
        wait_for(lambda: pg.backends(pg_db.name, "%pg_sleep(120)%") == [], "the statement to end", 10)
    finally:
        if reader.poll() is None:
            reader.kill()
            reader.wait()


def test_a_killed_client_does_not_leave_its_query_running(pg, pg_indexed):
    _, db, _ = pg_indexed
    proc = start(db.reader, "sql", "SELECT pg_sleep(300)")  # type: ignore[arg-type]
    try:
        wait_for(lambda: [b for b in pg.backends(db.name, "%pg_sleep(300)%") if b[1] == "active"],
                 "the statement to run")
    finally:
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
    # client_connection_check_interval: the server looks for its client every 2 s.
    wait_for(lambda: pg.backends(db.name, "%pg_sleep(300)%") == [], "the server to end the orphaned query", 20)
