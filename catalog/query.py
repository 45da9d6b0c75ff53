"""`catalog sql`: one ad-hoc, read-only statement over the catalogue.

Owns the read-only guarantee on every backend: SQLite is opened with
mode=ro plus query_only plus an authorizer (no ATTACH, no writing pragmas,
no load_extension); PostgreSQL runs in a read-only session and transaction,
never as a superuser, with the statement sent through the extended protocol
(see catalog/dialects.py, `PostgresQuery`). Both are always rolled back.
Exactly one statement is accepted per call: counted here for a clear message,
and enforced by the driver (SQLite) or the server (PostgreSQL).
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Optional

from .database import open_sqlite_reader, sqlite_path
from .errors import QUERY_STOPPED, CatalogError, UsageError

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

# Messages by which each backend says "you tried to write".
_READ_ONLY_SIGNS = ("readonly", "read-only", "read only", "not authorized", "query_only")


def read_query(arg: str) -> str:
    """QUERY as given: `-` reads stdin, `@file.sql` reads that file."""
    if arg == "-":
        return sys.stdin.read()
    if arg.startswith("@"):
        path = Path(arg[1:])
        try:
            return path.read_text(encoding="utf-8")
        except FileNotFoundError:
            raise UsageError(f"query file {path} does not exist") from None
        except (OSError, UnicodeDecodeError) as exc:
            raise UsageError(f"cannot read query file {path}: {exc}") from None
    return arg


def _in_identifier(sql: str, i: int) -> bool:
    """Whether the character before position i continues an identifier."""
    return i > 0 and (sql[i - 1].isalnum() or sql[i - 1] in "_$")


def split_statements(sql: str) -> list[str]:
    """Split on `;` outside quotes, comments and PostgreSQL dollar quotes;
    empty statements are dropped. In PostgreSQL's escape strings (E'...')
    a backslash escapes the next character, quote included."""
    parts, buf = [], []
    i, n = 0, len(sql)
    while i < n:
        c = sql[i]
        if c in ("'", '"', "`"):
            escapes = c == "'" and i > 0 and sql[i - 1] in "eE" and not _in_identifier(sql, i - 1)
            j = i + 1
            while j < n:
                if escapes and sql[j] == "\\":
                    j += 2
                    continue
                if sql[j] == c:
                    if j + 1 < n and sql[j + 1] == c:  # doubled quote inside
                        j += 2
                        continue
                    break
                j += 1
            buf.append(sql[i:j + 1])
            i = j + 1
        elif sql.startswith("--", i):
            j = sql.find("\n", i)
            i = n if j < 0 else j
        elif sql.startswith("/*", i):
            j = sql.find("*/", i + 2)
            i = n if j < 0 else j + 2
            buf.append(" ")
        elif c == "$" and not _in_identifier(sql, i):
            j = sql.find("$", i + 1)
            tag = sql[i:j + 1] if j > 0 else ""
            if tag and (tag == "$$" or tag[1:-1].isidentifier()):
                k = sql.find(tag, j + 1)
                k = n if k < 0 else k + len(tag)
                buf.append(sql[i:k])
                i = k
            else:
                buf.append(c)
                i += 1
        elif c == ";":
            parts.append("".join(buf))
            buf = []
            i += 1
        else:
            buf.append(c)
            i += 1
    parts.append("".join(buf))
    return [p.strip() for p in parts if p.strip()]


def one_statement(sql: str) -> str:
    statements = split_statements(sql)
    if not statements:
        raise UsageError("the query is empty; give one SQL statement")
    if len(statements) > 1:
        raise UsageError(f"one statement per call, found {len(statements)}; run them one by one")
    return statements[0]


def describe_error(exc: Exception) -> CatalogError:
    """A database error (SQLAlchemy's, or sqlite3's own) as one line."""
    orig = getattr(exc, "orig", None) or exc
    msg = " ".join(str(orig).split()) or type(orig).__name__
    if "cannot insert multiple commands" in msg:  # PostgreSQL's parser found a second statement
        return UsageError(f"one statement per call, the server found more ({msg}); run them one by one")
    if any(sign in msg.lower() for sign in _READ_ONLY_SIGNS):
        return CatalogError(f"read-only: catalog sql cannot change the catalogue ({msg})")
    return CatalogError(msg)


def _timed_out(timeout: Optional[float]) -> CatalogError:
    return CatalogError(f"the query ran past --timeout {timeout:g} s and was stopped; "
                        "narrow it or give a longer --timeout")


@contextmanager
def run_sql(target: str, sql: str, *, timeout: Optional[float] = None) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """Yield (column names, row iterator) for one read-only statement; the
    rows stream while the caller iterates. Ctrl-C stops the query (raised as
    KeyboardInterrupt); so does `timeout` seconds (a CatalogError).

    A SQLite catalogue is read through the sqlite3 module (`sqlite_statement`),
    every other backend through SQLAlchemy (`engine_statement`): the same
    guards, rows and errors, without SQLAlchemy's 0.3 s of imports where it
    adds nothing (README, "Start-up")."""
    statement = one_statement(sql)
    if sqlite_path(target) is not None:
        with sqlite_statement(open_sqlite_reader(target), statement, timeout=timeout) as found:
            yield found
        return
    from .database import open_catalog

    with engine_statement(open_catalog(target, write=False), sql, statement, timeout=timeout) as found:
        yield found


@contextmanager
def sqlite_statement(con: sqlite3.Connection, statement: str, *,
                     timeout: Optional[float] = None) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """One statement on a read-only sqlite3 connection (database.open_sqlite_reader),
    in a transaction that is rolled back; the connection is closed after."""
    from .dialects import QueryLimit  # no SQLAlchemy import

    limit = QueryLimit(timeout)
    try:
        con.execute("BEGIN")
        con.set_progress_handler(limit.should_stop, 10_000)
        try:
            with limit.catching_ctrl_c():
                cursor = con.cursor()
                cursor.execute(statement, ())  # no parameters, as SQLAlchemy's exec_driver_sql sends it
                if cursor.description is None:
                    yield [], iter(())
                else:
                    yield [d[0] for d in cursor.description], iter(cursor)
        except sqlite3.Error as exc:
            if limit.interrupted:
                raise KeyboardInterrupt from None
            if limit.expired:
                raise _timed_out(timeout) from None
            raise describe_error(exc) from None
        finally:
            con.rollback()
    finally:
        con.close()


@contextmanager
def engine_statement(engine: Engine, sql: str, statement: str, *,
                     timeout: Optional[float] = None) -> Iterator[tuple[list[str], Iterator[tuple]]]:
    """One statement through a SQLAlchemy engine (PostgreSQL, or any other
    URL); the engine is disposed of after."""
    from sqlalchemy.exc import SQLAlchemyError

    from . import dialects

    limit = dialects.QueryLimit(timeout)
    try:
        with engine.connect() as conn:
            conn.begin()
            limit.apply(conn)
            try:
                with limit.catching_ctrl_c(on_stuck=_stopped_anyway):
                    if dialects.is_postgres(conn):
                        query = dialects.PostgresQuery(conn)
                        query.preflight(timeout)
                        # The text as given: the server itself counts the statements.
                        columns, rows = query.run(sql.strip())
                    else:
                        result = conn.exec_driver_sql(statement)
                        columns = list(result.keys()) if result.returns_rows else []
                        rows = iter(result) if result.returns_rows else iter(())
                    yield columns, rows
            except SQLAlchemyError as exc:
                _roll_back_quietly(conn)
                if limit.interrupted:
                    raise KeyboardInterrupt from None
                if limit.expired or "statement timeout" in str(exc):
                    raise _timed_out(timeout) from None
                raise describe_error(exc) from None
            except KeyboardInterrupt:
                # Ctrl-C on PostgreSQL: the driver has sent the server a
                # cancel. A rollback would wait for the statement to end
                # (seconds, on a busy server), so the connection is closed
                # instead; the server ends the statement and rolls back.
                # The interrupt is what happened, not the lost connection.
                with contextlib.suppress(Exception):
                    conn.invalidate()
                raise
            except BaseException:
                _roll_back_quietly(conn)
                raise
            else:
                conn.rollback()
    finally:
        engine.dispose()


def _stopped_anyway() -> None:
    """Ctrl-C came and the driver is still waiting on the server: end the
    process; closing its socket makes the server end the statement."""
    sys.stderr.write(f"catalog: error: interrupted; {QUERY_STOPPED}\n")
    sys.stderr.flush()
    os._exit(130)


def _roll_back_quietly(conn) -> None:
    from sqlalchemy.exc import SQLAlchemyError

    with contextlib.suppress(SQLAlchemyError):  # the connection went with the error being reported
        conn.rollback()
