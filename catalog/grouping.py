"""Group: reproduce the image selector's rising-stage runs.

Owns the nearest-up rule (`selector_runs`), how a project's sandbox images
are cut into per-folder sequences (`form_groups`), and storing the result in
`image_groups` / `group_members` so that unchanged groups keep their id and
set id across syncs.

The rule, as the selector applied it: within one folder, images sorted by
(timestamp, stage, filename); a run starts at the current image; from the
last image taken look at the next LOOKAHEAD images, stop at the first whose
stage is not higher, and take the smallest higher stage seen (earliest on a
tie). A run of two or more is a group and the next run starts after its last
image; a shorter run is dropped and the next starts at the following image.
"""

from __future__ import annotations

from collections import defaultdict
from typing import Sequence

from sqlalchemy import bindparam, func, select
from sqlalchemy.engine import Connection

from .database import executemany
from .images import ImageRow
from .names import format_stage, timestamp_key
from .schema import group_members, image_groups

LOOKAHEAD = 50


def selector_runs(stages: Sequence[float], lookahead: int = LOOKAHEAD) -> list[list[int]]:
    """Indexes of each group in `stages` (already in selector order)."""
    groups = []
    n = len(stages)
    start = 0
    while start < n:
        run = [start]
        last = start
        while True:
            best = None
            last_stage = stages[last]
            for j in range(last + 1, min(last + 1 + lookahead, n)):
                stage = stages[j]
                if stage <= last_stage:
                    break
                if best is None or stage < stages[best]:
                    best = j
            if best is None:
                break
            run.append(best)
            last = best
        if len(run) >= 2:
            groups.append(run)
            start = last + 1
        else:
            start += 1
    return groups


def form_groups(sandbox: Sequence[ImageRow]) -> list[list[ImageRow]]:
    """The selector's groups of a project, folder by folder, in time order."""
    by_dir: dict[str, list[ImageRow]] = defaultdict(list)
    for image in sandbox:
        if image.timestamp is not None and image.stage is not None:
            by_dir[image.dir].append(image)
    groups = []
    for folder in sorted(by_dir):
        # Sorting on the datetime is sorting on the YYYYMMDD_HHMMSS text.
        images = sorted(by_dir[folder], key=lambda i: (i.timestamp, i.stage, i.filename))
        for run in selector_runs([i.stage for i in images]):
            groups.append([images[k] for k in run])
    groups.sort(key=lambda g: (g[0].timestamp, g[0].dir, g[0].filename))
    return groups


def store_groups(conn: Connection, project_id: int, groups: list[list[ImageRow]],
                 winners: list[tuple]) -> None:
    """Write `groups` with their winner columns (`winners[i]` is
    (winner_count, chosen_image_id, chosen_stage) of `groups[i]`), touching
    only what changed.

    A group is the same group when it has the same members; it then keeps its
    id and set id, so exports stay stable across re-indexing.
    """
    members: dict[int, list[int]] = defaultdict(list)
    stored: dict[int, tuple] = {}
    rows = conn.execute(
        select(group_members.c.group_id, group_members.c.image_id, image_groups.c.set_id,
               image_groups.c.winner_count, image_groups.c.chosen_image_id, image_groups.c.chosen_stage)
        .join(image_groups, image_groups.c.id == group_members.c.group_id)
        .where(image_groups.c.project_id == project_id)
        .order_by(group_members.c.group_id, group_members.c.position)
    )
    for group_id, image_id, *rest in rows:
        members[group_id].append(image_id)
        stored[group_id] = tuple(rest)
    existing = {tuple(ids): group_id for group_id, ids in members.items()}

    used: set[str] = set()
    new_groups, updates = [], []
    for group, won in zip(groups, winners):
        group_id = existing.pop(tuple(i.id for i in group), None)
        if group_id is None:
            new_groups.append((group, won))
            continue
        set_id, *was = stored[group_id]
        used.add(set_id)
        if tuple(was) != won:
            updates.append((*won, group_id))

    if existing:
        stale = [(gid,) for gid in existing.values()]
        executemany(conn, group_members.delete().where(group_members.c.group_id == bindparam("group_id")),
                    stale, ("group_id",))
        executemany(conn, image_groups.delete().where(image_groups.c.id == bindparam("group_id")),
                    stale, ("group_id",))
    executemany(conn, _update_winners, updates, _WINNER_COLUMNS + ("group_id",))

    if new_groups:
        # Ids are given, not returned: RETURNING on a many-row insert falls back
        # to one statement per row on some backends. Syncs are serialized by
        # dialects.begin_sync, so max(id) cannot race.
        next_id = (conn.execute(select(func.max(image_groups.c.id))).scalar() or 0) + 1
        group_rows, member_rows = [], []
        for group_id, (group, won) in enumerate(new_groups, start=next_id):
            first, last = group[0], group[-1]
            group_rows.append((
                group_id, project_id, _free_set_id("group_" + timestamp_key(first.timestamp), used),
                first.dir, len(group), ",".join(format_stage(i.stage) for i in group),
                last.stage,  # runs rise: the last stage is the highest
                first.timestamp, last.timestamp, *won,
            ))
            member_rows.extend((image.id, group_id, position) for position, image in enumerate(group))
        executemany(conn, image_groups.insert(), group_rows, _GROUP_COLUMNS)
        executemany(conn, group_members.insert(), member_rows, ("image_id", "group_id", "position"))


_WINNER_COLUMNS = ("winner_count", "chosen_image_id", "chosen_stage")
_update_winners = (
    image_groups.update().where(image_groups.c.id == bindparam("group_id"))
    .values({c: bindparam(c) for c in _WINNER_COLUMNS})
)
_GROUP_COLUMNS = ("id", "project_id", "set_id", "dir", "size", "stages", "max_stage",
                  "first_timestamp", "last_timestamp") + _WINNER_COLUMNS


def _free_set_id(base: str, used: set[str]) -> str:
    candidate, n = base, 1
    while candidate in used:
        n += 1
        candidate = f"{base}_{n}"
    used.add(candidate)
    return candidate
