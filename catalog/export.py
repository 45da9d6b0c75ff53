"""Export: training rows in the formats the existing trainer reads.

Owns `selection_only_log.csv` (one row per decision: the winner and a JSON
array of its losers), `anomaly_cases.csv`, `--merge` into an existing log,
and writing files atomically (a temporary file beside OUT, then rename), so a
crash never leaves a truncated or half-merged log behind.
"""

from __future__ import annotations

import csv
import io
import json
import os
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, NamedTuple, Optional, Sequence, TextIO

from sqlalchemy.engine import Connection

from . import faults
from .errors import UsageError
from .names import format_stage
from .views import execute_for_projects

TRAINER_COLUMNS = ["session_id", "set_id", "chosen_path", "neg_paths", "timestamp"]
EXPORT_COLUMNS = TRAINER_COLUMNS + ["project", "chosen_stage", "max_stage", "is_anomaly"]
ANOMALY_COLUMNS = ["session_id", "set_id", "project", "chosen_stage", "max_rejected_stage",
                   "chosen_path", "rejected_paths", "timestamp"]


class Decision(NamedTuple):
    project: str
    set_id: str
    chosen_path: str
    chosen_stage: float
    max_stage: float
    is_anomaly: int
    timestamp: object
    loser_paths: list[str]
    loser_stages: list[float]


# One pass: each decision with its losers in (stage, filename) order, so the
# rows stream out without holding the catalogue in memory.
DECISIONS_SQL = """
SELECT d.project, d.set_id, p.sandbox_dir, d.chosen_path, d.chosen_stage, d.max_stage,
       d.is_anomaly, d.timestamp, d.group_id, i.rel_path AS loser_path, i.stage AS loser_stage
FROM decisions d
JOIN projects p ON p.name = d.project
JOIN group_members gm ON gm.group_id = d.group_id
JOIN images i ON i.id = gm.image_id AND i.id <> d.chosen_image_id
{where}
ORDER BY d.project, d.set_id, i.stage, i.filename
"""


def decisions(conn: Connection, *, projects: Optional[Sequence[str]] = None,
              anomalies_only: bool = False, relative_to: Optional[str] = None,
              leave_out: Sequence[str] = ()) -> Iterator[Decision]:
    """Every decision, with its losers; `projects` keeps only those,
    `leave_out` drops these (projects whose folders are gone)."""
    conditions, params = [], {}
    if projects:
        conditions.append("d.project IN :names")
        params["names"] = list(projects)
    for k, name in enumerate(leave_out):
        conditions.append(f"d.project <> :gone{k}")
        params[f"gone{k}"] = name
    if anomalies_only:
        conditions.append("d.is_anomaly = 1")
    where = ("WHERE " + " AND ".join(conditions)) if conditions else ""
    # Untyped on purpose: typed columns would convert every loser row's
    # timestamp; iso_utc reads the raw value once per decision instead.
    rows = execute_for_projects(conn, DECISIONS_SQL.format(where=where), params)

    start = os.path.abspath(relative_to) if relative_to is not None else None
    bases: dict[str, str] = {}

    def base_of(sandbox_dir: str) -> str:
        # One relpath per project, not per path: paths below it only append.
        if sandbox_dir not in bases:
            rel = os.path.relpath(sandbox_dir, start) if start is not None else sandbox_dir
            bases[sandbox_dir] = "" if rel == "." else rel.rstrip("/") + "/"
        return bases[sandbox_dir]

    current: Optional[Decision] = None
    current_group = None
    for project, set_id, sandbox_dir, chosen, chosen_stage, max_stage, is_anomaly, timestamp, group_id, \
            loser, loser_stage in rows:
        base = bases[sandbox_dir] if sandbox_dir in bases else base_of(sandbox_dir)
        if group_id != current_group:
            if current is not None:
                yield current
            current_group = group_id
            current = Decision(project, set_id, base + chosen, chosen_stage, max_stage, is_anomaly, timestamp,
                               [], [])
        current.loser_paths.append(base + loser)
        current.loser_stages.append(loser_stage)
    if current is not None:
        yield current


def iso_utc(timestamp) -> str:
    """ISO 8601 UTC to the second, from a datetime or the text SQLite stores
    ('2025-07-08 06:07:11.000000')."""
    if timestamp is None:
        return ""
    if isinstance(timestamp, str):
        return f"{timestamp[:10]}T{timestamp[11:19]}Z"
    return timestamp.strftime("%Y-%m-%dT%H:%M:%SZ")


def _number(stage: float):
    return int(stage) if float(stage).is_integer() else stage


def training_row(d: Decision, *, as_json: bool = False) -> dict:
    return {
        "session_id": f"{d.project}_extraction",
        "set_id": d.set_id,
        "chosen_path": d.chosen_path,
        "neg_paths": d.loser_paths if as_json else json.dumps(d.loser_paths, ensure_ascii=False),
        "timestamp": iso_utc(d.timestamp),
        "project": d.project,
        "chosen_stage": _number(d.chosen_stage) if as_json else format_stage(d.chosen_stage),
        "max_stage": _number(d.max_stage) if as_json else format_stage(d.max_stage),
        "is_anomaly": d.is_anomaly,
    }


def anomaly_row(d: Decision) -> dict:
    return {
        "session_id": f"{d.project}_extraction",
        "set_id": d.set_id,
        "project": d.project,
        "chosen_stage": format_stage(d.chosen_stage),
        "max_rejected_stage": format_stage(max(d.loser_stages)),
        "chosen_path": d.chosen_path,
        "rejected_paths": json.dumps(d.loser_paths, ensure_ascii=False),
        "timestamp": iso_utc(d.timestamp),
    }


@dataclass
class ExportResult:
    written: int = 0
    already: int = 0
    path: str = "-"


def filename_of(path: str) -> str:
    """The filename of a path from any machine (`/` or `\\` separators)."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


def _read_log(path: Path) -> tuple[list[str], set[str], bytes]:
    """(header, chosen filenames, raw bytes) of an existing training log."""
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path} to merge into: {exc.strerror}") from None
    try:
        reader = csv.reader(io.StringIO(raw.decode("utf-8-sig"), newline=""))
        header = next(reader, [])
        if header[:5] != TRAINER_COLUMNS:
            raise UsageError(
                f"{path} is not a training log: its first columns are {','.join(header[:5]) or '(none)'}, "
                f"expected {','.join(TRAINER_COLUMNS)}; choose another file or drop --merge"
            )
        chosen = {filename_of(row[2]) for row in reader if len(row) > 2}
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path} is not a readable CSV training log ({exc}); choose another file") from None
    return header, chosen, raw


def _clear_stale_temps(out: Path) -> None:
    for stale in out.parent.glob(f".{out.name}.*.tmp"):
        try:
            stale.unlink()
        except OSError:
            pass


def atomic_write(out: Path, write: Callable[[TextIO], None]) -> None:
    """Write OUT through a temporary file in the same folder, then rename."""
    _clear_stale_temps(out)
    fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8", newline="") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        if out.exists():
            os.chmod(tmp, out.stat().st_mode & 0o777)
        else:
            os.chmod(tmp, 0o666 & ~_umask())
        faults.reach("export_written")
        os.replace(tmp, out)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_out(out: str, *, force: bool, merge: bool) -> Optional[Path]:
    """Validate OUT before any query runs; None means stdout."""
    if out == "-":
        if merge:
            raise UsageError("--merge needs a file to merge into, not -")
        return None
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"{out} is a folder; give a file name to export to")
    if not path.parent.is_dir():
        raise UsageError(f"folder of {out} does not exist; create it first")
    if merge and force:
        raise UsageError("--merge and --force contradict each other; choose one")
    if merge and not path.exists():
        raise UsageError(f"{out} does not exist, nothing to merge into; drop --merge to create it")
    if path.exists() and not (force or merge):
        raise UsageError(f"{out} already exists; pass --force to overwrite it or --merge to append new rows")
    return path


def write_rows(out: Optional[Path], columns: list[str], rows: Iterable[dict], *, fmt: str = "csv",
               merge: bool = False) -> ExportResult:
    """Write rows to OUT (None: stdout) as csv or jsonl; with `merge`, keep
    OUT byte for byte and append only rows whose chosen image is new to it."""
    result = ExportResult(path=str(out) if out else "-")
    header, seen, raw = (columns, set(), b"")
    if merge:
        header, seen, raw = _read_log(out)

    def emit(f: TextIO) -> None:
        if merge:
            f.flush()
            f.buffer.write(raw)  # the existing log, byte for byte
            if raw and not raw.endswith(b"\n"):
                f.buffer.write(b"\n")
        if fmt == "jsonl":
            for row in rows:
                f.write(json.dumps(row, ensure_ascii=False) + "\n")
                result.written += 1
            return
        writer = csv.writer(f, lineterminator="\n")
        if not merge:
            writer.writerow(columns)
        for row in rows:
            if merge:
                name = filename_of(row["chosen_path"])
                if name in seen:
                    result.already += 1
                    continue
                seen.add(name)
            writer.writerow([row.get(c, "") for c in header])
            result.written += 1

    if out is None:
        emit(sys.stdout)
        sys.stdout.flush()
    else:
        atomic_write(out, emit)
    return result
