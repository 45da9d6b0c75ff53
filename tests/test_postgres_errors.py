"""What a team sets up wrong, each said in one line with the fix, and never
the password: server down, wrong password, missing database or role, no
driver, a URL in libpq's `postgres://` spelling, no CREATE right on schema
public (PostgreSQL 15's default), a role that may only read."""

from __future__ import annotations

import socket
from pathlib import Path

from conftest import Run
from pg import OWNER, READER, SUPERUSER
from proc import catalog, with_env
from typer.testing import CliRunner

from catalog.cli import app

pytest_plugins = ["conftest_pg"]

PASSWORDS = [SUPERUSER[1], OWNER[1], READER[1], "Pw-9-secret"]


def one_line(output: str) -> str:
    lines = output.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("catalog: error: "), output
    assert "Traceback" not in output and not any(p in output for p in PASSWORDS), output
    return lines[0][len("catalog: error: "):]


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_server_down_wrong_password_missing_database_and_role(pg, pg_db, tmp_path):
    port = closed_port()
    cases = {
        f"postgresql://catalog_owner:Pw-9-secret@127.0.0.1:{port}/catalog":
            f"cannot connect to PostgreSQL at 127.0.0.1:{port}: connection refused; start the server, or fix the "
            f"host and port in --db / CATALOG_DB (postgresql://catalog_owner:***@127.0.0.1:{port}/catalog)",
        pg.url(pg_db.name, (OWNER[0], "Pw-9-secret")):
            f"PostgreSQL at 127.0.0.1:{pg.port} refused the password of role catalog_owner; fix it in --db / "
            "CATALOG_DB, PGPASSWORD or ~/.pgpass",
        pg.url("nowhere", OWNER):
            f"database nowhere does not exist on 127.0.0.1:{pg.port}; create it (createdb -O catalog_owner "
            f"nowhere, see the README's PostgreSQL section) or fix --db ({pg.url('nowhere', OWNER).replace(OWNER[1], '***')})",
    }
    for url, message in cases.items():
        for args in (("stats",), ("index", "--project", "p", "--sandbox", tmp_path), ("sql", "SELECT 1"),
                     ("db", "current")):
            result = Run(url)(*args)  # type: ignore[arg-type]
            assert result.exit_code == 1, (args, result.output)
            assert one_line(result.stderr) == message, args


def test_the_password_is_never_printed_also_from_the_environment(pg, pg_db, tmp_path):
    port = closed_port()
    for url in (f"postgresql://catalog_owner:Pw-9-secret@127.0.0.1:{port}/catalog",
                f"postgresql://catalog_owner@127.0.0.1:{port}/catalog?password=Pw-9-secret",
                f"postgresql://catalog_owner:Pw-9-secret@127.0.0.1:{port}/catalog?sslmode=bogus",
                "postgresql+psycopg2://catalog_owner:Pw-9-secret@127.0.0.1/catalog",
                "postgresql://catalog_owner:Pw-9-secret@127.0.0.1:notaport/catalog"):
        for args in (("db", "current"), ("index", "--project", "p", "--sandbox", tmp_path), ("db", "upgrade")):
            result = CliRunner().invoke(app, list(map(str, args)), env={"CATALOG_DB": url})
            assert result.exit_code in (1, 2), result.output
            assert "***" in one_line(result.stderr), (url, args)


def test_postgres_scheme_and_a_missing_driver(pg, pg_db, tmp_path):
    # libpq's spelling works as it does in psql.
    result = Run(pg.url(pg_db.name, OWNER, scheme="postgres"))("db", "upgrade")  # type: ignore[arg-type]
    assert result.exit_code == 0, result.output
    # Without psycopg (a folder on PYTHONPATH that hides it), the fix is named.
    fake = tmp_path / "no-driver" / "psycopg"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ModuleNotFoundError(\"No module named 'psycopg'\", name='psycopg')\n")
    result = catalog(pg_db.owner, "stats", env=with_env(PYTHONPATH=str(fake.parent)))  # type: ignore[arg-type]
    assert result.returncode == 2
    assert one_line(result.stderr) == ("PostgreSQL needs the psycopg driver, which is not installed: "
                                       "pip install 'catalog[postgres]' (or pip install 'psycopg[binary]' beside catalog)")


def test_no_create_right_on_schema_public(pg, sample):
    root, _ = sample
    db = pg.new_database(setup=False)
    pg.execute(f"ALTER DATABASE {db.name} OWNER TO postgres")  # the owner role is now an ordinary user there
    result = Run(db.owner)("index", root)  # type: ignore[arg-type]
    assert result.exit_code == 1
    assert one_line(result.stderr) == (
        f"role catalog_owner may not create tables in schema public of database {db.name} (since PostgreSQL 15 "
        f"only the database owner may): create the catalogue as the owner (ALTER DATABASE {db.name} OWNER TO "
        "catalog_owner) or GRANT CREATE ON SCHEMA public TO catalog_owner")
    assert pg.tables(db.name) == []


def test_a_role_that_may_only_read(pg, pg_indexed, tmp_path):
    root, db, _ = pg_indexed
    before = pg.execute("SELECT count(*), max(id) FROM images", db=db.name)
    for args in (("index", root), ("forget", "aiko"), ("db", "upgrade")):
        result = Run(db.reader)(*args)  # type: ignore[arg-type]
        assert result.exit_code == 1, (args, result.output)
        assert one_line(result.stderr).startswith(
            f"role catalog_reader may only read catalogue {db.reader.replace(READER[1], '***')} "), args
    # What a SELECT-only role is for.
    for args in (("stats",), ("check",), ("export", tmp_path / "out.csv"), ("sql", "SELECT count(*) FROM images")):
        result = Run(db.reader)(*args)  # type: ignore[arg-type]
        assert result.exit_code == 0, (args, result.output)
    assert pg.execute("SELECT count(*), max(id) FROM images", db=db.name) == before
    assert Path(tmp_path / "out.csv").stat().st_size > 0


def test_a_reader_on_a_catalogue_that_is_behind(pg, pg_db, monkeypatch):
    from alembic import command
    from alembic.config import Config

    monkeypatch.setenv("CATALOG_DB", pg_db.owner)
    command.upgrade(Config(str(Path(__file__).resolve().parent.parent / "alembic.ini")), "0004_review_marks")
    result = Run(pg_db.reader)("stats")  # type: ignore[arg-type]
    assert result.exit_code == 1
    assert one_line(result.stderr) == (
        f"catalogue {pg_db.reader.replace(READER[1], '***')} has an older schema (0004_review_marks) that this "
        "role may not upgrade; run `catalog db upgrade` (or index) with the role that owns it")
    assert Run(pg_db.owner)("db", "upgrade").exit_code == 0  # type: ignore[arg-type]
    assert Run(pg_db.reader)("stats").exit_code == 0  # type: ignore[arg-type]
