"""The one place for backend-specific SQL: SQLite pragmas and locking,
PostgreSQL session settings and locks, and the read-only guards of
`catalog sql` on both.

Everything else in the package speaks portable SQLAlchemy Core or plain SQL;
if a statement only one backend understands is needed, it goes here.

PostgreSQL, in short (the README's "PostgreSQL" section is the user's view):

- every session gets limits (`postgres_options`): how long to wait for a
  lock, for an idle transaction, for a vanished client, all in UTC;
- writers run READ COMMITTED; a sync plans without a lock, then locks its
  project's row (`lock_projects`) for the write, so machines syncing
  different projects write at once; new ids come from sequences
  (`reserve_ids`); schema upgrades
  take an advisory lock (`lock_schema`) so that first runs on an empty
  database queue up instead of colliding;
- `catalog sql` runs in a read-only session, as a non-superuser, through the
  extended protocol (one statement, enforced by the server; `%` is plain
  text), see `PostgresQuery`.
"""

from __future__ import annotations

import signal
import sqlite3
import threading
import time
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Optional
from urllib.parse import quote

from . import faults
from .errors import CatalogError

if TYPE_CHECKING:
    from sqlalchemy.engine import Connection, Engine

# SQLAlchemy is imported inside the functions that use it: `catalog sql` on
# a SQLite file sets up its sqlite3 connection with `setup_sqlite` below and
# never imports SQLAlchemy (catalog/database.py `open_sqlite_reader`).

# Long enough for a second `catalog index` to wait out a typical project sync
# (tens of seconds at 20K images), short enough to fail clearly when stuck.
BUSY_TIMEOUT_S = 120.0


def is_sqlite(engine_or_conn) -> bool:
    return engine_or_conn.dialect.name == "sqlite"


def is_postgres(engine_or_conn) -> bool:
    return engine_or_conn.dialect.name == "postgresql"


def configure_sqlite(engine: Engine, *, readonly: bool = False) -> None:
    """WAL, foreign keys, a busy timeout, and transactions we control.

    pysqlite's own transaction handling starts a transaction only at the first
    write, so a sync's reads would happen outside it. We switch the driver to
    autocommit and issue BEGIN ourselves: writers take BEGIN IMMEDIATE (the
    write lock up front, so two syncs serialize instead of racing on a stale
    read); readers take a plain BEGIN, a consistent WAL snapshot.
    """

    from sqlalchemy import event

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record):
        setup_sqlite(dbapi_conn, readonly=readonly)

    @event.listens_for(engine, "begin")
    def _on_begin(conn):
        plain = readonly or conn.get_execution_options().get(READ_FIRST, False)
        conn.exec_driver_sql("BEGIN" if plain else "BEGIN IMMEDIATE")


def setup_sqlite(dbapi_conn: sqlite3.Connection, *, readonly: bool) -> None:
    """The settings of every catalogue connection on SQLite, whether SQLAlchemy
    opened it or `catalog sql` did with sqlite3 alone."""
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
        # 32 MiB of page cache: a project sync touches every page of its
        # part of the images indexes; the 2 MiB default makes it re-read
        # them. More only adds to the memory of a large catalogue's run.
        cur.execute("PRAGMA cache_size = -32768")
    cur.close()


# Execution option of a writer's connection whose transactions only read
# (a sync's planning): SQLite begins them without taking the write lock.
READ_FIRST = "catalog_read_first"


def reading(conn: Connection) -> Connection:
    """Make `conn`'s transactions plain reads (call before the first
    statement): a sync plans without holding any lock, see `lock_projects`."""
    return conn.execution_options(**{READ_FIRST: True})


# ---------------------------------------------------------------- PostgreSQL sessions

# A server that accepts the connection and never answers is given this long.
CONNECT_TIMEOUT_S = 10
# A transaction left idle this long is ended by the server, releasing its
# locks. A sync scans the folders inside its transaction (nothing is sent
# meanwhile), so this must outlast the slowest scan of one project.
IDLE_IN_TRANSACTION_S = 15 * 60
# How often a running query checks that its client is still there, so a
# killed `catalog sql` does not leave its query running (PostgreSQL 14+).
CLIENT_CHECK_S = 2
# TCP keepalives, both ways: a machine that vanishes (power cut, network
# gone) is noticed within about a minute and a half, and its locks released.
KEEPALIVE = {"idle": 30, "interval": 10, "count": 6}


def postgres_options(*, readonly: bool) -> str:
    """Session settings for every catalog connection, as libpq `options`
    (sent with the connection request: no extra round trip)."""
    settings = {
        "TimeZone": "UTC",  # times are UTC everywhere; timestamptz values print as such
        "lock_timeout": f"{int(BUSY_TIMEOUT_S * 1000)}",
        "idle_in_transaction_session_timeout": f"{IDLE_IN_TRANSACTION_S * 1000}",
        "client_connection_check_interval": f"{CLIENT_CHECK_S * 1000}",
        "tcp_keepalives_idle": str(KEEPALIVE["idle"]),
        "tcp_keepalives_interval": str(KEEPALIVE["interval"]),
        "tcp_keepalives_count": str(KEEPALIVE["count"]),
    }
    if readonly:
        # Every transaction of the session, also one begun after a COMMIT.
        settings["default_transaction_read_only"] = "on"
    return " ".join(f"-c {name}={value}" for name, value in settings.items())


def postgres_connect_args(*, readonly: bool) -> dict[str, Any]:
    """libpq connection parameters (a URL's own query parameters win, see
    catalog/database.py)."""
    return {
        "connect_timeout": CONNECT_TIMEOUT_S,
        "application_name": "catalog",
        "keepalives": 1,
        "keepalives_idle": KEEPALIVE["idle"],
        "keepalives_interval": KEEPALIVE["interval"],
        "keepalives_count": KEEPALIVE["count"],
        "options": postgres_options(readonly=readonly),
    }


# Writers read committed data after taking the sync lock (a database whose
# default is REPEATABLE READ would hand them the snapshot of before the lock:
# stale max(id), duplicate keys). Readers get one snapshot for everything a
# command reads, as SQLite readers do.
POSTGRES_ISOLATION = {False: "READ COMMITTED", True: "REPEATABLE READ"}


def configure_postgres(engine: Engine, *, readonly: bool) -> None:
    from sqlalchemy import event

    if readonly:
        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):
            # BEGIN ... READ ONLY on top of the session default above.
            dbapi_conn.read_only = True


# ---------------------------------------------------------------- locks

# Any constant will do; it only has to be the same for every catalog process.
SCHEMA_LOCK_KEY = 0x6361_7461_6C6F_67  # "catalog"


def lock_schema(conn: Connection) -> None:
    """Serialize schema creation and upgrades (until the transaction ends).

    SQLite: the upgrade's transaction is BEGIN IMMEDIATE already. PostgreSQL:
    CREATE TABLE by two sessions at once fails on the system catalogues'
    unique keys, so upgraders queue on an advisory lock; the caller re-reads
    the revision after it. The wait is bounded by lock_timeout.
    """
    if is_postgres(conn):
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({SCHEMA_LOCK_KEY})")


def lock_projects(conn: Connection, project_ids: Iterable[int]) -> None:
    """Serialize writes to these projects until the transaction ends: the
    write of a sync (and forget, and crops). A sync plans first without any
    lock, then takes this one and checks the project's generation
    (catalog/index.py).

    SQLite has one writer per file: the transaction is BEGIN IMMEDIATE
    already, so syncs of different projects take turns (each holds the file
    only for its write, not its scan). PostgreSQL locks the projects' rows
    (SELECT ... FOR UPDATE, in id order so that two lockers cannot
    deadlock): a sync of another project goes on at the same time. A row
    lock rather than an advisory lock, because it needs UPDATE rights on
    `projects` and is refused in a read-only transaction: a SELECT-only
    role, or anyone using `catalog sql`, cannot take it and stall the
    indexers (any role can take any advisory lock). The wait is bounded by
    lock_timeout and ends in the same "busy" error as SQLite's.
    """
    from sqlalchemy import bindparam, text

    ids = sorted(set(project_ids))
    if is_postgres(conn) and ids:
        conn.execute(text("SELECT id FROM projects WHERE id IN :ids ORDER BY id FOR UPDATE")
                     .bindparams(bindparam("ids", expanding=True)), {"ids": ids})


def create_project(conn: Connection, projects_table, values: dict) -> bool:
    """Insert a project row unless one of that name exists; True if this
    call inserted it. On PostgreSQL two machines may create the same project
    at once: ON CONFLICT waits for the other's transaction and then does
    nothing (or inserts, if it rolled back). SQLite's writer is alone, a
    plain INSERT will do."""
    if is_postgres(conn):
        from sqlalchemy.dialects.postgresql import insert

        # RETURNING, not rowcount: a row comes back only if this call inserted.
        inserted = conn.execute(insert(projects_table).values(**values)
                                .on_conflict_do_nothing(index_elements=["name"])
                                .returning(projects_table.c.id)).first()
        return inserted is not None
    conn.execute(projects_table.insert().values(**values))
    return True


# PostgreSQL sequences of new ids (migrations/versions/0006_project_locks.py).
ID_SEQUENCES = {"images": "image_ids", "image_groups": "group_ids"}


def reserve_ids(conn: Connection, table, n: int) -> list[int]:
    """`n` unused ids of `table` (images or image_groups), ascending.

    Ids are given by the sync rather than returned by the database, so that
    groups and matches can name new images before they are written (and a
    RETURNING of many rows is one statement per row on some drivers).
    SQLite: max(id) + 1 onwards, read inside the write transaction, which
    no other writer shares. PostgreSQL: from the table's sequence, since
    syncs of other projects insert at the same time; the ids need not be
    consecutive, only unused (a rolled-back sync leaves a gap).
    """
    from sqlalchemy import func, select

    if n <= 0:
        return []
    if is_postgres(conn):
        sequence = ID_SEQUENCES[table.name]
        rows = conn.exec_driver_sql(f"SELECT nextval('{sequence}') FROM generate_series(1, {int(n)})").all()
        return sorted(r[0] for r in rows)
    first = (conn.execute(select(func.max(table.c.id))).scalar() or 0) + 1
    return list(range(first, first + n))


# What identifies an image's path in the images key on PostgreSQL (a btree
# entry holds at most ~2.7 KB; a path may be longer): see catalog/schema.py
# and migrations/versions/0005_path_digest.py.
POSTGRES_PATH_KEY = "md5(rel_path)"


def may_write(conn: Connection) -> bool:
    """Whether this session may write the catalogue: always on SQLite (a
    read-only file fails at the first write with its own message); on
    PostgreSQL, the role's rights on the tables a sync writes, in a session
    that is not read-only (a standby, or default_transaction_read_only)."""
    if not is_postgres(conn):
        return True
    row = conn.exec_driver_sql(
        "SELECT pg_catalog.has_table_privilege('projects', 'UPDATE')"
        " AND pg_catalog.has_table_privilege('images', 'INSERT, UPDATE, DELETE'),"
        " pg_catalog.current_setting('transaction_read_only')").one()
    return bool(row[0]) and row[1] == "off"


# ---------------------------------------------------------------- ORDER BY


def byte_order(conn: Connection) -> str:
    """A COLLATE clause that makes text compare by code point on this backend
    (SQLite's default, BINARY; PostgreSQL's "C"), so that ORDER BY and
    MIN/MAX give the same order whatever the database's collation."""
    return ' COLLATE "C"' if is_postgres(conn) else ""


def byte_ordered(conn: Connection, column):
    """`column` (a Core expression) compared in code point order, for
    `order_by`: the Core spelling of `byte_order`."""
    return column.collate("C") if is_postgres(conn) else column


# ---------------------------------------------------------------- catalog sql: SQLite


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


# ---------------------------------------------------------------- catalog sql: PostgreSQL

# Roles whose members may read or write server files and run programs, which
# a read-only transaction does not stop (COPY ... TO '/file', TO PROGRAM).
_SERVER_FILE_ROLES = ("pg_read_server_files", "pg_write_server_files", "pg_execute_server_program")

# One round trip before the user's statement: who we are, proof that the
# transaction is read-only, and the statement timeout. Being a query, it also
# takes the transaction's snapshot, after which SET TRANSACTION READ WRITE is
# refused by the server.
_PREFLIGHT = """
SELECT current_user,
       r.rolsuper,
       {server_files},
       current_setting('transaction_read_only'),
       {timeout}
FROM pg_catalog.pg_roles r
WHERE r.rolname = current_user
"""


class PostgresQuery:
    """One statement of `catalog sql` on PostgreSQL.

    The statement is sent as the user wrote it, through the extended query
    protocol: the server parses it as one prepared statement and refuses a
    second one ("cannot insert multiple commands into a prepared statement"),
    whatever a client-side splitter makes of quotes; no parameters are bound,
    so `%` and `$1` are plain text. The session is read-only (every
    transaction of it, see `postgres_options`) and the transaction too, and a
    superuser (or a member of the server-file roles) is refused, because
    reading and writing server files and running programs is not stopped by
    read-only transactions. Rows stream from the server one at a time.
    """

    def __init__(self, conn: Connection):
        self.conn = conn
        raw = conn.connection.dbapi_connection
        assert raw is not None
        self.raw: Any = raw

    def preflight(self, timeout: Optional[float]) -> None:
        server_files = " OR ".join(f"pg_catalog.pg_has_role(current_user, '{r}', 'MEMBER')"
                                   for r in _SERVER_FILE_ROLES)
        # Without --timeout, whatever limit the session has (a role's or a
        # database's statement_timeout set by an administrator) stays.
        limit = ("current_setting('statement_timeout')" if timeout is None
                 else f"set_config('statement_timeout', '{max(1, int(timeout * 1000))}', true)")
        sql = _PREFLIGHT.format(server_files=server_files, timeout=limit)
        row = self.conn.execution_options(no_parameters=True).exec_driver_sql(sql).one()
        user, superuser, server_file_member, read_only, _ = row
        if superuser or server_file_member:
            what = "a superuser" if superuser else "a member of " + "/".join(_SERVER_FILE_ROLES)
            raise CatalogError(
                f"catalog sql refuses to run as PostgreSQL role {user}, {what}: it can read and write server "
                "files and run programs even in a read-only transaction; connect with a SELECT-only role "
                "(README, section PostgreSQL)")
        if read_only != "on":  # cannot happen: set by the session and by BEGIN
            raise CatalogError("catalog sql could not make the PostgreSQL transaction read-only; nothing was run")

    def run(self, statement: str) -> tuple[list[str], Iterator[tuple]]:
        """(column names, rows) of the statement; the rows stream while the
        caller iterates. Errors are psycopg's, wrapped as SQLAlchemy's."""
        import psycopg
        from psycopg import errors as pg_errors

        raw = self.raw
        encoding = raw.info.encoding
        query = statement.encode(encoding)
        try:
            # Parse and describe the unnamed statement first: the column
            # names, even of an empty result, and a server-side refusal of
            # more than one statement before anything runs.
            pgconn = raw.pgconn
            for result in (pgconn.prepare(b"", query), pgconn.describe_prepared(b"")):
                if result.status == psycopg.pq.ExecStatus.FATAL_ERROR:
                    raise pg_errors.error_from_result(result, encoding=encoding)
            columns = [result.fname(i).decode(encoding, "replace") for i in range(result.nfields)]
            cursor = raw.cursor()
            if not columns:
                cursor.execute(statement, prepare=True)  # extended protocol too
                return [], iter(())
            return columns, self._rows(cursor.stream(statement), statement)
        except psycopg.Error as exc:
            raise self._failed(exc, statement) from None

    def _rows(self, rows: Iterator[tuple], statement: str) -> Iterator[tuple]:
        import psycopg

        try:
            yield from rows
        except psycopg.Error as exc:
            raise self._failed(exc, statement) from None

    def _failed(self, exc: Exception, statement: str) -> Exception:
        """The error to raise; a session the error left mid-protocol (a
        COPY waiting for its data) is closed instead of rolled back."""
        import psycopg

        if self.raw.pgconn.transaction_status == psycopg.pq.TransactionStatus.ACTIVE:
            self.conn.invalidate()
            if "COPY" in str(exc):
                return CatalogError("catalog sql does not run COPY: SELECT the rows and write them with "
                                    "-f csv or -f tsv")
        return _wrapped(exc, statement)


def _wrapped(exc: Exception, statement: str):
    """A driver error as SQLAlchemy would have raised it."""
    import psycopg
    from sqlalchemy.exc import DBAPIError

    return DBAPIError.instance(statement, None, exc, psycopg.Error)


class QueryLimit:
    """Stops a running query on Ctrl-C or after `timeout` seconds.

    SQLite runs a query inside one C call, where Python's own Ctrl-C handling
    never gets a turn; a progress handler, called every few thousand virtual
    machine steps, asks this object whether to go on. PostgreSQL gets a
    `statement_timeout` (see `PostgresQuery.preflight`), and on Ctrl-C
    psycopg cancels the server-side query itself, so Ctrl-C is left to raise
    KeyboardInterrupt there.
    """

    def __init__(self, timeout: Optional[float] = None):
        self.timeout = timeout
        self.deadline = None if timeout is None else time.monotonic() + timeout
        self.interrupted = False
        self.expired = False
        self.cooperative = True  # the query asks should_stop as it runs

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
        else:
            self.cooperative = False

    # After Ctrl-C on a server's query the driver cancels it and the command
    # ends at once; should the driver hang on a server slow to answer, the
    # process ends anyway this long after the Ctrl-C (`on_stuck`).
    GRACE_S = 10.0

    def _watch(self, on_stuck) -> None:
        time.sleep(self.GRACE_S)  # a grace period, not a guess: the normal path exits long before
        on_stuck()

    @contextmanager
    def catching_ctrl_c(self, on_stuck=None) -> Iterator[None]:
        """While the query runs, Ctrl-C asks it to stop instead of being lost
        in C (SQLite), or is raised as usual with `on_stuck` armed (a server's
        query, see GRACE_S)."""
        if threading.current_thread() is not threading.main_thread() or (not self.cooperative and on_stuck is None):
            yield
            return
        if not self.cooperative:
            def on_server_sigint(_signum, _frame):
                if not self.interrupted:
                    self.interrupted = True
                    threading.Thread(target=self._watch, args=(on_stuck,), daemon=True).start()
                raise KeyboardInterrupt

            previous = signal.signal(signal.SIGINT, on_server_sigint)
            try:
                yield
            finally:
                signal.signal(signal.SIGINT, previous)
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
