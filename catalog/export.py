"""Export: training rows in the formats the existing trainer reads.

Owns `selection_only_log.csv` (one row per decision: the winner and a JSON
array of its losers), `anomaly_cases.csv`, `--merge` into an existing log,
and writing files atomically (a temporary file beside OUT, then rename), so a
crash never leaves a truncated or half-merged log behind.
"""

from __future__ import annotations

import contextlib
import csv
import io
import itertools
import json
import os
import sys
import tempfile
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from json.encoder import encode_basestring
from pathlib import Path
from typing import NamedTuple, Optional, TextIO

from sqlalchemy.engine import Connection

from . import dialects, faults
from .errors import CatalogError, UsageError
from .marks import MARKED
from .names import format_stage
from .views import execute_for_projects

TRAINER_COLUMNS = ["session_id", "set_id", "chosen_path", "neg_paths", "timestamp"]
EXPORT_COLUMNS = TRAINER_COLUMNS + ["project", "chosen_stage", "max_stage", "is_anomaly"]
ANOMALY_COLUMNS = ["session_id", "set_id", "project", "chosen_stage", "max_rejected_stage",
                   "chosen_path", "rejected_paths", "timestamp"]


SESSION_SUFFIX = "_extraction"


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
ORDER BY d.project{byte_order}, d.set_id{byte_order}, i.stage, i.filename{byte_order}
"""


def _selection(*, projects: Optional[Sequence[str]], anomalies_only: bool, leave_out: Sequence[str],
               marked: Optional[bool]) -> tuple[str, dict]:
    """WHERE clause and parameters over decisions `d` joined with projects `p`;
    `marked` True keeps only, False leaves out, None ignores review marks."""
    conditions: list[str] = []
    params: dict[str, object] = {}
    if projects:
        conditions.append("d.project IN :names")
        params["names"] = list(projects)
    for k, name in enumerate(leave_out):
        conditions.append(f"d.project <> :gone{k}")
        params[f"gone{k}"] = name
    if anomalies_only:
        conditions.append("d.is_anomaly = 1")
    if marked is not None:
        conditions.append(MARKED if marked else f"NOT {MARKED}")
    return ("WHERE " + " AND ".join(conditions)) if conditions else "", params


def decisions(conn: Connection, *, projects: Optional[Sequence[str]] = None,
              anomalies_only: bool = False, relative_to: Optional[str] = None,
              leave_out: Sequence[str] = (), leave_out_marked: bool = False) -> Iterator[Decision]:
    """Every decision, with its losers; `projects` keeps only those,
    `leave_out` drops these (projects whose folders are gone), and
    `leave_out_marked` drops decisions a curator marked wrong on the review
    page (catalog/marks.py)."""
    where, params = _selection(projects=projects, anomalies_only=anomalies_only, leave_out=leave_out,
                               marked=False if leave_out_marked else None)
    # Untyped on purpose: typed columns would convert every loser row's
    # timestamp; iso_utc reads the raw value once per decision instead.
    # Byte order, so that the rows come out the same whatever the database's collation.
    result = execute_for_projects(conn, DECISIONS_SQL.format(where=where, byte_order=dialects.byte_order(conn)),
                                  params)
    # Fetched in batches, and the rows of a batch iterated in C: not one
    # driver call and one Python call a row.
    rows = itertools.chain.from_iterable(result.yield_per(2000).partitions())

    start = os.path.abspath(relative_to) if relative_to is not None else None

    def base_of(sandbox_dir: str) -> str:
        # One relpath per project, not per path: paths below it only append.
        rel = os.path.relpath(sandbox_dir, start) if start is not None else sandbox_dir
        return "" if rel == "." else rel.rstrip("/") + "/"

    # The hot loop of an export (a row per loser): every name it touches is local.
    current: Optional[Decision] = None
    current_group = last_dir = None
    base = ""
    add_path = add_stage = None
    for project, set_id, sandbox_dir, chosen, chosen_stage, max_stage, is_anomaly, timestamp, group_id, \
            loser, loser_stage in rows:
        if group_id != current_group:  # a group's rows are consecutive, and all of one project
            if current is not None:
                yield current
            if sandbox_dir != last_dir:
                last_dir, base = sandbox_dir, base_of(sandbox_dir)
            current_group = group_id
            paths: list[str] = []
            stages: list[float] = []
            add_path, add_stage = paths.append, stages.append
            current = Decision(project, set_id, base + chosen, chosen_stage, max_stage, is_anomaly, timestamp,
                               paths, stages)
        add_path(base + loser)  # type: ignore[misc]  # set with the first row
        add_stage(loser_stage)  # type: ignore[misc]
    if current is not None:
        yield current


def marked_decisions(conn: Connection, *, projects: Optional[Sequence[str]] = None, anomalies_only: bool = False,
                     leave_out: Sequence[str] = ()) -> dict[str, int]:
    """project -> how many of the decisions `decisions()` would give (same
    arguments) are marked wrong: what `leave_out_marked` leaves out."""
    where, params = _selection(projects=projects, anomalies_only=anomalies_only, leave_out=leave_out, marked=True)
    sql = f"SELECT d.project, COUNT(*) FROM decisions d JOIN projects p ON p.name = d.project {where} " \
          "GROUP BY d.project ORDER BY d.project"
    return {project: n for project, n in execute_for_projects(conn, sql, params)}


def left_out_groups(conn: Connection, names: Optional[Sequence[str]] = None) -> dict[str, tuple[int, int]]:
    """project -> (skipped groups: no winner, groups kept twice: two or more
    winners), the groups an export of decisions leaves out, counted as
    `catalog stats` counts them (catalog/views.py) but from the groups view
    alone: the whole stats query costs an export of 120K images 0.35 s.
    No `names`: every project."""
    where, params = ("WHERE project IN :names", {"names": list(names)}) if names else ("", {})
    sql = ("SELECT project, SUM(CASE WHEN winner_count = 0 THEN 1 ELSE 0 END), "
           f'SUM(CASE WHEN winner_count > 1 THEN 1 ELSE 0 END) FROM "groups" {where} GROUP BY project')
    return {project: (skipped, twice) for project, skipped, twice in execute_for_projects(conn, sql, params)}


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


def json_list(paths: list[str]) -> str:
    """json.dumps(paths, ensure_ascii=False), byte for byte, for a list of
    text: the one JSON value a CSV row holds, written once per decision
    without building a JSON encoder each time."""
    try:
        return "[" + ", ".join(map(encode_basestring, paths)) + "]"
    except TypeError:  # not all text: the general encoder
        return json.dumps(paths, ensure_ascii=False)


# A catalogue holds a handful of distinct stages; each is formatted once.
_STAGE_TEXT: dict[float, str] = {}


def stage_text(stage: float) -> str:
    """format_stage, remembered per value (the same text)."""
    found = _STAGE_TEXT.get(stage)
    if found is None:
        found = _STAGE_TEXT[stage] = format_stage(stage)
    return found


def training_values(d: Decision, *, as_json: bool = False) -> list:
    """One training row, in EXPORT_COLUMNS order: CSV cells, or (as_json)
    JSON values (the losers as a list, stages as numbers)."""
    if as_json:
        return [d.project + SESSION_SUFFIX, d.set_id, d.chosen_path, d.loser_paths, iso_utc(d.timestamp),
                d.project, _number(d.chosen_stage), _number(d.max_stage), d.is_anomaly]
    return [d.project + SESSION_SUFFIX, d.set_id, d.chosen_path, json_list(d.loser_paths), iso_utc(d.timestamp),
            d.project, stage_text(d.chosen_stage), stage_text(d.max_stage), d.is_anomaly]


def anomaly_values(d: Decision) -> list:
    """One row of anomaly_cases.csv, in ANOMALY_COLUMNS order."""
    return [d.project + SESSION_SUFFIX, d.set_id, d.project, stage_text(d.chosen_stage),
            stage_text(max(d.loser_stages)), d.chosen_path, json_list(d.loser_paths), iso_utc(d.timestamp)]


def training_row(d: Decision, *, as_json: bool = False) -> dict:
    return dict(zip(EXPORT_COLUMNS, training_values(d, as_json=as_json)))


def anomaly_row(d: Decision) -> dict:
    return dict(zip(ANOMALY_COLUMNS, anomaly_values(d)))


@dataclass
class ExportResult:
    written: int = 0
    already: int = 0  # rows of ours the merged log already had
    path: str = "-"
    # project -> [rows written, anomalies among them]
    projects: dict[str, list[int]] = field(default_factory=dict)

    def count(self, project: str, is_anomaly: int) -> None:
        self.written += 1
        tally = self.projects.get(project)
        if tally is None:
            tally = self.projects[project] = [0, 0]
        tally[0] += 1
        tally[1] += is_anomaly


def filename_of(path: str) -> str:
    """The filename of a path from any machine (`/` or `\\` separators)."""
    return path.replace("\\", "/").rsplit("/", 1)[-1]


@dataclass
class TrainingLog:
    """What --merge needs of an existing training log."""

    header: list[str]
    raw: bytes
    newline: str
    # (project, chosen filename) of every row whose project is known: the
    # trainer's rule is one project per row, matched by filename within it.
    keys: set[tuple[str, str]]
    # chosen filenames of rows whose project cannot be told: they block that
    # filename in every project, so a merge never writes a row twice.
    unplaced: set[str]

    def has(self, project: str, chosen_path: str) -> bool:
        name = filename_of(chosen_path)
        return (project, name) in self.keys or name in self.unplaced

    def add(self, project: str, chosen_path: str) -> None:
        self.keys.add((project, filename_of(chosen_path)))


def _row_project(header: list[str], row: list[str]) -> Optional[str]:
    """The project of a log row: its `project` column when the log has one,
    else the historical session id `<project>_extraction`."""
    if "project" in header:
        k = header.index("project")
        if k < len(row) and row[k]:
            return row[k]
    session = row[0] if row else ""
    if session.endswith(SESSION_SUFFIX) and len(session) > len(SESSION_SUFFIX):
        return session[: -len(SESSION_SUFFIX)]
    return None


def _read_log(path: Path) -> TrainingLog:
    try:
        raw = path.read_bytes()
    except OSError as exc:
        raise UsageError(f"cannot read {path} to merge into: {exc.strerror}") from None
    try:
        text = raw.decode("utf-8-sig")
        reader = csv.reader(io.StringIO(text, newline=""))
        header = next(reader, [])
        if header[:5] != TRAINER_COLUMNS:
            raise UsageError(
                f"{path} is not a training log: its first columns are {','.join(header[:5]) or '(none)'}, "
                f"expected {','.join(TRAINER_COLUMNS)}; choose another file or drop --merge"
            )
        keys: set[tuple[str, str]] = set()
        unplaced: set[str] = set()
        for row in reader:
            if len(row) <= 2:
                continue
            project = _row_project(header, row)
            if project is None:
                unplaced.add(filename_of(row[2]))
            else:
                keys.add((project, filename_of(row[2])))
    except (UnicodeDecodeError, csv.Error) as exc:
        raise UsageError(f"{path} is not a readable CSV training log ({exc}); choose another file") from None
    first_line_end = text.find("\n")
    newline = "\r\n" if first_line_end > 0 and text[first_line_end - 1] == "\r" else "\n"
    return TrainingLog(header, raw, newline, keys, unplaced)


def _clear_stale_temps(out: Path) -> None:
    for stale in out.parent.glob(f".{out.name}.*.tmp"):
        with contextlib.suppress(OSError):
            stale.unlink()


def atomic_write(out: Path, write: Callable[[TextIO], None]) -> None:
    """Write OUT through a temporary file in the same folder, then rename."""
    _clear_stale_temps(out)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent)
    except OSError as exc:
        raise CatalogError(f"cannot write {out}: {exc.strerror} in {out.parent}; "
                           "choose a folder you can write to") from None
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
    except BaseException as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        if isinstance(exc, OSError) and not isinstance(exc, BrokenPipeError):
            raise CatalogError(f"cannot write {out}: {exc.strerror or exc}; nothing was changed "
                               "(check the free space and permissions of its folder)") from None
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


SQLITE_MAGIC = b"SQLite format 3\x00"


def _is_sqlite_file(path: Path) -> bool:
    try:
        with open(path, "rb") as f:
            return f.read(len(SQLITE_MAGIC)) == SQLITE_MAGIC
    except OSError:
        return False


def check_out(out: str, *, force: bool, merge: bool, catalogue: Optional[str] = None) -> Optional[Path]:
    """Validate OUT before any query runs; None means stdout. A database
    (the catalogue or any SQLite file) is never overwritten, whatever the flags."""
    if out == "-":
        if merge:
            raise UsageError("--merge needs a file to merge into, not -")
        return None
    path = Path(out)
    if path.is_dir():
        raise UsageError(f"{out} is a folder; give a file name to export to")
    if catalogue is not None and os.path.abspath(out) == os.path.abspath(catalogue):
        raise UsageError(f"{out} is the catalogue itself; export to another file")
    if path.exists() and _is_sqlite_file(path):
        raise UsageError(f"{out} is a SQLite database, not an export; choose another file")
    if not path.parent.is_dir():
        raise UsageError(f"folder of {out} does not exist; create it first")
    if merge and force:
        raise UsageError("--merge and --force contradict each other; choose one")
    if merge and not path.exists():
        raise UsageError(f"{out} does not exist, nothing to merge into; drop --merge to create it")
    if path.exists() and not (force or merge):
        raise UsageError(f"{out} already exists; pass --force to overwrite it or --merge to append new rows")
    return path


def write_rows(out: Optional[Path], columns: list[str], rows: Iterable[Sequence], *, fmt: str = "csv",
               merge: bool = False) -> ExportResult:
    """Write rows (sequences in `columns` order, with `project` and
    `chosen_path` among the columns) to OUT (None: stdout) as csv or jsonl;
    with `merge`, keep OUT byte for byte and append only rows whose chosen
    image is new to it (same project, same file name), in the log's own
    columns and line ends. A row's `is_anomaly` (1 without that column)
    counts its anomalies."""
    result = ExportResult(path=str(out) if out else "-")
    log = _read_log(out) if merge and out is not None else None
    at_project, at_chosen = columns.index("project"), columns.index("chosen_path")
    at_anomaly = columns.index("is_anomaly") if "is_anomaly" in columns else None
    count = result.count

    def emit(f: TextIO) -> None:
        if fmt == "jsonl":
            for row in rows:
                f.write(json.dumps(dict(zip(columns, row)), ensure_ascii=False) + "\n")
                count(row[at_project], 1 if at_anomaly is None else row[at_anomaly])
            return
        if log is not None:
            f.flush()
            f.buffer.write(log.raw)  # the existing log, byte for byte
            if log.raw and not log.raw.endswith(b"\n"):
                f.buffer.write(log.newline.encode())
        writer = csv.writer(f, lineterminator=log.newline if log else "\n")
        writerow = writer.writerow
        if log is None:
            writerow(columns)
            if at_anomaly is None:
                for row in rows:
                    writerow(row)
                    count(row[at_project], 1)
            else:
                for row in rows:
                    writerow(row)
                    count(row[at_project], row[at_anomaly])
            return
        # The log's own columns: ours where the names match, else empty.
        where = [columns.index(c) if c in columns else None for c in log.header]
        for row in rows:
            project, chosen = row[at_project], row[at_chosen]
            if log.has(project, chosen):
                result.already += 1
                continue
            log.add(project, chosen)
            writerow([row[i] if i is not None else "" for i in where])
            count(project, 1 if at_anomaly is None else row[at_anomaly])

    if out is None:
        emit(sys.stdout)
        sys.stdout.flush()
    else:
        atomic_write(out, emit)
    return result


def export_format(out: str, asked: Optional[str]) -> str:
    """csv or jsonl: as asked, else from OUT's extension; a mismatch is refused."""
    ext = Path(out).suffix.lower() if out != "-" else ""
    by_ext = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv"}.get(ext)
    if asked is None:
        return by_ext or "csv"
    if by_ext is not None and by_ext != asked:
        raise UsageError(f"{out} looks like {by_ext} but --format {asked} was given; "
                         f"name the file *.{'jsonl' if asked == 'jsonl' else 'csv'} or drop --format")
    return asked


def check_relative_to(folder: Optional[str]) -> None:
    if folder is not None and not os.path.isdir(folder):
        raise UsageError(f"--relative-to {folder} is not an existing folder; give the folder paths should start from")
