"""The database: migrations own the schema, and bad databases are refused."""

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

from alembic.autogenerate import compare_metadata
from alembic.config import Config
from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from conftest import query

from catalog.database import open_catalog
from catalog.schema import HEAD_REVISION, metadata

REPO = Path(__file__).resolve().parent.parent


def test_head_constant_is_alembics_head():
    cfg = Config(str(REPO / "alembic.ini"))
    assert ScriptDirectory.from_config(cfg).get_current_head() == HEAD_REVISION


def test_migrated_schema_matches_the_tables_the_code_uses(tmp_path):
    engine = open_catalog(str(tmp_path / "c.db"), write=True)
    with engine.connect() as conn:
        diffs = compare_metadata(MigrationContext.configure(conn), metadata)
    assert diffs == []


def test_alembic_upgrade_head_from_repo_root(tmp_path):
    db = tmp_path / "a.db"
    env = {**os.environ, "CATALOG_DB": str(db)}
    out = subprocess.run([sys.executable, "-m", "alembic", "upgrade", "head"], cwd=REPO, env=env,
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]
    assert query(db, "PRAGMA journal_mode") == [("wal",)]


def test_db_upgrade_and_current(run):
    result = run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert HEAD_REVISION in result.stdout
    result = run("db", "current")
    assert result.stdout.strip() == HEAD_REVISION


def test_behind_database_is_upgraded_on_open(run, tmp_path):
    db = run.db
    env = {**os.environ, "CATALOG_DB": str(db)}
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "0001_tables"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    assert query(db, "SELECT count(*) FROM sqlite_master WHERE type='view'") == [(0,)]
    result = run("stats")
    assert result.exit_code == 0, result.output
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def dump(db):
    con = sqlite3.connect(db)
    try:
        return list(con.iterdump())
    finally:
        con.close()


def test_newer_database_is_refused_and_untouched(run, tmp_path):
    assert run("db", "upgrade").exit_code == 0
    con = sqlite3.connect(run.db)
    con.execute("UPDATE alembic_version SET version_num = '9999_future'")
    con.commit()
    con.close()
    before = dump(run.db)
    ws = tmp_path / "ws"
    (ws / "sandbox" / "p").mkdir(parents=True)
    for args in (("index", ws), ("stats",), ("sql", "select 1")):
        result = run(*args)
        assert result.exit_code == 1, args
        assert "newer catalog" in result.stderr and "Traceback" not in result.output
    assert dump(run.db) == before


def test_corrupt_database_file(run):
    run.db.write_bytes(b"this is not sqlite, just some bytes " * 200)
    before = run.db.read_bytes()
    for args in (("stats",), ("db", "upgrade")):
        result = run(*args)
        assert result.exit_code == 1
        assert "corrupt or not SQLite" in result.stderr and "Traceback" not in result.output
    assert run.db.read_bytes() == before


def test_empty_database_file_is_a_new_catalogue(run):
    run.db.write_bytes(b"")
    result = run("db", "upgrade")
    assert result.exit_code == 0, result.output
    assert query(run.db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def test_other_programs_database_is_refused(run):
    con = sqlite3.connect(run.db)
    con.execute("CREATE TABLE recipes (id INTEGER PRIMARY KEY)")
    con.commit()
    con.close()
    result = run("db", "upgrade")
    assert result.exit_code == 1
    assert "another program" in result.stderr
    assert query(run.db, "SELECT name FROM sqlite_master") == [("recipes",)]


def test_missing_database_for_readers(run, tmp_path):
    for args in (("stats",), ("sql", "select 1"), ("export", tmp_path / "o.csv")):
        result = run(*args)
        assert result.exit_code == 2
        assert "no catalogue" in result.stderr
    assert not run.db.exists()


def test_database_folder_missing_or_a_folder(tmp_path):
    from conftest import Run

    result = Run(tmp_path / "nope" / "c.db")("db", "upgrade")
    assert result.exit_code == 2 and "does not exist" in result.stderr
    result = Run(tmp_path)("db", "upgrade")
    assert result.exit_code == 2 and "is a folder" in result.stderr


def test_sqlalchemy_url_target(tmp_path):
    from conftest import Run

    db = tmp_path / "u.db"
    result = Run(f"sqlite:///{db}")("db", "upgrade")  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    assert query(db, "SELECT version_num FROM alembic_version") == [(HEAD_REVISION,)]


def test_env_var_selects_the_database(tmp_path, monkeypatch):
    from typer.testing import CliRunner

    from catalog.cli import app

    db = tmp_path / "env.db"
    result = CliRunner().invoke(app, ["db", "upgrade"], env={"CATALOG_DB": str(db)})
    assert result.exit_code == 0, result.output
    assert db.exists()


def test_dry_run_does_not_upgrade_a_behind_database(run, tmp_path):
    db = run.db
    env = {**os.environ, "CATALOG_DB": str(db)}
    subprocess.run([sys.executable, "-m", "alembic", "upgrade", "0001_tables"], cwd=REPO, env=env, check=True,
                   capture_output=True)
    ws = tmp_path / "ws"
    (ws / "sandbox" / "p").mkdir(parents=True)
    result = run("index", ws, "--dry-run")
    assert result.exit_code == 2 and "db upgrade" in result.stderr
    assert query(db, "SELECT version_num FROM alembic_version") == [("0001_tables",)]
