"""The images table: plan one project folder's rows from the disk, and write them.

Owns the incremental rule: a file whose size and mtime are unchanged is not
re-read; a new or changed one is parsed and its header read; a vanished one
leaves the table. `plan_folder` only compares (no database); `write_folder`
sends the plan in batched executemany calls on the caller's connection,
inside the caller's transaction (one per project sync).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import NamedTuple, Optional

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from .database import executemany
from .headers import pixel_size
from .names import parse_name
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


def _fields(entry: FileEntry) -> tuple:
    """What the name and the header say: the expensive part, done only for
    new and changed files."""
    parsed = parse_name(entry.filename)
    size = pixel_size(entry.abs_path) or (None, None)
    return (*parsed, *size, entry.size_bytes, entry.mtime_ns)


_update = (
    images.update()
    .where(images.c.id == bindparam("image_id"))
    .values({c: bindparam(c) for c in FIELDS})
)
_delete = images.delete().where(images.c.id == bindparam("image_id"))


class StoredImage(NamedTuple):
    """An images row as the plan needs it: identity, the incremental key, and
    what grouping and matching read."""

    id: int
    size_bytes: int
    mtime_ns: int
    dir: str
    filename: str
    timestamp: Optional[datetime]
    stage: Optional[float]
    width: Optional[int]
    height: Optional[int]

    def as_image(self) -> ImageRow:
        return ImageRow(self.id, self.dir, self.filename, self.timestamp, self.stage, self.width, self.height)


def read_folder(conn: Optional[Connection], project_id: Optional[int], role: str) -> dict[str, StoredImage]:
    """rel_path -> stored row, for the `role` images of a project."""
    if conn is None or project_id is None:
        return {}
    rows = conn.execute(
        select(images.c.rel_path, images.c.id, images.c.size_bytes, images.c.mtime_ns,
               images.c.dir, images.c.filename, images.c.timestamp, images.c.stage,
               images.c.width, images.c.height)
        .where(images.c.project_id == project_id, images.c.role == role)
    )
    return {r[0]: StoredImage._make(r[1:]) for r in rows}


@dataclass
class FolderPlan:
    """What one folder's rows become: the writes, and every row it then holds."""

    role: str
    changes: Changes
    inserts: list[tuple]  # in INSERT_COLUMNS order, project_id left as None
    updates: list[tuple]  # in UPDATE_COLUMNS order
    deletes: list[int]  # image ids
    rows: dict[str, ImageRow]  # rel_path -> the row as it will be stored
    changed_paths: list[str] = field(default_factory=list)
    removed_paths: list[str] = field(default_factory=list)

    @property
    def added_paths(self) -> list[str]:
        return [row[3] for row in self.inserts]


# progress(phase, done, total): total is None while it is not known yet.
Progress = Callable[[str, int, Optional[int]], None]


def plan_folder(role: str, root: str, stored: dict[str, StoredImage], next_id: int, *,
                warn: Callable[[str], None] = lambda msg: None,
                progress: Optional[Progress] = None) -> FolderPlan:
    """Compare the folder `root` with its `stored` rows; nothing is written.

    First the walk (size and mtime only), then names and headers of the new
    and changed files, whose number is then known. New images get ids from
    `next_id` on, in walk order, so the groups and matches planned on them
    can name them before they exist.
    """
    known = dict(stored)
    changes = Changes()
    rows: dict[str, Optional[ImageRow]] = {}
    fresh: list[tuple[FileEntry, Optional[StoredImage]]] = []
    scanning = f"scanning {role}"
    for entry in scan_images(root, warn=warn,
                             progress=(lambda n: progress(scanning, n, None)) if progress else None):
        old = known.pop(entry.rel_path, None)
        if old is not None and old.size_bytes == entry.size_bytes and old.mtime_ns == entry.mtime_ns:
            changes.unchanged += 1
            rows[entry.rel_path] = old.as_image()
        else:
            rows[entry.rel_path] = None  # keeps its place in walk order until read below
            fresh.append((entry, old))

    inserts: list[tuple] = []
    updates: list[tuple] = []
    changed_paths: list[str] = []
    reading = f"reading {role} names and headers"
    for k, (entry, old) in enumerate(fresh, start=1):
        fields = _fields(entry)
        if old is None:
            changes.added += 1
            image_id = next_id
            next_id += 1
            inserts.append((image_id, None, role, entry.rel_path, entry.dir, entry.filename, *fields))
        else:
            changes.changed += 1
            image_id = old.id
            updates.append((*fields, image_id))
            changed_paths.append(entry.rel_path)
        rows[entry.rel_path] = ImageRow(image_id, entry.dir, entry.filename, *fields[:2], *fields[3:5])
        if progress is not None and (k % 1000 == 0 or k == len(fresh)):
            progress(reading, k, len(fresh))
    changes.removed = len(known)
    return FolderPlan(role, changes, inserts, updates, [old.id for old in known.values()],
                      rows, changed_paths, sorted(known))  # type: ignore[arg-type]  # every None was filled


def unchanged_folder(role: str, stored: dict[str, StoredImage]) -> FolderPlan:
    """The plan of a folder that is not there to scan (a missing final folder):
    its rows stay as they are."""
    rows = {path: old.as_image() for path, old in stored.items()}
    return FolderPlan(role, Changes(), [], [], [], rows)


def write_folder(conn: Connection, project_id: int, plan: FolderPlan,
                 progress: Optional[Progress] = None) -> None:
    """Write a folder plan: deletes, then inserts and updates, in batches."""
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
    for start in range(0, len(plan.inserts), BATCH):
        batch = [(row[0], project_id, *row[2:]) for row in plan.inserts[start:start + BATCH]]
        executemany(conn, insert, batch, INSERT_COLUMNS)
        advance(len(batch))
    for start in range(0, len(plan.updates), BATCH):
        batch = plan.updates[start:start + BATCH]
        executemany(conn, _update, batch, UPDATE_COLUMNS)
        advance(len(batch))


def next_image_id(conn: Optional[Connection]) -> int:
    # Ids are given, not returned, so that new rows can be grouped straight
    # from memory; the sync holds the write lock, so max(id) cannot race.
    if conn is None:
        return 1
    return (conn.execute(select(func.max(images.c.id))).scalar() or 0) + 1
