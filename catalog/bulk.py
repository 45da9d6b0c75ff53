"""Bulk rows: the fast ways in and out of the database for the sync.

Owns `executemany` (one compiled statement, many rows, through the driver),
`fetch_tuples` (a query's rows as the driver's plain tuples, in one fetch)
and `chunks` (IN lists of a size every backend accepts). SQLAlchemy's general
result and parameter layers cost more per row than SQLite spends storing or
reading it; a sync moves hundreds of thousands of rows, so its hot paths
go through these three instead. Same statements, same type conversions.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from datetime import datetime
from typing import Any, Optional

from sqlalchemy import DateTime
from sqlalchemy.engine import Connection

# Bound parameters per statement stay far below SQLite's 32766 and
# PostgreSQL's 65535.
CHUNK = 500


def chunks(values: Sequence, size: int = CHUNK) -> Iterator[Sequence]:
    for start in range(0, len(values), size):
        yield values[start:start + size]


def fetch_tuples(conn: Connection, query, params: Optional[dict] = None) -> list[tuple]:
    """Every row of `query` as the driver returns it (SQLite: times as the
    stored text, see images.stored_datetime), in one fetchall."""
    result = conn.execute(query, params or {})
    try:
        return list(result.cursor.fetchall()) if result.cursor is not None else []
    finally:
        result.close()


def _sqlite_datetime(value: datetime) -> str:
    # What SQLAlchemy's SQLite DateTime stores ('2025-07-08 06:07:11.000000'),
    # at a tenth of its cost; tests/test_fastpaths.py holds the two equal.
    return value.isoformat(" ", "microseconds")


def bind_converter(conn_or_dialect: Any, type_) -> Optional[Callable[[Any], Any]]:
    """How a Python value of `type_` is sent to the driver on this backend."""
    dialect = getattr(conn_or_dialect, "dialect", conn_or_dialect)
    if dialect.name == "sqlite" and isinstance(type_, DateTime) and not type_.timezone:
        return _sqlite_datetime
    return type_.dialect_impl(dialect).bind_processor(dialect)


def time_converter(conn: Connection) -> Callable[[datetime], Any]:
    """How a naive datetime is sent to the driver on this connection's
    backend, for callers that build rows in the driver's form (see
    `executemany(converted=True)`): SQLite stores SQLAlchemy's text."""
    return bind_converter(conn, DateTime()) or _as_is


def _as_is(value: Any) -> Any:
    return value


def executemany(conn: Connection, stmt, rows: list, columns: Optional[Sequence[str]] = None, *,
                converted: bool = False) -> None:
    """Run a Core INSERT/UPDATE/DELETE for many rows in one driver executemany.

    Same statement and type conversions as `conn.execute(stmt, rows)`, but
    compiled once and bound with only the conversions the dialect needs.
    `rows` are dicts, or tuples in the order of `columns`; `converted`: their
    values are in the driver's form already (times through `time_converter`),
    so the hot loops that build them do not build every row a second time.
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
    convert = [] if converted else [
        (k, proc) for k, n in enumerate(names)
        if (proc := bind_converter(dialect, compiled.binds[n].type)) is not None
    ]
    if where == list(range(len(columns))) and not convert:
        params = rows
    elif len(convert) == 1 and where == list(range(len(columns))):
        # The common case (one time column): one conversion, no reordering.
        (k, proc), = convert
        params = [row if row[k] is None else (*row[:k], proc(row[k]), *row[k + 1:]) for row in rows]
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
