"""The one place for backend-specific SQL: SQLite pragmas and locking, and the
read-only guards of `catalog sql` on SQLite and PostgreSQL.

Everything else in the package speaks portable SQLAlchemy Core or plain SQL;
if a statement only one backend understands is needed, it goes here.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Optional
from urllib.parse import quote

from sqlalchemy import event
from sqlalchemy.engine import Connection, Engine

from . import faults

# Long enough for a second `catalog index` to wait out a typical project sync
# (tens of seconds at 20K images), short enough to fail clearly when stuck.
BUSY_TIMEOUT_S = 120.0


def is_sqlite(engine_or_conn) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def configure_sqlite(engine: Engine, *, readonly: bool = False) -> None:
    """WAL, foreign keys, a busy timeout, and transactions we control.

    pysqlite's own transaction handling starts a transaction only at the first
    write, so a sync's reads would happen outside it. We switch the driver to
    autocommit and issue BEGIN ourselves: writers take BEGIN IMMEDIATE (the
    write lock up front, so two syncs serialize instead of racing on a stale
    read); readers take a plain BEGIN, a consistent WAL snapshot.
    """

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute(f"PRAGMA busy_timeout = {int(BUSY_TIMEOUT_S * 1000)}")
        cur.execute("PRAGMA foreign_keys = ON")
        if readonly:
            cur.execute("PRAGMA query_only = ON")
            # Last, because it refuses the pragmas above.
            dbapi_conn.set_authorizer(_readonly_authorizer)
        else:
            cur.execute("PRAGMA journal_mode = WAL")
            # In WAL, NORMAL keeps every commit atomic and consistent after a
            # crash; only the last commits may be lost on power failure.
            cur.execute("PRAGMA synchronous = NORMAL")
            # 64 MiB of page cache: a project sync touches every page of the
            # images indexes; the 2 MiB default makes it re-read them.
            cur.execute("PRAGMA cache_size = -65536")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        conn.exec_driver_sql("BEGIN" if readonly else "BEGIN IMMEDIATE")


# Any constant will do; it only has to be the same for every catalog process.
_SYNC_LOCK_KEY = 0x6361_7461_6C6F_67  # "catalog"


def begin_sync(conn: Connection) -> None:
    """Serialize project syncs. SQLite already did, with BEGIN IMMEDIATE;
    PostgreSQL takes a transaction-scoped advisory lock."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_SYNC_LOCK_KEY})")


def sqlite_readonly_creator(path: str):
    """A connection factory that opens the file read-only at the OS level."""
    uri = "file:" + quote(path) + "?mode=ro"

    def connect():
        return sqlite3.connect(uri, uri=True, timeout=BUSY_TIMEOUT_S, check_same_thread=False)

    return connect


# Pragmas that only read, even when given an argument (a table name).
_READ_PRAGMAS = frozenset({
    "table_info", "table_xinfo", "index_list", "index_info", "index_xinfo",
    "foreign_key_list", "integrity_check", "quick_check", "database_list",
    "compile_options", "collation_list", "function_list", "pragma_list",
    "table_list", "foreign_key_check",
})


def _readonly_authorizer(action, arg1, arg2, _db, _trigger):
    # Belt and braces over mode=ro: ATTACH can create files elsewhere, and
    # some pragmas (writable_schema, journal_mode) change state without a write.
    if action in (sqlite3.SQLITE_ATTACH, sqlite3.SQLITE_DETACH):
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_PRAGMA:
        if arg2 is None or arg1.lower() in _READ_PRAGMAS:
            return sqlite3.SQLITE_OK
        return sqlite3.SQLITE_DENY
    if action == sqlite3.SQLITE_FUNCTION and arg2 and arg2.lower() == "load_extension":
        return sqlite3.SQLITE_DENY
    return sqlite3.SQLITE_OK


def begin_read_only(conn: Connection) -> None:
    """Make the transaction just begun on `conn` read-only on PostgreSQL."""
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql("SET TRANSACTION READ ONLY")


class QueryLimit:
    """Stops a running query on Ctrl-C or after `timeout` seconds.

    SQLite runs a query inside one C call, where Python's own Ctrl-C handling
    never gets a turn; a progress handler, called every few thousand virtual
    machine steps, asks this object whether to go on. PostgreSQL gets a
    `statement_timeout`, and psycopg cancels the server-side query itself on
    Ctrl-C.
    """

    def __init__(self, timeout: Optional[float] = None):
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interrupted = False
        self.expired = False

    def should_stop(self) -> int:
        faults.reach("query_running")
        if self.interrupted:
            return 1
        if self.deadline is not None and time.monotonic() > self.deadline:
            self.expired = True
            return 1
        return 0

    def apply(self, conn: Connection) -> None:
        if conn.dialect.name == "sqlite":
            raw = conn.connection.dbapi_connection
            assert raw is not None
            raw.set_progress_handler(self.should_stop, 10_000)
        elif conn.dialect.name == "postgresql" and self.timeout is not None:
            conn.exec_driver_sql(f"SET LOCAL statement_timeout = {int(self.timeout * 1000)}")

    @contextmanager
    def catching_ctrl_c(self) -> Iterator[None]:
        """While the query runs, Ctrl-C asks it to stop instead of being lost in C."""
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def on_sigint(_signum, _frame):
            if self.interrupted:  # a second Ctrl-C: stop waiting politely
                raise KeyboardInterrupt
            self.interrupted = True

        previous = signal.signal(signal.SIGINT, on_sigint)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)
