"""Open the catalogue: resolve --db, create engines, keep the schema at head.

Owns the rules around the database: a file path or a SQLAlchemy URL
(`postgres://` and `postgresql://` mean PostgreSQL through psycopg 3); a
missing database is created only by commands that write; a database that is
behind is upgraded by Alembic before use, one upgrader at a time; one stamped
with a revision this code does not know, a corrupt file or another program's
database is refused before anything is written. Database errors become
one-line CatalogErrors that say what to do, and a URL's password never
appears in a message (`shown`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sqlite3
import weakref
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .errors import CatalogError, UsageError

# The newest Alembic revision this code knows; a command that finds the
# database here does no migration work at all (and never imports Alembic).
# Kept here, not in catalog/schema.py, because `catalog sql` on SQLite checks
# it without importing SQLAlchemy.
HEAD_REVISION = "0006_project_locks"

if TYPE_CHECKING:
    from sqlalchemy.engine import URL, Connection, Engine

# SQLAlchemy and Alembic (about 0.3 s of imports) are imported by the
# functions that use them, never at import time: `catalog sql` and
# `catalog export` read a SQLite catalogue at head through the sqlite3
# module alone (`open_sqlite_reader`).

DEFAULT_DB = "catalog.db"

POSTGRES_SCHEMES = ("postgres", "postgresql", "postgresql+psycopg")
POSTGRES_DRIVER = "postgresql+psycopg"
INSTALL_DRIVER = "pip install 'catalog[postgres]' (or pip install 'psycopg[binary]' beside catalog)"


def is_url(target: str) -> bool:
    return "://" in target


def sqlite_path(target: str) -> Optional[str]:
    """The file behind a SQLite target, or None for other backends / memory."""
    if not is_url(target):
        return target
    if target.startswith("sqlite:///") and len(target) > len("sqlite:///"):
        return target[len("sqlite:///"):].split("?", 1)[0]
    return None


def is_postgres(target: str) -> bool:
    return target.split("://", 1)[0].lower().startswith(("postgres", "postgresql"))


_PASSWORD_IN_AUTHORITY = re.compile(r"^([A-Za-z][\w+.-]*://[^:/@]*:)[^@]*@")
_PASSWORD_IN_QUERY = re.compile(r"([?&]password=)[^&]*", re.IGNORECASE)


def shown(target: str) -> str:
    """`target` as messages show it: a URL's password (in the authority or
    as a `password=` parameter) replaced by ***. Parsed the way SQLAlchemy
    parses URLs, and textual, so it works on URLs that do not parse too."""
    if not is_url(target):
        return target
    return _PASSWORD_IN_QUERY.sub(r"\1***", _PASSWORD_IN_AUTHORITY.sub(r"\1***@", target))


def _secrets(target: str) -> list[str]:
    """The password(s) in `target`, as written and decoded, to scrub from any
    text quoted in a message."""
    from urllib.parse import unquote

    found = []
    m = _PASSWORD_IN_AUTHORITY.match(target)
    if m:
        found.append(target[m.end(1):m.end() - 1])
    found.extend(target[q.end(1):q.end()] for q in _PASSWORD_IN_QUERY.finditer(target))
    found += [unquote(s) for s in found]
    # A password of one or two characters would scrub half the message.
    return sorted({s for s in found if len(s) >= 3}, key=len, reverse=True)


def scrub(message: str, target: str) -> str:
    for secret in _secrets(target):
        message = message.replace(secret, "***")
    return message


def postgres_url(target: str) -> URL:
    """The SQLAlchemy URL for a PostgreSQL target: `postgres://` (libpq's
    spelling) and `postgresql://` become `postgresql+psycopg://`."""
    scheme = target.split("://", 1)[0].lower()
    if scheme not in POSTGRES_SCHEMES:
        raise UsageError(
            f"database URL {shown(target)}: catalog reaches PostgreSQL through psycopg 3; "
            f"write it as postgresql://{shown(target).split('://', 1)[1]}")
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    try:
        url = make_url(target)
    except (ArgumentError, ValueError) as exc:
        raise UsageError(f"database URL {shown(target)} does not parse ({scrub(str(exc), target)}); "
                         "the form is postgresql://USER:PASSWORD@HOST:PORT/DATABASE") from None
    return url.set(drivername=POSTGRES_DRIVER)


def _postgres_connect_args(url: URL, readonly: bool) -> dict:
    """Our connection parameters under the URL's own: a URL parameter wins,
    and the URL's `options` come after ours, so its `-c name=value` win."""
    from . import dialects

    args = dialects.postgres_connect_args(readonly=readonly)
    for key in list(args):
        if key in url.query:
            if key == "options":
                args[key] = f"{args[key]} {url.query[key]}"
            else:
                del args[key]
    return args


# Every engine this process opened and still holds, closed by `close_all`
# on the way out rather than by the interpreter's teardown (see
# catalog/__main__.py `before_exit`).
_opened: weakref.WeakSet[Engine] = weakref.WeakSet()


def close_all() -> None:
    """Close the pooled connections of every engine still held. A SQLite
    file's last connection folds its write-ahead log back into the file and
    removes the -wal and -shm files beside it."""
    for engine in list(_opened):
        # On the way out: a server already gone is no news.
        with contextlib.suppress(Exception):
            engine.dispose()


def open_engine(target: str, *, readonly: bool = False) -> Engine:
    """An engine with the catalogue's connection settings; no checks."""
    engine = _new_engine(target, readonly)
    _opened.add(engine)
    return engine


def _new_engine(target: str, readonly: bool) -> Engine:
    from sqlalchemy import create_engine
    from sqlalchemy.exc import SQLAlchemyError

    from . import dialects

    path = sqlite_path(target)
    if path is not None:
        if readonly:
            engine = create_engine("sqlite://", creator=dialects.sqlite_readonly_creator(os.path.abspath(path)))
        else:
            engine = create_engine(
                "sqlite:///" + os.path.abspath(path),
                connect_args={"timeout": dialects.BUSY_TIMEOUT_S},
            )
        dialects.configure_sqlite(engine, readonly=readonly)
        return engine
    if target.startswith("sqlite"):
        engine = create_engine(target)
        dialects.configure_sqlite(engine, readonly=readonly)
        return engine
    if is_postgres(target):
        url = postgres_url(target)
        try:
            # pool_pre_ping: a pooled connection is checked before it is handed
            # out, so a server restarted between two projects costs a new
            # connection, not a failed project.
            engine = create_engine(url, isolation_level=dialects.POSTGRES_ISOLATION[readonly],
                                   connect_args=_postgres_connect_args(url, readonly), pool_pre_ping=True)
        except ImportError:
            raise UsageError(f"PostgreSQL needs the psycopg driver, which is not installed: {INSTALL_DRIVER}") from None
        dialects.configure_postgres(engine, readonly=readonly)
        # The driver logs what it does on its way out of a failure ("query not
        # terminated after cancellation", "error ignored terminating
        # pipeline"); the command's own error line says what happened.
        import logging

        logging.getLogger("psycopg").addHandler(logging.NullHandler())
        logging.getLogger("psycopg").propagate = False
        return engine
    try:
        return create_engine(target)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise UsageError(f"cannot use database URL {shown(target)}: {scrub(str(exc), target)}") from None


def _check_sqlite_file(path: str, *, must_exist: bool) -> None:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"database {path} is a folder; give a file path with --db")
    if not p.parent.exists():
        raise UsageError(f"folder of database {path} does not exist; create it or choose another --db")
    if must_exist and not p.exists():
        raise UsageError(f"no catalogue at {path}; run `catalog index PATH` first or pass --db")


# ---------------------------------------------------------------- SQLite readers without SQLAlchemy

def _sqlite_reader(path: str) -> sqlite3.Connection:
    from . import dialects

    con = dialects.sqlite_readonly_creator(os.path.abspath(path))()
    try:
        dialects.setup_sqlite(con, readonly=True)  # the settings of open_catalog(write=False)
    except BaseException:
        con.close()
        raise
    return con


def open_sqlite_reader(target: str) -> sqlite3.Connection:
    """A read-only sqlite3 connection on the SQLite catalogue `target` (a
    path or sqlite:/// URL), set up as open_catalog(write=False) sets up its
    connections, without importing SQLAlchemy or Alembic.

    Only a readable catalogue at head is opened directly; anything else (no
    file, a folder, a corrupt or foreign file, a schema behind or newer) goes
    through open_catalog, which upgrades it or refuses it with the message
    every other command gives. The caller begins and ends transactions."""
    path = sqlite_path(target)
    assert path is not None, "not a SQLite file"
    _check_sqlite_file(path, must_exist=True)
    try:
        con = _sqlite_reader(path)
    except sqlite3.Error:
        con = None
    if con is not None:
        try:
            if con.execute("SELECT version_num FROM alembic_version").fetchall() == [(HEAD_REVISION,)]:
                return con
        except sqlite3.Error:
            pass
        con.close()
    open_catalog(target, write=False).dispose()
    try:
        return _sqlite_reader(path)
    except sqlite3.Error as exc:
        raise describe_db_error(exc, target) from None


def current_revision(conn: Connection) -> Optional[str]:
    from sqlalchemy import inspect, text

    tables = inspect(conn).get_table_names()
    if "alembic_version" not in tables:
        if tables:
            raise CatalogError(
                "database has tables but no catalog schema version: it belongs to another program; "
                "choose another --db"
            )
        return None
    return conn.execute(text("SELECT version_num FROM alembic_version")).scalar()


def _alembic_config(conn: Optional[Connection] = None):
    import importlib

    from alembic.config import Config

    # Installed as catalog.migrations from the repository's top-level migrations/.
    migrations = importlib.import_module("catalog.migrations")
    cfg = Config()
    assert migrations.__file__ is not None
    cfg.set_main_option("script_location", str(Path(migrations.__file__).parent))
    if conn is not None:
        cfg.attributes["connection"] = conn
    return cfg


def _check_known(revision: str, target: str) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util import CommandError

    try:
        known = ScriptDirectory.from_config(_alembic_config()).get_revision(revision)
    except CommandError:
        known = None
    if known is None:
        raise CatalogError(
            f"database {shown(target)} was written by a newer catalog (schema revision {revision}); "
            "upgrade catalog before using it"
        )


def upgrade(engine: Engine, target: str) -> tuple[Optional[str], str]:
    """Bring the schema to head in one transaction; returns (before, after).

    Upgraders queue on the schema lock and read the revision after taking
    it: of several first runs on an empty database, one creates the schema
    and the others find it done."""
    from . import dialects

    with engine.begin() as conn:
        dialects.lock_schema(conn)
        before = current_revision(conn)
        if before == HEAD_REVISION:
            return before, before
        if before is not None:
            _check_known(before, target)
        from alembic import command

        command.upgrade(_alembic_config(conn), "head")
    return before, HEAD_REVISION


def revision_of(engine: Engine) -> Optional[str]:
    with engine.connect() as conn:
        return current_revision(conn)


def open_catalog(target: str, *, write: bool) -> Engine:
    """An engine on a catalogue at head. `write=False` opens it read-only and
    refuses a database that does not exist yet."""
    return _open(target, write)[0]


def open_existing(target: str) -> Optional[Engine]:
    """A read-only engine, or None when there is no catalogue yet: no SQLite
    file, or a server database without the schema (for --dry-run, which
    must not create it)."""
    from sqlalchemy.exc import SQLAlchemyError

    path = sqlite_path(target)
    if path is not None and not os.path.exists(path):
        return None
    if path is None:
        try:
            engine = open_engine(target, readonly=True)
            empty = revision_of(engine) is None
        except SQLAlchemyError as exc:
            raise describe_db_error(exc, target) from None
        engine.dispose()
        if empty:
            return None
    return _open(target, False, may_upgrade=False)[0]


def current(target: str) -> str:
    """`catalog db current`: the schema revision, read without creating,
    migrating or writing anything."""
    from sqlalchemy.exc import SQLAlchemyError


    path = sqlite_path(target)
    if path is not None:
        _check_sqlite_file(path, must_exist=True)
    try:
        engine = open_engine(target, readonly=True)
        try:
            revision = revision_of(engine)
        finally:
            engine.dispose()
    except SQLAlchemyError as exc:
        raise describe_db_error(exc, target) from None
    if revision is None:
        raise UsageError(f"no catalogue in {shown(target)} yet; run `catalog index PATH` first")
    if revision != HEAD_REVISION:
        _check_known(revision, target)
        return f"{revision} (behind {HEAD_REVISION}; run `catalog db upgrade`)"
    return revision


def migrate(target: str) -> tuple[Optional[str], str]:
    """`catalog db upgrade`: create or upgrade; returns (revision before, after)."""

    engine, before = _open(target, True)
    engine.dispose()
    return before, HEAD_REVISION


def _open(target: str, write: bool, may_upgrade: bool = True) -> tuple[Engine, Optional[str]]:
    from sqlalchemy.exc import SQLAlchemyError


    path = sqlite_path(target)
    if path is not None:
        _check_sqlite_file(path, must_exist=not write)
    try:
        engine = open_engine(target, readonly=not write)
        revision = revision_of(engine)
        if revision != HEAD_REVISION:
            if revision is not None:
                _check_known(revision, target)
            elif not write:
                raise UsageError(f"no catalogue in {shown(target)} yet; run `catalog index PATH` first")
            if not may_upgrade:
                raise UsageError(f"catalogue {shown(target)} has an older schema; run `catalog db upgrade` first")
            # A reader upgrades through a short-lived writable engine, then reads read-only.
            writer = engine if write else open_engine(target)
            try:
                upgrade(writer, target)
            except SQLAlchemyError as exc:
                if revision is not None and getattr(getattr(exc, "orig", None), "sqlstate", None) == "42501":
                    raise CatalogError(  # insufficient privilege: not the owner
                        f"catalogue {shown(target)} has an older schema ({revision}) that this role "
                        "may not upgrade; run `catalog db upgrade` (or index) with the role that owns it"
                    ) from None
                raise
            finally:
                if writer is not engine:
                    writer.dispose()
        if write and is_postgres(target):
            _check_may_write(engine, target)
        return engine, revision
    except SQLAlchemyError as exc:
        raise describe_db_error(exc, target) from None


def _check_may_write(engine: Engine, target: str) -> None:
    """Refuse a role that may only read once, up front, rather than once per project."""
    from . import dialects

    with engine.connect() as conn:
        if dialects.may_write(conn):
            return
    url = postgres_url(target)
    raise CatalogError(
        f"role {url.username or '(your login name)'} may only read catalogue {shown(target)} (no write rights, or "
        "a read-only session or server); index, forget and upgrade with the role that owns it (SELECT-only "
        "roles are for catalog sql, stats and export)")


def describe_db_error(exc: BaseException, target: str) -> CatalogError:
    """One line a user can act on, for the database failures people really hit."""
    orig = getattr(exc, "orig", None) or exc
    msg = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    msg = scrub(msg, target)
    if is_postgres(target):
        found = _describe_postgres(orig, msg, target)
        if found is not None:
            return found
    low = msg.lower()
    if "file is not a database" in low or "malformed" in low:
        return CatalogError(f"database {target} is corrupt or not SQLite ({msg}); move it aside or choose another --db")
    if "locked" in low or "busy" in low:
        return _busy(target)
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return CatalogError(
            f"cannot write database {shown(target)} ({msg}): the file or its folder is read-only; "
            "choose a writable --db"
        )
    return CatalogError(f"database error on {shown(target)}: {msg}")


def _busy(target: str) -> CatalogError:
    return CatalogError(
        f"database {shown(target)} is busy: another catalog run is writing it; try again when it has finished"
    )


def _describe_postgres(orig: BaseException, msg: str, target: str) -> Optional[CatalogError]:
    """The PostgreSQL failures of a team's setup, by SQLSTATE where the server
    sent one, else by libpq's (English) connection messages."""
    try:
        url = postgres_url(target)
    except UsageError as exc:
        return exc
    where = shown(target)
    user = url.username or os.environ.get("PGUSER") or "(your login name)"
    db = url.database or user
    server = f"{url.host or 'localhost'}:{url.port or 5432}"
    state = getattr(orig, "sqlstate", None) or ""
    full = " ".join(scrub(str(orig), target).split())
    low = full.lower()
    if "connection refused" in low or ("no such file or directory" in low and "socket" in low):
        return CatalogError(f"cannot connect to PostgreSQL at {server}: connection refused; "
                            f"start the server, or fix the host and port in --db / CATALOG_DB ({where})")
    if state in ("57P03",) or "the database system is shutting down" in low or "is starting up" in low \
            or "in recovery mode" in low:
        return CatalogError(f"PostgreSQL at {server} is shutting down or starting up and accepts no connection "
                            "now; run the command again when it is up")
    if "timeout expired" in low:
        return CatalogError(f"PostgreSQL at {server} did not answer in time (connect_timeout); check the server "
                            f"and the network, or raise connect_timeout in the URL ({where})")
    if "could not translate host name" in low or "name or service not known" in low:
        return CatalogError(f"unknown host {url.host!r}; fix the host in --db / CATALOG_DB ({where})")
    if "password authentication failed" in low or state == "28P01":
        return CatalogError(f"PostgreSQL at {server} refused the password of role {user}; fix it in --db / "
                            "CATALOG_DB, PGPASSWORD or ~/.pgpass")
    if "no password supplied" in low or "password is required" in low:
        return CatalogError(f"PostgreSQL at {server} wants a password for role {user}; give it in --db / "
                            "CATALOG_DB (postgresql://USER:PASSWORD@HOST/DB), PGPASSWORD or ~/.pgpass")
    if state == "3D000" or re.search(r'database "[^"]*" does not exist', low):
        return CatalogError(f"database {db} does not exist on {server}; create it (createdb -O {user} {db}, "
                            f"see the README's PostgreSQL section) or fix --db ({where})")
    if re.search(r'role "[^"]*" does not exist', low):
        return CatalogError(f"role {user} does not exist on {server}; create it (see the README's PostgreSQL "
                            f"section) or fix --db ({where})")
    if state == "28000" or "no pg_hba.conf entry" in low:
        return CatalogError(f"PostgreSQL at {server} does not let role {user} connect ({msg}); "
                            "ask its administrator to allow it in pg_hba.conf")
    if state == "55P03":  # lock_not_available: lock_timeout ran out
        return _busy(target)
    if state == "42501" and "schema public" in low:
        return CatalogError(
            f"role {user} may not create tables in schema public of database {db} (since PostgreSQL 15 only "
            f"the database owner may): create the catalogue as the owner (ALTER DATABASE {db} OWNER TO {user}) "
            f"or GRANT CREATE ON SCHEMA public TO {user}")
    if state == "42501":
        return CatalogError(f"role {user} lacks a right on catalogue {where} ({msg}): a role that reads needs "
                            f"GRANT SELECT ON ALL TABLES IN SCHEMA public TO {user}; index, forget and upgrade "
                            "with the role that owns the catalogue")
    if state == "25006":  # read_only_sql_transaction
        return CatalogError(f"database {db} on {server} only accepts reads ({msg}): a standby, or a role or "
                            "database with default_transaction_read_only; write through the primary server "
                            "with the owner role")
    if state == "25P03" or "idle-in-transaction" in low:
        return CatalogError(f"PostgreSQL at {server} ended a transaction left idle longer than "
                            "idle_in_transaction_session_timeout; nothing of it was kept; run the command again")
    if state == "53300":
        return CatalogError(f"PostgreSQL at {server} has no free connection slot (max_connections); "
                            "try again when fewer clients are connected")
    if state.startswith("57P") or state.startswith("08") or any(sign in low for sign in (
            "server closed the connection", "terminating connection", "connection is lost",
            "consuming input failed", "the connection is closed", "connection already closed",
            "ssl syscall error", "broken pipe", "connection reset")):
        return CatalogError(f"lost the connection to PostgreSQL at {server} (server stopped or restarted, or "
                            "the network failed); the unfinished transaction was rolled back; run the command again")
    return None

