"""Open the catalogue: resolve --db, create engines, keep the schema at head.

Owns the rules around the database file: a file path or a SQLAlchemy URL;
a missing database is created only by commands that write; a database that
is behind is upgraded by Alembic before use; one stamped with a revision this
code does not know, a corrupt file or another program's database is refused
before anything is written. Database errors become one-line CatalogErrors.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Optional

from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from . import dialects
from .errors import CatalogError, UsageError
from .schema import HEAD_REVISION

DEFAULT_DB = "catalog.db"


def is_url(target: str) -> bool:
    return "://" in target


def sqlite_path(target: str) -> Optional[str]:
    """The file behind a SQLite target, or None for other backends / memory."""
    if not is_url(target):
        return target
    if target.startswith("sqlite:///") and len(target) > len("sqlite:///"):
        return target[len("sqlite:///"):].split("?", 1)[0]
    return None


def open_engine(target: str, *, readonly: bool = False) -> Engine:
    """An engine with the catalogue's connection settings; no checks."""
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
    try:
        return create_engine(target)
    except (SQLAlchemyError, ImportError, ValueError) as exc:
        raise UsageError(f"cannot use database URL {target!r}: {exc}") from None


def _check_sqlite_file(path: str, *, must_exist: bool) -> None:
    p = Path(path)
    if p.is_dir():
        raise UsageError(f"database {path} is a folder; give a file path with --db")
    if not p.parent.exists():
        raise UsageError(f"folder of database {path} does not exist; create it or choose another --db")
    if must_exist and not p.exists():
        raise UsageError(f"no catalogue at {path}; run `catalog index PATH` first or pass --db")


def current_revision(conn: Connection) -> Optional[str]:
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
            f"database {target} was written by a newer catalog (schema revision {revision}); "
            "upgrade catalog before using it"
        )


def upgrade(engine: Engine, target: str) -> tuple[Optional[str], str]:
    """Bring the schema to head in one transaction; returns (before, after)."""
    with engine.begin() as conn:
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
    """A read-only engine, or None when the SQLite file does not exist yet
    (for --dry-run, which must not create it)."""
    path = sqlite_path(target)
    if path is not None and not os.path.exists(path):
        return None
    return _open(target, False, may_upgrade=False)[0]


def current(target: str) -> str:
    """`catalog db current`: the schema revision, read without creating,
    migrating or writing anything."""
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
        raise UsageError(f"no catalogue in {target} yet; run `catalog index PATH` first")
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
                raise UsageError(f"no catalogue in {target} yet; run `catalog index PATH` first")
            if not may_upgrade:
                raise UsageError(f"catalogue {target} has an older schema; run `catalog db upgrade` first")
            # A reader upgrades through a short-lived writable engine, then reads read-only.
            writer = engine if write else open_engine(target)
            try:
                upgrade(writer, target)
            finally:
                if writer is not engine:
                    writer.dispose()
        return engine, revision
    except SQLAlchemyError as exc:
        raise describe_db_error(exc, target) from None


def describe_db_error(exc: BaseException, target: str) -> CatalogError:
    """One line a user can act on, for the database failures people really hit."""
    orig = getattr(exc, "orig", None) or exc
    msg = str(orig).strip().splitlines()[0] if str(orig).strip() else type(orig).__name__
    low = msg.lower()
    if "file is not a database" in low or "malformed" in low:
        return CatalogError(f"database {target} is corrupt or not SQLite ({msg}); move it aside or choose another --db")
    if "locked" in low or "busy" in low:
        return CatalogError(
            f"database {target} is busy: another catalog run is writing it; try again when it has finished"
        )
    if "readonly" in low or "read-only" in low or "unable to open" in low:
        return CatalogError(
            f"cannot write database {target} ({msg}): the file or its folder is read-only; choose a writable --db"
        )
    return CatalogError(f"database error on {target}: {msg}")


def executemany(conn: Connection, stmt, rows: list, columns: Optional[Sequence[str]] = None) -> None:
    """Run a Core INSERT/UPDATE/DELETE for many rows in one driver executemany.

    Same statement and type conversions as `conn.execute(stmt, rows)`, but
    compiled once and bound with only the conversions the dialect needs:
    SQLAlchemy's general path spends more time per row than SQLite spends
    writing it, and bulk writes of 100K images are the index's hot path.
    `rows` are dicts, or tuples in the order of `columns`.
    """
    if not rows:
        return
    if columns is None:
        columns = list(rows[0])
        rows = [tuple(r[c] for c in columns) for r in rows]
    dialect = conn.dialect
    compiled = stmt.compile(dialect=dialect, column_keys=list(columns))
    names = list(compiled.positiontup) if compiled.positional else list(compiled.binds)
    where = [list(columns).index(n) for n in names]
    convert = [
        (k, proc) for k, n in enumerate(names)
        if (proc := compiled.binds[n].type.dialect_impl(dialect).bind_processor(dialect)) is not None
    ]
    if where == list(range(len(columns))) and not convert:
        params = rows
    else:
        params = []
        for row in rows:
            values = [row[i] for i in where]
            for k, proc in convert:
                if values[k] is not None:
                    values[k] = proc(values[k])
            params.append(tuple(values))
    if not compiled.positional:
        params = [dict(zip(names, p)) for p in params]
    conn.exec_driver_sql(compiled.string, params)

