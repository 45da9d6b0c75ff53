"""The images table: plan one project folder's rows from the disk, and write them.

Owns the incremental rule: a file whose size and mtime are unchanged is not
re-read; a new or changed one is parsed and its header read; a vanished one
leaves the table. `plan_folder` only compares (no database); `write_folder`
sends the plan in batched executemany calls on the caller's connection,
inside the caller's transaction (one per project sync).
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Optional

from sqlalchemy import bindparam, text
from sqlalchemy.engine import Connection

from .bulk import executemany, time_converter
from .reading import Reader
from .scan import FileEntry, scan_images
from .schema import images

BATCH = 2000


class ImageRow(NamedTuple):
    """What grouping and matching need of an image (sandbox or final)."""

    id: int
    dir: str
    filename: str
    timestamp: Optional[datetime]
    stage: Optional[float]
    width: Optional[int]
    height: Optional[int]


@dataclass
class Changes:
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0

    def __iadd__(self, other: Changes) -> Changes:
        self.added += other.added
        self.changed += other.changed
        self.removed += other.removed
        self.unchanged += other.unchanged
        return self

    @property
    def any(self) -> bool:
        return bool(self.added or self.changed or self.removed)


# Column order of the tuples `_fields` builds for inserts and updates.
FIELDS = ("timestamp", "stage", "stage_label", "width", "height", "size_bytes", "mtime_ns")
INSERT_COLUMNS = ("id", "project_id", "role", "rel_path", "dir", "filename") + FIELDS
UPDATE_COLUMNS = FIELDS + ("image_id",)


_update = (
    images.update()
    .where(images.c.id == bindparam("image_id"))
    .values({c: bindparam(c) for c in FIELDS})
)
_delete = images.delete().where(images.c.id == bindparam("image_id"))


# A stored images row as the plan reads it, a plain tuple for speed (a re-index
# of an unchanged tree reads every row and uses only the first three):
# (id, size_bytes, mtime_ns, dir, filename, timestamp, stage, width, height);
# `timestamp` is as the driver returns it (SQLite: text), see `to_image`.
StoredImage = tuple
S_ID, S_SIZE, S_MTIME, S_DIR, S_FILENAME = 0, 1, 2, 3, 4
# A name's timestamp is its first 15 characters (YYYYMMDD_HHMMSS, names.py).
TIMESTAMP_CHARS = 15


def stored_datetime(value) -> Optional[datetime]:
    # SQLite hands back the text SQLAlchemy stored ('2025-07-08 06:07:11.000000'),
    # PostgreSQL a datetime.
    return datetime.fromisoformat(value) if isinstance(value, str) else value


def to_image(stored: StoredImage) -> ImageRow:
    """What grouping and matching need of a stored row."""
    image_id, _, _, folder, filename, timestamp, stage, width, height = stored
    return ImageRow(image_id, folder, filename, stored_datetime(timestamp), stage, width, height)


def to_image_row(row: ImageRow | StoredImage) -> ImageRow:
    return row if isinstance(row, ImageRow) else to_image(row)


_READ_FOLDER = text(
    "SELECT rel_path, id, size_bytes, mtime_ns, dir, filename, timestamp, stage, width, height "
    "FROM images WHERE project_id = :project_id AND role = :role"
)


def read_folder(conn: Optional[Connection], project_id: Optional[int], role: str) -> dict[str, StoredImage]:
    """rel_path -> stored row, for the `role` images of a project.

    Read in one fetchall of the driver's plain tuples: the result layer's
    per-row processing cost more than the query at 100K rows."""
    if conn is None or project_id is None:
        return {}
    result = conn.execute(_READ_FOLDER, {"project_id": project_id, "role": role})
    try:
        rows = result.cursor.fetchall() if result.cursor is not None else []
    finally:
        result.close()
    return {r[0]: r[1:] for r in rows}


@dataclass
class FolderPlan:
    """What one folder's rows become: the writes, and every row it then holds."""

    role: str
    changes: Changes
    inserts: list[tuple]  # in INSERT_COLUMNS order, project_id left as None
    updates: list[tuple]  # in UPDATE_COLUMNS order
    deletes: list[int]  # image ids
    # rel_path -> the row as it will be stored: an ImageRow for a file read
    # now, the stored tuple for an unchanged one (converted only if needed)
    rows: dict[str, ImageRow | StoredImage]
    changed_paths: list[str] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)
    gone: list[StoredImage] = field(default_factory=list)  # the stored rows of removed files

    def drop_rows(self) -> None:
        """Keep only what writing needs (the writes and the paths they
        touch): once derived, the rows are not needed, and a plan sent
        between processes (catalog/ahead.py) is far smaller without them."""
        self.rows = {}
        self.gone = []

    @property
    def added_paths(self) -> list[str]:
        return [row[3] for row in self.inserts]

    def images(self) -> list[ImageRow]:
        """Every row the folder will hold, as grouping and matching read them."""
        return [to_image_row(row) for row in self.rows.values()]

    def read_now(self) -> list[ImageRow]:
        """The rows of files new or changed since the last sync."""
        return [row for row in self.rows.values() if isinstance(row, ImageRow)]

    def ids(self) -> set[int]:
        """Ids of every image the folder will hold."""
        return {row.id if isinstance(row, ImageRow) else row[S_ID] for row in self.rows.values()}

    def removed(self) -> list[ImageRow]:
        return [to_image(row) for row in self.gone]

    def added_dirs(self) -> set[str]:
        """Sub-folders that gained or lost an image: the only ones whose
        groups can differ from the stored ones (a changed file keeps its
        name, so its place in the selector's order)."""
        return {row[4] for row in self.inserts} | {row[S_DIR] for row in self.gone}

    def with_names(self, names: Collection[str], prefixes: Collection[str]) -> list[ImageRow]:
        """Rows whose file name is one of `names` or starts with one of the
        YYYYMMDD_HHMMSS `prefixes`: a superset of the images that share a
        name or a (timestamp, stage) key with some image, found without
        converting every stored row."""
        out = []
        for row in self.rows.values():
            filename = row.filename if isinstance(row, ImageRow) else row[S_FILENAME]
            if filename in names or filename[:TIMESTAMP_CHARS] in prefixes:
                out.append(row if isinstance(row, ImageRow) else to_image(row))
        return out


# progress(phase, done, total): total is None while it is not known yet.
Progress = Callable[[str, int, Optional[int]], None]


def plan_folder(role: str, root: str, stored: dict[str, StoredImage], new_ids: Iterator[int], *,
                warn: Callable[[str], None] = lambda msg: None,
                progress: Optional[Progress] = None, workers: Optional[int] = None) -> FolderPlan:
    """Compare the folder `root` with its `stored` rows; nothing is written.

    The walk (size and mtime only) hands new and changed files to worker
    processes that read their names and headers meanwhile (catalog/reading.py;
    `workers`: how many, default one per other core). New images take ids
    from `new_ids` in walk order: provisional ones (negative, see
    catalog/sync.py), so the groups and matches planned on them can name
    them before the real ids are reserved at write time.
    """
    known = dict(stored)
    changes = Changes()
    rows: dict[str, ImageRow | StoredImage | None] = {}
    fresh: list[tuple[FileEntry, Optional[StoredImage]]] = []
    scanning = f"scanning {role}"
    inserts: list[tuple] = []
    updates: list[tuple] = []
    changed_paths: list[str] = []
    reading = f"reading {role} names and headers"
    with Reader(workers) as reader:
        for entry in scan_images(root, warn=warn,
                                 progress=(lambda n: progress(scanning, n, None)) if progress else None):
            old = known.pop(entry.rel_path, None)
            if old is not None and old[S_SIZE] == entry.size_bytes and old[S_MTIME] == entry.mtime_ns:
                changes.unchanged += 1
                rows[entry.rel_path] = old
            else:
                rows[entry.rel_path] = None  # keeps its place in walk order until read below
                fresh.append((entry, old))
                # Names and headers are read while the walk goes on (other cores).
                reader.add(entry.abs_path, entry.filename)

        for k, ((entry, old), read) in enumerate(zip(fresh, reader.results()), start=1):
            fields = (*read, entry.size_bytes, entry.mtime_ns)
            if old is None:
                changes.added += 1
                image_id = next(new_ids)
                inserts.append((image_id, None, role, entry.rel_path, entry.dir, entry.filename, *fields))
            else:
                changes.changed += 1
                image_id = old[S_ID]
                updates.append((*fields, image_id))
                changed_paths.append(entry.rel_path)
            rows[entry.rel_path] = ImageRow(image_id, entry.dir, entry.filename, *fields[:2], *fields[3:5])
            if progress is not None and (k % 1000 == 0 or k == len(fresh)):
                progress(reading, k, len(fresh))
    changes.removed = len(known)
    return FolderPlan(role, changes, inserts, updates, [old[S_ID] for old in known.values()],
                      rows, changed_paths, sorted(known), list(known.values()))  # type: ignore[arg-type]


def unchanged_folder(role: str, stored: dict[str, StoredImage]) -> FolderPlan:
    """The plan of a folder that is not there to scan (a missing final folder):
    its rows stay as they are."""
    return FolderPlan(role, Changes(), [], [], [], dict(stored))


# Maps an image id of a plan to the id it is written with (catalog/sync.py
# `real_ids`: provisional ids of new images become reserved ones).
RealId = Callable[[Optional[int]], Optional[int]]


def keep_id(i: Optional[int]) -> Optional[int]:
    """The `real_id` of a plan without new images: every id is real."""
    return i


def write_folder(conn: Connection, project_id: int, plan: FolderPlan,
                 real_id: RealId = keep_id,
                 progress: Optional[Progress] = None) -> None:
    """Write a folder plan: deletes, then inserts and updates, in batches.
    `real_id` maps the provisional ids of new images (catalog/sync.py)."""
    total = len(plan.deletes) + len(plan.inserts) + len(plan.updates)
    done = 0
    writing = f"writing {plan.role} images"

    def advance(n: int) -> None:
        nonlocal done
        done += n
        if progress is not None:
            progress(writing, done, total)

    for start in range(0, len(plan.deletes), BATCH):
        batch_ids = plan.deletes[start:start + BATCH]
        executemany(conn, _delete, [(i,) for i in batch_ids], ("image_id",))
        advance(len(batch_ids))
    insert = images.insert()
    as_time = time_converter(conn)
    for start in range(0, len(plan.inserts), BATCH):
        # Built once, in the driver's form: (id, project_id, role, rel_path,
        # dir, filename, timestamp, *the rest of FIELDS).
        batch = [(real_id(i), project_id, role, rel_path, folder, filename,
                  None if timestamp is None else as_time(timestamp), *rest)
                 for i, _, role, rel_path, folder, filename, timestamp, *rest in plan.inserts[start:start + BATCH]]
        executemany(conn, insert, batch, INSERT_COLUMNS, converted=True)
        advance(len(batch))
    for start in range(0, len(plan.updates), BATCH):
        batch = plan.updates[start:start + BATCH]
        executemany(conn, _update, batch, UPDATE_COLUMNS)
        advance(len(batch))
