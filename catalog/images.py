"""The images table: bring one project folder's rows in line with the disk.

Owns the incremental rule: a file whose size and mtime are unchanged is not
re-read; a new or changed one is parsed and its header read; a vanished one
leaves the table. Writes go out in batched executemany calls on the caller's
connection, inside the caller's transaction (one per project sync).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Callable, NamedTuple, Optional

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

    def __iadd__(self, other: "Changes") -> "Changes":
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


def sync_folder(
    conn: Optional[Connection],
    project_id: Optional[int],
    role: str,
    root: str,
    *,
    pretend: bool = False,
    warn: Callable[[str], None] = lambda msg: None,
    progress: Optional[Callable[[int], None]] = None,
) -> tuple[Changes, list[tuple]]:
    """Sync the `role` rows of a project with the folder `root`.

    Returns the counts and every row the folder now holds, as (id, dir,
    filename, timestamp, stage, width, height): grouping and matching run on
    them without reading the table back. With `pretend`, count what would
    change and write nothing (conn may be None for a project not in the
    catalogue yet).
    """
    # rel_path -> (id, size_bytes, mtime_ns, dir, filename, timestamp, stage, width, height)
    known: dict[str, tuple] = {}
    if conn is not None and project_id is not None:
        rows = conn.execute(
            select(images.c.rel_path, images.c.id, images.c.size_bytes, images.c.mtime_ns,
                   images.c.dir, images.c.filename, images.c.timestamp, images.c.stage,
                   images.c.width, images.c.height)
            .where(images.c.project_id == project_id, images.c.role == role)
        )
        known = {r[0]: tuple(r[1:]) for r in rows}

    changes = Changes()
    if pretend:
        for entry in scan_images(root, warn=warn, progress=progress):
            old = known.pop(entry.rel_path, None)
            if old is None:
                changes.added += 1
            elif old[1] == entry.size_bytes and old[2] == entry.mtime_ns:
                changes.unchanged += 1
            else:
                changes.changed += 1
        changes.removed = len(known)
        return changes, []

    # Ids are given, not returned, so that new rows can be grouped straight
    # from memory; the sync holds the write lock, so max(id) cannot race.
    next_id = (conn.execute(select(func.max(images.c.id))).scalar() or 0) + 1
    current: list[tuple] = []
    inserts: list[tuple] = []
    updates: list[tuple] = []
    insert = images.insert()
    for entry in scan_images(root, warn=warn, progress=progress):
        old = known.pop(entry.rel_path, None)
        if old is not None and old[1] == entry.size_bytes and old[2] == entry.mtime_ns:
            changes.unchanged += 1
            current.append((old[0], *old[3:]))
            continue
        fields = _fields(entry)
        if old is None:
            changes.added += 1
            image_id = next_id
            next_id += 1
            inserts.append((image_id, project_id, role, entry.rel_path, entry.dir, entry.filename, *fields))
            if len(inserts) >= BATCH:
                executemany(conn, insert, inserts, INSERT_COLUMNS)
                inserts = []
        else:
            changes.changed += 1
            image_id = old[0]
            updates.append((*fields, image_id))
            if len(updates) >= BATCH:
                executemany(conn, _update, updates, UPDATE_COLUMNS)
                updates = []
        current.append((image_id, entry.dir, entry.filename, *fields[:2], *fields[3:5]))
    executemany(conn, insert, inserts, INSERT_COLUMNS)
    executemany(conn, _update, updates, UPDATE_COLUMNS)

    changes.removed = len(known)
    if known:
        executemany(conn, _delete, [(v[0],) for v in known.values()], ("image_id",))
    return changes, current
