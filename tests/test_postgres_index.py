"""Indexing into a real PostgreSQL server: first runs at once on an empty
database, the sync lock and its wait limit, the session limits, crashes at
named points, a server stopping mid-sync, long paths, and migration 0005.

Processes are real `catalog` processes; waits are for events on the server
(pg_stat_activity) or in the processes, never fixed sleeps.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import time
from pathlib import Path

import psycopg
import pytest
from conftest import Run
from pg import OWNER, SUPERUSER, state, wait_for
from proc import catalog, crash_env, crash_lines, mutate, start

from catalog.database import describe_db_error, open_engine
from catalog.dialects import SCHEMA_LOCK_KEY
from catalog.sample import png_bytes

pytest_plugins = ["conftest_pg"]

PASSWORDS = [SUPERUSER[1], OWNER[1]]


def test_four_indexers_at_once_on_an_empty_database(pg, sample):
    """Schema creation is serialized (it used to fail on pg_type's unique
    key), and so are the syncs: all four succeed and the catalogue is what
    one run makes."""
    root, _ = sample
    together, alone = pg.new_database(), pg.new_database()
    procs = [start(together.owner, "index", root, "--quiet") for _ in range(4)]  # type: ignore[arg-type]
    for proc in procs:
        _, err = proc.communicate(timeout=240)
        assert proc.returncode == 0, err
    done = Run(alone.owner)("index", root, "--quiet")  # type: ignore[arg-type]
    assert done.exit_code == 0, done.output
    assert state(pg, together.name) == state(pg, alone.name) != {}
    assert pg.execute("SELECT count(*) FROM scans", db=together.name) == [(12,)]


def hold(pg, db, sql: str) -> psycopg.Connection:
    """A session of the owner role holding, in an open transaction, what `sql` takes."""
    conn = psycopg.connect(pg.dsn(db.name, OWNER))
    conn.execute(sql)
    return conn


def test_waiting_for_a_lock_has_a_limit_and_says_busy(pg, pg_db, sample):
    root, _ = sample
    impatient = pg.url(pg_db.name, OWNER, options="-c lock_timeout=300")
    # Schema creation waits for another creator...
    run = Run(impatient)  # type: ignore[arg-type]
    creator = hold(pg, pg_db, f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")
    try:
        result = run("index", root)
    finally:
        creator.close()
    assert result.exit_code == 1
    assert result.stderr.strip().splitlines() == [
        f"catalog: error: database {impatient.replace(OWNER[1], '***')} "
        "is busy: another catalog run is writing it; try again when it has finished"]
    assert pg.tables(pg_db.name) == []
    assert run("index", root, "-q").exit_code == 0
    before = state(pg, pg_db.name)
    # ... and a sync for another sync (or forget, or crops).
    (root / "sandbox" / "aiko" / "20250101_000000_stage1_new.png").write_bytes(b"")
    syncing = hold(pg, pg_db, "LOCK TABLE projects IN SHARE ROW EXCLUSIVE MODE")
    try:
        clock = time.monotonic()
        result = run("index", root)
        assert time.monotonic() - clock < 30
        forgot = run("forget", "aiko")
    finally:
        syncing.close()
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("catalog: error:")]
    assert len(errors) == 3 and all("is busy: another catalog run is writing it" in e for e in errors), errors
    assert forgot.exit_code == 1 and "is busy" in forgot.stderr
    assert state(pg, pg_db.name) == before


def test_every_session_has_limits(pg, pg_db):
    pg.execute(f"ALTER DATABASE {pg_db.name} SET default_transaction_isolation = 'repeatable read'")
    shows = ("lock_timeout", "idle_in_transaction_session_timeout", "client_connection_check_interval",
             "TimeZone", "tcp_keepalives_idle", "transaction_isolation", "transaction_read_only",
             "application_name")
    for readonly, expected in ((False, ["2min", "15min", "2s", "UTC", "30", "read committed", "off", "catalog"]),
                               (True, ["2min", "15min", "2s", "UTC", "30", "repeatable read", "on", "catalog"])):
        engine = open_engine(pg_db.owner, readonly=readonly)
        try:
            with engine.begin() as conn:
                assert [conn.exec_driver_sql(f"SHOW {name}").scalar() for name in shows] == expected
                assert conn.connection.dbapi_connection.info.get_parameters()["connect_timeout"] == "10"
        finally:
            engine.dispose()
    # The URL's own settings win over ours.
    engine = open_engine(pg.url(pg_db.name, OWNER, connect_timeout="3", options="-c lock_timeout=5s"))
    try:
        with engine.connect() as conn:
            assert conn.exec_driver_sql("SHOW lock_timeout").scalar() == "5s"
            assert conn.connection.dbapi_connection.info.get_parameters()["connect_timeout"] == "3"
    finally:
        engine.dispose()


def test_an_idle_transaction_is_ended_by_the_server(pg, pg_db):
    engine = open_engine(pg.url(pg_db.name, OWNER, options="-c idle_in_transaction_session_timeout=200"))
    try:
        with engine.connect() as conn:
            conn.begin()
            pid = conn.exec_driver_sql("SELECT pg_backend_pid()").scalar()
            wait_for(lambda: not pg.execute("SELECT 1 FROM pg_stat_activity WHERE pid = %s", params=(pid,)),
                     "the server to end the idle session")
            with pytest.raises(Exception) as failed:
                conn.exec_driver_sql("SELECT 1")
    finally:
        engine.dispose()
    message = str(describe_db_error(failed.value, pg_db.owner))
    assert message == (f"PostgreSQL at 127.0.0.1:{pg.port} ended a transaction left idle longer than "
                       "idle_in_transaction_session_timeout; nothing of it was kept; run the command again")


def test_a_server_that_never_answers_is_given_up_on(tmp_path):
    with socket.socket() as silent:  # accepts connections (the kernel does) and never says a word
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        port = silent.getsockname()[1]
        url = f"postgresql://someone:Pw-9-secret@127.0.0.1:{port}/catalog?connect_timeout=2"
        clock = time.monotonic()
        result = Run(url)("stats")  # type: ignore[arg-type]
        elapsed = time.monotonic() - clock
    assert result.exit_code == 1, result.output
    assert result.stderr.strip().splitlines() == [
        f"catalog: error: PostgreSQL at 127.0.0.1:{port} did not answer in time (connect_timeout); check the "
        f"server and the network, or raise connect_timeout in the URL "
        f"(postgresql://someone:***@127.0.0.1:{port}/catalog?connect_timeout=2)"]
    assert elapsed < 20


# A handful of the points inside a project's transaction (tests/test_crash.py
# covers every point on SQLite).
IN_TRANSACTION = ("sync_started", "images_written", "matches_written", "before_commit")


def test_a_killed_sync_leaves_its_project_as_it_was(pg, sample):
    """SIGKILL at each point inside a project's transaction: the server rolls
    it back when the connection drops; the next run ends where an
    uninterrupted one does."""
    root, _ = sample
    db, reference = pg.new_database(), pg.new_database()
    assert Run(db.owner)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    before = state(pg, db.name)
    mutate(root)
    for point in IN_TRANSACTION:
        killed = catalog(db.owner, "index", root, env=crash_env(point, nth=2))  # type: ignore[arg-type]
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        assert crash_lines(killed.stderr) == [f"catalog: crash point {point} reached"]
        now = state(pg, db.name)
        # The first project was synced and committed; the second, killed, is as it was.
        first = sorted(os.listdir(root / "sandbox"))[0]
        assert {v: [r for r in rows if r[0] != first] for v, rows in now.items()} == \
               {v: [r for r in rows if r[0] != first] for v, rows in before.items()}, point
    assert Run(db.owner)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    assert Run(reference.owner)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    assert state(pg, db.name) == state(pg, reference.name)


def test_dry_run_on_an_empty_database(pg, pg_db, sample):
    root, expected = sample
    result = Run(pg_db.owner)("index", root, "--dry-run", "--json")  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    assert sum(p["added"] for p in json.loads(result.stdout)) == sum(
        p.sandbox_images + p.final_images for p in expected.projects.values())
    assert pg.tables(pg_db.name) == []


def long_path_project(base: Path) -> tuple[Path, str]:
    """A project whose sandbox holds a group ~3 KB deep, and its winner."""
    source = png_bytes(832, 1216)
    deep = "/".join(["d" * 240] * 12)  # 2.9 KB, beyond a btree entry's ~2.7 KB
    sandbox = base / "ws" / "sandbox" / "longpaths" / deep
    sandbox.mkdir(parents=True)
    for name in ("20250101_101010_stage1_generated.png", "20250101_101020_stage2_upscaled.png"):
        (sandbox / name).write_bytes(source)
    final = base / "ws" / "longpaths" / deep
    final.mkdir(parents=True)
    (final / "20250101_101010_stage1_generated.png").write_bytes(source)
    return base / "ws", f"{deep}/20250101_101010_stage1_generated.png"


def test_long_paths(pg, pg_db, tmp_path):
    ws, winner = long_path_project(tmp_path)
    assert len(winner.encode()) > 2800
    sqlite = Run(tmp_path / "c.db")
    for run in (Run(pg_db.owner), sqlite):  # type: ignore[arg-type]
        result = run("index", ws)
        assert result.exit_code == 0, result.output
        assert "1 decisions, 1 anomalies" in result.stdout
        found = run("sql", "SELECT chosen_path FROM anomalies", "-f", "csv")
        assert found.stdout == f"chosen_path\n{winner}\n"
    # Still one row per path: the key is the path's md5.
    with pytest.raises(psycopg.errors.UniqueViolation):
        pg.execute("INSERT INTO images (project_id, role, rel_path, dir, filename, size_bytes, mtime_ns) "
                   "SELECT project_id, role, rel_path, dir, filename, 1, 1 FROM images LIMIT 1",
                   db=pg_db.name, role=OWNER)


def test_migration_0005_on_a_catalogue_with_rows(pg, pg_db, sample, monkeypatch):
    """A catalogue written at 0004 gets the md5 key and the byte-order view,
    and the schema then matches what the code declares for PostgreSQL."""
    from alembic import command
    from alembic.autogenerate import compare_metadata
    from alembic.config import Config
    from alembic.migration import MigrationContext

    from catalog.schema import metadata

    root, _ = sample
    monkeypatch.setenv("CATALOG_DB", pg_db.owner)  # as `alembic upgrade` from the repository root reads it
    command.upgrade(Config(str(Path(__file__).resolve().parent.parent / "alembic.ini")), "0004_review_marks")
    pg.execute("INSERT INTO projects (name, sandbox_dir) VALUES ('old', '/nowhere')", db=pg_db.name, role=OWNER)
    assert Run(pg_db.owner)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    indexes = pg.execute("SELECT indexname, indexdef FROM pg_indexes WHERE tablename = 'images' ORDER BY 1",
                         db=pg_db.name)
    assert [name for name, _ in indexes] == ["pk_images", "uq_images_project_id_role_path_md5"]
    assert "md5((rel_path)::text)" in indexes[1][1]

    def only_postgres(obj, name, kind, reflected, compare_to):
        dialects = getattr(obj, "_ddl_if", None)
        return dialects is None or dialects.dialect in (None, "postgresql")

    engine = open_engine(pg_db.owner)
    try:
        with engine.connect() as conn:
            diffs = compare_metadata(MigrationContext.configure(conn, opts={"include_object": only_postgres}),
                                     metadata)
    finally:
        engine.dispose()
    assert diffs == []


def test_a_server_stopping_mid_sync_leaves_the_project_as_it_was(pg, pg_db, sample):
    """The sync is held inside its writes (a row it must delete is locked),
    the server stops; the project is as before and each error is one line."""
    root, _ = sample
    assert Run(pg_db.owner)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    before = state(pg, pg_db.name)
    aiko = root / "sandbox" / "aiko"
    victim = sorted(aiko.rglob("2025*.png"))[3]
    victim.unlink()
    (aiko / "20250101_000000_stage1_new.png").write_bytes(b"")
    blocker = hold(pg, pg_db, "SELECT 1 FROM images WHERE role = 'sandbox' AND rel_path = '"
                   f"{victim.relative_to(aiko).as_posix()}' FOR UPDATE")
    proc = start(pg_db.owner, "index", "--project", "aiko", "--sandbox", aiko,  # type: ignore[arg-type]
                 "--final", root / "aiko")
    try:
        wait_for(lambda: pg.execute("SELECT 1 FROM pg_stat_activity WHERE application_name = 'catalog' "
                                    "AND wait_event_type = 'Lock' AND query LIKE 'DELETE FROM images%'"),
                 "the sync to wait inside its writes")
        pg.halt()
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        with contextlib.suppress(psycopg.Error):
            blocker.close()
        pg.resume()
    assert proc.returncode == 1
    lines = err.strip().splitlines()
    assert lines[0] == (f"catalog: error: aiko: lost the connection to PostgreSQL at 127.0.0.1:{pg.port} (server "
                        "stopped or restarted, or the network failed); the unfinished transaction was rolled back; "
                        "run the command again")
    assert all(line.startswith("catalog: error: ") for line in lines), lines
    assert "Traceback" not in err and not any(p in err for p in PASSWORDS)
    assert state(pg, pg_db.name) == before
    # The next run, with the server back, ends where an uninterrupted one does.
    reference = pg.new_database()
    for url in (pg_db.owner, reference.owner):
        assert Run(url)("index", root, "-q").exit_code == 0  # type: ignore[arg-type]
    assert state(pg, pg_db.name) == state(pg, reference.name)
