"""Rows out: the formats every command that prints rows shares.

Owns how a value is written (one representation everywhere: times as ISO
8601 UTC with a Z, stages as curators write them, 2 not 2.0) and the formats:

- ``table`` for people: a Rich table of at most `limit` rows, then one line
  saying how many more there are; values are never cut or read as markup,
  long ones fold onto the next line;
- ``csv`` / ``tsv`` (``headers=False`` drops the header row), ``json`` (one
  array) and ``jsonl`` (one object a line) for scripts: they stream, so a
  million rows take the memory of one.
"""

from __future__ import annotations

import csv
import json
import sys
from collections.abc import Iterable, Sequence
from datetime import date, datetime
from decimal import Decimal
from typing import Any, Optional, TextIO

FORMATS = ("table", "csv", "tsv", "json", "jsonl")
DEFAULT_LIMIT = 1000


def _is_stored_time(value: str) -> bool:
    # SQLAlchemy stores DateTime in SQLite as 'YYYY-MM-DD HH:MM:SS[.ffffff]'.
    return (19 <= len(value) <= 26 and value[4] == "-" and value[7] == "-" and value[10] == " "
            and value[13] == ":" and value[16] == ":" and value[:4].isdigit() and value[11:13].isdigit())


def plain(value: Any) -> Any:
    """A value as JSON should carry it: numbers stay numbers, times become
    ISO 8601 UTC text, integral floats become integers."""
    if isinstance(value, float):
        return int(value) if value.is_integer() else value
    if isinstance(value, Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%dT%H:%M:%SZ")
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, str) and _is_stored_time(value):
        return f"{value[:10]}T{value[11:19]}Z"
    if isinstance(value, (bytes, memoryview)):
        return bytes(value).hex()
    return value


def text(value: Any) -> str:
    """A value as a table or CSV cell ('' for NULL)."""
    if value is None:
        return ""
    value = plain(value)
    return value if isinstance(value, str) else str(value)


def write_rows(columns: Sequence[str], rows: Iterable[Sequence], fmt: str, *, out: Optional[TextIO] = None,
               limit: Optional[int] = DEFAULT_LIMIT, headers: bool = True,
               console_width: Optional[int] = None) -> int:
    """Write rows in `fmt`; returns how many rows there were. `limit` only
    applies to tables (None: all rows)."""
    out = out or sys.stdout
    if fmt in ("csv", "tsv"):
        writer = csv.writer(out, lineterminator="\n", delimiter="\t" if fmt == "tsv" else ",")
        if headers:
            writer.writerow(columns)
        n = 0
        for row in rows:
            writer.writerow([text(v) for v in row])
            n += 1
        return n
    if fmt == "json":
        n = 0
        out.write("[")
        for row in rows:
            out.write(("," if n else "") + "\n" + _json_object(columns, row))
            n += 1
        out.write("\n]\n" if n else "]\n")
        return n
    if fmt == "jsonl":
        n = 0
        for row in rows:
            out.write(_json_object(columns, row) + "\n")
            n += 1
        return n
    return _table(columns, rows, out, limit, console_width)


def _json_object(columns: Sequence[str], row: Sequence) -> str:
    return json.dumps({c: plain(v) for c, v in zip(columns, row)}, default=str, ensure_ascii=False)


def _table(columns: Sequence[str], rows: Iterable[Sequence], out: TextIO, limit: Optional[int],
           console_width: Optional[int]) -> int:
    from rich.console import Console
    from rich.table import Table
    from rich.text import Text

    shown: list[list[str]] = []
    it = iter(rows)
    for row in it:
        shown.append([text(v) for v in row])
        if limit is not None and len(shown) >= limit:
            break
    more = sum(1 for _ in it)  # counted, not kept: memory stays that of `limit` rows

    table = Table(show_lines=False)
    for c in columns:
        # Text, not str: a value like `IMG_[v2].png` is not Rich markup.
        table.add_column(Text(c), overflow="fold")
    for cells in shown:
        table.add_row(*(Text(v) for v in cells))
    console = Console(file=out)
    if console_width is None and not console.is_terminal:
        # Piped or captured: as wide as the widest row needs, so nothing
        # folds and nothing is padded; no terminal width to respect.
        widths = [max([len(c)] + [max(map(len, cells[k].splitlines() or [""])) for cells in shown])
                  for k, c in enumerate(columns)]
        console_width = sum(widths) + 3 * len(widths) + 1
    if console_width is not None:
        console = Console(file=out, width=max(console_width, 20))
    console.print(table)
    if more:
        out.write(f"... {more:,} more row{'s' if more != 1 else ''}; use --all, or -f csv or -f json for all\n")
    return len(shown) + more
