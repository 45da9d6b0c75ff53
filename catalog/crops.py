"""`catalog crops` and `catalog export-crops`: crop boxes over the catalogue.

Owns the run that fills `crop_boxes` and the rows exported from it:

- which pairs: every winner whose final copy is flagged cropped (its pixel
  size differs from its sandbox original), within the projects asked for;
- the incremental rule: a pair is looked at again only when the (size, mtime)
  of its final or of the original its box was found in changed (or, for a
  pair found in no original, its match changed); rows of pairs that are gone
  are removed;
- work items: one per group, so each original is decoded once however many
  finals and siblings need it; when the matched original holds no exact box,
  the group's other stage files are tried and the one it came from is
  recorded (`original_image_id`);
- one process per core, results written in batches so Ctrl-C keeps every
  batch already looked at;
- the trainer's crop rows (`crop_training_v2`).

The image search itself is catalog/cropfind.py.
"""

from __future__ import annotations

import os
import signal
import sys
import time
from collections import Counter
from collections.abc import Callable, Generator, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import NamedTuple, Optional, Union

from sqlalchemy import and_, bindparam, delete, func, select, true
from sqlalchemy.engine import Connection, Engine

from . import dialects
from .bulk import chunks, executemany
from .cropfind import Found, Picture, Unreadable, better, find_by_correlation, find_exact, open_picture
from .projects import Project, stored_projects
from .schema import crop_boxes, group_members, images, matches, projects

# Results written per transaction: small enough that Ctrl-C loses little,
# large enough that a run of thousands of pairs commits a few hundred times.
BATCH = 32


class FileRef(NamedTuple):
    """One image file as a worker needs it: what the catalogue says of it."""

    id: int
    path: str
    size_bytes: int
    mtime_ns: int
    width: Optional[int]
    height: Optional[int]


class Item(NamedTuple):
    """One group's work: its sandbox images in stage order, and each cropped
    final with the index of its matched original among them."""

    originals: tuple[FileRef, ...]
    finals: tuple[tuple[FileRef, int], ...]


# A crop_boxes row as the workers return it, in ROW_COLUMNS order.
ROW_COLUMNS = ("final_image_id", "original_image_id", "x1", "y1", "x2", "y2", "status", "score", "reason",
               "final_size_bytes", "final_mtime_ns", "original_size_bytes", "original_mtime_ns")


# ---------------------------------------------------------------- the worker side


def _load(ref: FileRef) -> Union[Picture, str]:
    """The decoded file, or why not. A file that no longer has the size and
    mtime the catalogue recorded is not read: the pair would not be what the
    catalogue says it is."""
    try:
        st = os.stat(ref.path)
    except FileNotFoundError:
        return "missing: the file is gone; run catalog index"
    except OSError as exc:
        return f"cannot read: {exc.strerror}"
    if (st.st_size, st.st_mtime_ns) != (ref.size_bytes, ref.mtime_ns):
        return "changed on disk since it was indexed; run catalog index"
    try:
        return open_picture(ref.path)
    except Unreadable as exc:
        return f"unreadable: {exc}"
    except MemoryError:
        return "unreadable: not enough memory to decode it"


def _row(final: FileRef, original: FileRef, found: Found) -> tuple:
    x1, y1, x2, y2 = found.box if found.box is not None else (None, None, None, None)
    return (final.id, original.id, x1, y1, x2, y2, found.status, found.score, found.reason,
            final.size_bytes, final.mtime_ns, original.size_bytes, original.mtime_ns)


def _fits(final: Picture, ref: FileRef) -> bool:
    return ref.width is None or ref.height is None or (final.width <= ref.width and final.height <= ref.height)


def look_for_crop(final_ref: FileRef, matched: int, originals: Sequence[FileRef],
                  load: Callable[[FileRef], Union[Picture, str]],
                  load_final: Callable[[FileRef], Union[Picture, str]] = _load) -> tuple:
    """One final: exact search in its matched original, then in the group's
    other images (nearest stage first); then correlation in the same order.
    Returns a crop_boxes row."""
    final = load_final(final_ref)
    if isinstance(final, str):
        return _row(final_ref, originals[matched], Found("failed", None, None, f"final {final}"))
    order = [matched] + sorted((i for i in range(len(originals)) if i != matched),
                               key=lambda i: (abs(i - matched), i))
    own: Optional[Found] = None  # what the matched original itself says
    best: Optional[tuple[int, Found]] = None
    readable: list[tuple[int, Picture]] = []
    for i in order:
        ref = originals[i]
        if i != matched and not _fits(final, ref):
            continue  # a smaller sibling cannot hold the final: not worth decoding
        picture = load(ref)
        if isinstance(picture, str):
            found = Found("failed", None, None, f"original {picture}")
        elif final.width > picture.width or final.height > picture.height:
            found = Found("failed", None, None, f"the final ({final.width}x{final.height}) is larger than "
                                                f"the original ({picture.width}x{picture.height})")
        else:
            readable.append((i, picture))
            exact = find_exact(final, picture)
            if exact is not None and exact.status == "exact":
                return _row(final_ref, ref, exact)
            found = exact if exact is not None else Found("none", None, None, "no exact match")
        if i == matched:
            own = found
        if found.status == "review" and (best is None or better(found, best[1])):
            best = (i, found)
    for i, picture in readable:
        found = find_by_correlation(final, picture)
        if i == matched and (own is None or own.status != "review"):
            own = found
        if found.status in ("approx", "review") and (best is None or better(found, best[1])):
            best = (i, found)
        if best is not None and best[1].status == "approx" and best[0] == matched:
            break  # the matched original holds a re-encoded crop: the siblings cannot do better
    if best is not None:
        return _row(final_ref, originals[best[0]], best[1])
    assert own is not None
    return _row(final_ref, originals[matched], own)


def look_in_group(item: Item) -> list[tuple]:
    """Every final of one group, each original decoded at most once."""
    decoded: dict[int, Union[Picture, str]] = {}

    def load(ref: FileRef) -> Union[Picture, str]:
        if ref.id not in decoded:
            decoded[ref.id] = _load(ref)
        return decoded[ref.id]

    rows = []
    for final, matched in item.finals:
        try:
            rows.append(look_for_crop(final, matched, item.originals, load))
        except Exception as exc:  # one odd file must not end a run of thousands; the row says what happened
            found = Found("failed", None, None, f"error while looking: {type(exc).__name__}: {exc}")
            rows.append(_row(final, item.originals[matched], found))
    return rows


def _quiet_worker() -> None:
    # Ctrl-C is the parent's to handle: it stops the pool and saves what is done.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def default_jobs() -> int:
    """All cores this process may use."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def _results(items: list[Item], jobs: int) -> Generator[list[tuple], None, None]:
    if jobs <= 1 or len(items) <= 1:
        for item in items:
            yield look_in_group(item)
        return
    import multiprocessing

    # fork starts workers at no cost and shares the imported modules; other
    # platforms spawn, which imports catalog.crops in each worker.
    method = "fork" if sys.platform.startswith("linux") else "spawn"
    ctx = multiprocessing.get_context(method)
    pool = ctx.Pool(processes=min(jobs, len(items)), initializer=_quiet_worker)
    try:
        yield from pool.imap_unordered(look_in_group, items, chunksize=1)
        pool.close()
    except BaseException:
        pool.terminate()
        raise
    finally:
        pool.join()


# ---------------------------------------------------------------- the catalogue side


@dataclass
class CropPlan:
    items: list[Item]
    pairs: int = 0  # cropped winners in the projects looked at
    unchanged: int = 0
    stale: list[int] = field(default_factory=list)  # final ids whose rows go: their pair is gone
    missing: list[Project] = field(default_factory=list)  # projects left alone: a folder is gone

    @property
    def todo(self) -> int:
        return sum(len(item.finals) for item in self.items)


def _path(base: str, rel_path: str) -> str:
    return os.path.join(base, *rel_path.split("/"))


def plan_crops(conn: Connection, names: Optional[Sequence[str]] = None, *, recheck: bool = False) -> CropPlan:
    """What a run must look at: the pairs whose files (or match) changed since
    their row was written, or that have no row; and the rows to remove."""
    chosen = [p for p in stored_projects(conn) if not names or p.name in names]
    # A folder that is gone (unmounted, renamed) says nothing about its crops:
    # its rows are kept as they are until it is back or forgotten.
    missing = [p for p in chosen if not os.path.isdir(p.sandbox_dir)
               or (p.final_dir is not None and not os.path.isdir(p.final_dir))]
    gone = {p.name for p in missing}
    base = {p.name: p for p in chosen}
    final = images.alias("f")
    selected = projects.c.name.in_(list(base)) if names else true()

    winners = (
        select(final.c.id, final.c.rel_path, final.c.size_bytes, final.c.mtime_ns, final.c.width, final.c.height,
               matches.c.sandbox_image_id, group_members.c.group_id, projects.c.name)
        .select_from(matches.join(final, final.c.id == matches.c.final_image_id)
                     .join(group_members, group_members.c.image_id == matches.c.sandbox_image_id)
                     .join(projects, projects.c.id == final.c.project_id))
        .where(matches.c.problem.is_(None), matches.c.cropped == 1, selected)
    )
    pairs = conn.execute(winners).all()
    group_ids = select(group_members.c.group_id).where(
        group_members.c.image_id.in_(winners.with_only_columns(matches.c.sandbox_image_id)))
    members: dict[int, list[tuple]] = {}
    for row in conn.execute(
        select(group_members.c.group_id, images.c.id, images.c.rel_path, images.c.size_bytes, images.c.mtime_ns,
               images.c.width, images.c.height)
        .join(images, images.c.id == group_members.c.image_id)
        .where(group_members.c.group_id.in_(group_ids))
        .order_by(group_members.c.group_id, group_members.c.position)
    ):
        members.setdefault(row[0], []).append(row[1:])

    stored = {
        row[0]: row[1:]
        for row in conn.execute(
            select(crop_boxes.c.final_image_id, crop_boxes.c.original_image_id, crop_boxes.c.status,
                   crop_boxes.c.final_size_bytes, crop_boxes.c.final_mtime_ns,
                   crop_boxes.c.original_size_bytes, crop_boxes.c.original_mtime_ns)
            .join(final, final.c.id == crop_boxes.c.final_image_id)
            .join(projects, projects.c.id == final.c.project_id)
            .where(selected)
        )
    }

    plan = CropPlan(items=[], missing=missing)
    current: set[int] = set()
    todo: dict[int, list[tuple[FileRef, int]]] = {}
    group_project: dict[int, str] = {}
    for final_id, rel_path, size, mtime, width, height, sandbox_id, group_id, name in pairs:
        current.add(final_id)
        if name in gone:
            continue
        plan.pairs += 1
        group = {m[0]: m for m in members[group_id]}
        old = stored.get(final_id)
        if old is not None and not recheck:
            original_id, status, f_size, f_mtime, o_size, o_mtime = old
            original = group.get(original_id)
            if ((f_size, f_mtime) == (size, mtime) and original is not None
                    and (o_size, o_mtime) == (original[2], original[3])
                    # a box found in a sibling stands on its own; "no box" is about the matched original
                    and (status in ("exact", "approx", "review") or original_id == sandbox_id)):
                plan.unchanged += 1
                continue
        ids = [m[0] for m in members[group_id]]
        ref = FileRef(final_id, _path(base[name].final_dir or "", rel_path), size, mtime, width, height)
        todo.setdefault(group_id, []).append((ref, ids.index(sandbox_id)))
        group_project[group_id] = name
    plan.stale = sorted(set(stored) - current)
    for group_id, finals in todo.items():
        sandbox_dir = base[group_project[group_id]].sandbox_dir
        originals = tuple(FileRef(m[0], _path(sandbox_dir, m[1]), m[2], m[3], m[4], m[5]) for m in members[group_id])
        plan.items.append(Item(originals, tuple(finals)))
    # Biggest first: the pool's last minutes are not spent on one huge group.
    plan.items.sort(key=lambda it: -len(it.finals) * max((o.width or 0) * (o.height or 0) for o in it.originals))
    return plan


def _utcnow() -> datetime:
    return datetime.now(timezone.utc).replace(tzinfo=None)


def remove_rows(engine: Engine, final_ids: Sequence[int]) -> None:
    if not final_ids:
        return
    with engine.begin() as conn:
        _lock_projects_of(conn, final_ids)
        for chunk in chunks(final_ids):
            conn.execute(delete(crop_boxes).where(crop_boxes.c.final_image_id.in_(chunk)))


def _lock_projects_of(conn: Connection, image_ids: Sequence[int]) -> None:
    """Hold off syncs of the projects these images belong to until the
    transaction ends, so the images checked below stay as they are."""
    owners: set[int] = set()
    for chunk in chunks(sorted(image_ids)):
        owners.update(conn.execute(select(images.c.project_id).where(images.c.id.in_(chunk)).distinct()).scalars())
    dialects.lock_projects(conn, owners)


_delete_one = crop_boxes.delete().where(crop_boxes.c.final_image_id == bindparam("fid"))


def write_rows(engine: Engine, rows: Sequence[tuple]) -> int:
    """Store results in one transaction; returns how many were kept. A row is
    dropped when the catalogue no longer holds its files as they were read
    (an index ran meanwhile): the next run looks at that pair again."""
    if not rows:
        return 0
    with engine.begin() as conn:
        ids = sorted({r[0] for r in rows} | {r[1] for r in rows})
        _lock_projects_of(conn, ids)
        now: dict[int, tuple[int, int]] = {}
        for chunk in chunks(ids):
            for image_id, size, mtime in conn.execute(
                    select(images.c.id, images.c.size_bytes, images.c.mtime_ns).where(images.c.id.in_(chunk))):
                now[image_id] = (size, mtime)
        keep = [r for r in rows if now.get(r[0]) == (r[9], r[10]) and now.get(r[1]) == (r[11], r[12])]
        executemany(conn, _delete_one, [(r[0],) for r in keep], ("fid",))
        checked = _utcnow()
        executemany(conn, crop_boxes.insert(), [(*r, checked) for r in keep], ROW_COLUMNS + ("checked_at",))
    return len(keep)


class CropsInterrupted(KeyboardInterrupt):
    """Ctrl-C during a run: how many pairs were saved, and how many are left."""

    def __init__(self, saved: int, left: int):
        super().__init__(f"{saved} saved, {left} left")
        self.saved = saved
        self.left = left


@dataclass
class CropsRun:
    pairs: int = 0  # cropped winners in the projects looked at
    unchanged: int = 0
    looked_at: int = 0
    saved: int = 0
    removed: int = 0  # rows whose pair is gone
    statuses: Counter = field(default_factory=Counter)  # of the pairs looked at in this run
    missing: list[Project] = field(default_factory=list)
    seconds: float = 0.0

    @property
    def rate(self) -> float:
        return self.looked_at / self.seconds if self.seconds > 0 else 0.0


# progress(done, total): pairs looked at so far in this run.
Progress = Callable[[int, int], None]


def run_crops(engine: Engine, names: Optional[Sequence[str]] = None, *, jobs: Optional[int] = None,
              recheck: bool = False, progress: Optional[Progress] = None) -> CropsRun:
    """Find and store the crop box of every cropped winner that needs it."""
    with engine.connect() as conn:
        plan = plan_crops(conn, names, recheck=recheck)
    run = CropsRun(pairs=plan.pairs, unchanged=plan.unchanged, missing=plan.missing)
    remove_rows(engine, plan.stale)
    run.removed = len(plan.stale)
    total = plan.todo
    if progress is not None:
        progress(0, total)
    if not plan.items:
        return run
    # Workers are forked: no connection of ours may be shared with them.
    engine.dispose()
    clock = time.perf_counter()
    pending: list[tuple] = []
    results = _results(plan.items, jobs or default_jobs())
    try:
        for rows in results:
            pending.extend(rows)
            run.looked_at += len(rows)
            run.statuses.update(r[6] for r in rows)
            if len(pending) >= BATCH:
                run.saved += write_rows(engine, pending)
                pending = []
            if progress is not None:
                progress(run.looked_at, total)
    except KeyboardInterrupt:
        results.close()  # stops the workers before anything is written
        run.saved += write_rows(engine, pending)
        raise CropsInterrupted(run.saved, total - run.looked_at) from None
    finally:
        results.close()
    run.saved += write_rows(engine, pending)
    run.seconds = time.perf_counter() - clock
    return run


# ---------------------------------------------------------------- reading the results


def crop_counts(conn: Connection, names: Optional[Sequence[str]] = None) -> dict[str, Counter]:
    """project -> rows per status."""
    final = images.alias("f")
    q = (select(projects.c.name, crop_boxes.c.status, func.count())
         .select_from(crop_boxes.join(final, final.c.id == crop_boxes.c.final_image_id)
                      .join(projects, projects.c.id == final.c.project_id))
         .group_by(projects.c.name, crop_boxes.c.status))
    if names:
        q = q.where(projects.c.name.in_(list(names)))
    out: dict[str, Counter] = {}
    for name, status, n in conn.execute(q):
        out.setdefault(name, Counter())[status] = n
    return out


# The trainer's crop format (crop_training_v2), and the column --include-review adds.
CROP_COLUMNS = ["timestamp", "project_id", "filename", "crop_x1", "crop_y1", "crop_x2", "crop_y2", "width", "height"]
REVIEW_COLUMNS = CROP_COLUMNS + ["status"]
EXPORTED = ("exact", "approx")


def _fraction(value: Optional[int], whole: Optional[int]) -> Optional[float]:
    if value is None or not whole:
        return None
    # Six decimals: a pixel of a 3072 px side is 0.000326, so round(v * side)
    # gives back the exact pixel.
    return round(value / whole, 6)


def crop_rows(conn: Connection, names: Optional[Sequence[str]] = None, *,
              include_review: bool = False) -> Iterator[dict]:
    """One row per crop box: the original's file name and time, the box as
    fractions of the original's size (x1/W, y1/H, x2/W, y2/H, x2 and y2
    exclusive), the original's size in pixels. Exact and approx boxes only,
    unless `include_review` (then every row, with its status)."""
    from .export import iso_utc

    final, original = images.alias("f"), images.alias("s")
    q = (select(projects.c.name, original.c.filename, original.c.timestamp, original.c.width, original.c.height,
                crop_boxes.c.x1, crop_boxes.c.y1, crop_boxes.c.x2, crop_boxes.c.y2, crop_boxes.c.status)
         .select_from(crop_boxes.join(final, final.c.id == crop_boxes.c.final_image_id)
                      .join(original, original.c.id == crop_boxes.c.original_image_id)
                      .join(projects, projects.c.id == final.c.project_id))
         # code point order on every backend, whatever the database's collation
         .order_by(*(dialects.byte_ordered(conn, c) for c in (projects.c.name, original.c.rel_path,
                                                              final.c.rel_path))))
    if names:
        q = q.where(projects.c.name.in_(list(names)))
    if not include_review:
        q = q.where(crop_boxes.c.status.in_(EXPORTED), and_(original.c.width.isnot(None), original.c.height.isnot(None)))
    for project, filename, timestamp, width, height, x1, y1, x2, y2, status in conn.execute(q):
        row = {
            "timestamp": iso_utc(timestamp),
            "project_id": project,
            "filename": filename,
            "crop_x1": _fraction(x1, width),
            "crop_y1": _fraction(y1, height),
            "crop_x2": _fraction(x2, width),
            "crop_y2": _fraction(y2, height),
            "width": width,
            "height": height,
        }
        if include_review:
            row["status"] = status
        yield row


def write_crop_rows(f, rows: Iterable[dict], columns: list[str], fmt: str) -> dict[str, int]:
    """Write rows as csv or jsonl to an open text file; returns rows per project."""
    import csv
    import json

    written: Counter = Counter()
    if fmt == "jsonl":
        for row in rows:
            f.write(json.dumps({c: row[c] for c in columns}, ensure_ascii=False) + "\n")
            written[row["project_id"]] += 1
        return dict(written)
    writer = csv.writer(f, lineterminator="\n")
    writer.writerow(columns)
    for row in rows:
        writer.writerow(["" if row[c] is None else row[c] for c in columns])
        written[row["project_id"]] += 1
    return dict(written)
