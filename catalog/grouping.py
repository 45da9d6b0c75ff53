"""Group: reproduce the image selector's rising-stage runs.

Owns the nearest-up rule (`selector_runs`), how a project's sandbox images
are cut into per-folder sequences (`form_groups`), and the `image_groups` /
`group_members` rows: what is stored (`read_groups`), the difference from what
should be (`plan_groups`, pure), and writing it (`delete_groups`,
`write_groups`), so that unchanged groups keep their id and set id across
syncs and nothing stale survives one.

The rule, as the selector applied it: within one folder, images sorted by
(timestamp, stage, filename); a run starts at the current image; from the
last image taken look at the next LOOKAHEAD images, stop at the first whose
stage is not higher, and take the smallest higher stage seen (earliest on a
tie). A run of two or more is a group and the next run starts after its last
image; a shorter run is dropped and the next starts at the following image.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Iterable, Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from . import dialects
from .bulk import chunks, executemany, fetch_tuples, time_converter
from .images import S_FILENAME, S_ID, TIMESTAMP_CHARS, ImageRow, RealId, keep_id, stored_datetime
from .names import format_stage, timestamp_key
from .schema import group_members, image_groups, images

LOOKAHEAD = 50


def selector_runs(stages: Sequence[float], lookahead: int = LOOKAHEAD) -> list[list[int]]:
    """Indexes of each group in `stages` (already in selector order)."""
    groups = []
    n = len(stages)
    start = 0
    while start < n:
        if start + 1 < n and stages[start + 1] <= stages[start]:
            # Most images start no run (the next one is not higher): the
            # loop below would find just that, at several times the cost.
            start += 1
            continue
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
        stages = [i.stage for i in images if i.stage is not None]  # all of them: filtered above
        for run in selector_runs(stages):
            groups.append([images[k] for k in run])
    groups.sort(key=group_order)
    return groups


def group_order(group: Sequence[ImageRow]) -> tuple:
    """The order in which groups are given set ids (and listed)."""
    first = group[0]
    return (first.timestamp, first.dir, first.filename)


def selector_order(rows: Iterable) -> list[tuple]:
    """(name's first 15 characters, stage, name, image id) of the rows that
    take part in groups (ImageRows or stored rows, see catalog/images.py),
    sorted: the selector's order.

    The first 15 characters are the YYYYMMDD_HHMMSS the timestamp is parsed
    from, so this is the (timestamp, stage, filename) order of `form_groups`
    without converting a stored row's time; a differential test holds the
    two equal."""
    keyed = []
    for row in rows:
        if isinstance(row, ImageRow):
            image_id, filename, timestamp, stage = row.id, row.filename, row.timestamp, row.stage
        else:
            image_id, filename, timestamp, stage = row[S_ID], row[S_FILENAME], row[5], row[6]
        if timestamp is not None and stage is not None:
            keyed.append((filename[:TIMESTAMP_CHARS], stage, filename, image_id))
    keyed.sort()
    return keyed


def runs_in_order(keyed: Sequence[tuple]) -> list[tuple[int, ...]]:
    """The selector's runs over `selector_order` rows, as tuples of image ids."""
    return [tuple(keyed[k][3] for k in run) for run in selector_runs([k[1] for k in keyed])]


def selector_runs_of(rows: Iterable) -> list[tuple[int, ...]]:
    """The selector's runs over one folder's rows, as tuples of image ids."""
    return runs_in_order(selector_order(rows))


def new_group(members: Sequence[ImageRow], won: tuple, used: set[str]) -> tuple:
    """A group to insert: (set_id, member ids, shape, winner), its set id
    the first of group_<first timestamp>, _2, _3, ... not in `used`."""
    first = members[0].timestamp
    assert first is not None  # only timestamped images are grouped
    set_id = _free_set_id("group_" + timestamp_key(first), used)
    return (set_id, tuple(i.id for i in members), shape_of(members), won)


class StoredGroup(NamedTuple):
    id: int
    set_id: str
    members: tuple[int, ...]  # image ids in position order (empty for a group whose images are gone)
    shape: tuple  # (dir, size, stages, max_stage, first_timestamp, last_timestamp)
    winner: tuple  # (winner_count, chosen_image_id, chosen_stage)


def read_groups(conn: Optional[Connection], project_id: Optional[int]) -> list[StoredGroup]:
    """The stored groups of a project with their members, read before the
    sync writes anything: deleting images cascades their memberships, so a
    group read afterwards would look smaller than it was stored."""
    if conn is None or project_id is None:
        return []
    query = (
        select(image_groups.c.id, image_groups.c.set_id, image_groups.c.dir, image_groups.c.size,
               image_groups.c.stages, image_groups.c.max_stage, image_groups.c.first_timestamp,
               image_groups.c.last_timestamp, image_groups.c.winner_count, image_groups.c.chosen_image_id,
               image_groups.c.chosen_stage, group_members.c.image_id)
        .select_from(image_groups.outerjoin(group_members, group_members.c.group_id == image_groups.c.id))
        .where(image_groups.c.project_id == project_id)
        .order_by(image_groups.c.id, group_members.c.position)
    )
    rows = fetch_tuples(conn, query)
    heads: dict[int, tuple] = {}
    members: dict[int, list[int]] = {}
    for gid, set_id, folder, size, stages, max_stage, first, last, count, chosen, chosen_stage, image_id in rows:
        if gid not in heads:
            heads[gid] = (set_id, (folder, size, stages, max_stage, stored_datetime(first), stored_datetime(last)),
                          (count, chosen, chosen_stage))
            members[gid] = []
        if image_id is not None:
            members[gid].append(image_id)
    return [StoredGroup(gid, set_id, tuple(members[gid]), shape, winner)
            for gid, (set_id, shape, winner) in heads.items()]


def read_set_ids(conn: Optional[Connection], project_id: Optional[int]) -> dict[str, str]:
    """set id -> sandbox folder, of every stored group of a project."""
    if conn is None or project_id is None:
        return {}
    return dict(fetch_tuples(conn, select(image_groups.c.set_id, image_groups.c.dir)
                             .where(image_groups.c.project_id == project_id)))


class GroupOfImages(NamedTuple):
    """A stored group seen from its images: what deciding its winner needs."""

    id: int
    set_id: str
    dir: str
    winner: tuple  # (winner_count, chosen_image_id, chosen_stage) as stored
    members: tuple[tuple[int, Optional[float]], ...]  # (image id, stage) in position order


def read_groups_of(conn: Optional[Connection], project_id: Optional[int],
                   image_ids: Collection[int]) -> list[GroupOfImages]:
    """The stored groups that hold any of `image_ids`, with every member."""
    if conn is None or project_id is None or not image_ids:
        return []
    holding = (select(group_members.c.group_id)
               .where(group_members.c.image_id.in_(bindparam("ids", expanding=True))))
    query = (
        select(image_groups.c.id, image_groups.c.set_id, image_groups.c.dir, image_groups.c.winner_count,
               image_groups.c.chosen_image_id,
               image_groups.c.chosen_stage, group_members.c.image_id, images.c.stage)
        .select_from(image_groups.join(group_members, group_members.c.group_id == image_groups.c.id)
                     .join(images, images.c.id == group_members.c.image_id))
        .where(image_groups.c.project_id == project_id, image_groups.c.id.in_(holding))
        .order_by(image_groups.c.id, group_members.c.position)
    )
    groups: dict[int, tuple] = {}
    for chunk in chunks(sorted(image_ids)):
        for gid, set_id, folder, count, chosen, chosen_stage, image_id, stage in fetch_tuples(
                conn, query, {"ids": chunk}):
            if gid not in groups:
                groups[gid] = (set_id, folder, (count, chosen, chosen_stage), [])
            groups[gid][3].append((image_id, stage))
    return [GroupOfImages(gid, set_id, folder, winner, tuple(members))
            for gid, (set_id, folder, winner, members) in groups.items()]


def shape_of(group: Sequence[ImageRow]) -> tuple:
    """The columns of `image_groups` that follow from its members alone."""
    first, last = group[0], group[-1]
    return (first.dir, len(group), ",".join(format_stage(i.stage) for i in group),
            last.stage,  # runs rise: the last stage is the highest
            first.timestamp, last.timestamp)


@dataclass
class GroupPlan:
    """The difference between the groups a project holds and those it should."""

    deletes: list[int] = field(default_factory=list)  # stored group ids
    inserts: list[tuple] = field(default_factory=list)  # (set_id, members, shape, winner)
    updates: list[tuple] = field(default_factory=list)  # (*winner, group_id)
    kept: int = 0

    @property
    def any(self) -> bool:
        return bool(self.deletes or self.inserts or self.updates)


def plan_groups(stored: Sequence[StoredGroup], groups: Sequence[Sequence[ImageRow]],
                winners: Sequence[tuple], taken: Collection[str] = ()) -> GroupPlan:
    """Compare the stored groups with `groups` (and their `winners`, as
    `group_winners` gives them).

    A group is the same group when it has the same members and the same
    stored shape; it then keeps its id and set id, so exports stay stable
    across re-indexing, and only its winner columns are updated. Every other
    stored group is deleted (including one that lost images since it was
    written, or has none left), and every new group gets a set id that no
    kept group uses, in the order a fresh index would assign them. `taken`
    are the set ids of the project's groups left out of `stored` (those of
    folders that did not change), which stay as they are.
    """
    plan = GroupPlan()
    by_identity: dict[tuple, StoredGroup] = {}
    for group in stored:
        identity = (group.members, group.shape)
        if identity in by_identity or len(group.members) != group.shape[1]:
            plan.deletes.append(group.id)
        else:
            by_identity[identity] = group
    used: set[str] = set(taken)
    new = []
    for members, won in zip(groups, winners):
        ids = tuple(i.id for i in members)
        shape = shape_of(members)
        old = by_identity.pop((ids, shape), None)
        if old is None:
            new.append((members, won))
            continue
        plan.kept += 1
        used.add(old.set_id)
        if old.winner != tuple(won):
            plan.updates.append((*won, old.id))
    plan.deletes.extend(g.id for g in by_identity.values())
    # Set ids freed by deleted groups are free again; kept ones are taken.
    for members, won in new:
        plan.inserts.append(new_group(members, won, used))
    return plan


def write_groups(conn: Connection, project_id: int, plan: GroupPlan,
                 real_id: RealId = keep_id) -> None:
    """Write a group plan; stale groups were deleted first by `delete_groups`.
    `real_id` maps the provisional ids of new images (catalog/sync.py)."""
    executemany(conn, _update_winners, [(count, real_id(chosen), stage, gid)
                                        for count, chosen, stage, gid in plan.updates],
                _WINNER_COLUMNS + ("group_id",))
    if not plan.inserts:
        return
    as_time = time_converter(conn)
    group_rows: list[tuple] = []
    member_rows: list[tuple] = []
    for group_id, (set_id, ids, shape, won) in zip(dialects.reserve_ids(conn, image_groups, len(plan.inserts)),
                                                   plan.inserts):
        folder, size, stages, max_stage, first, last = shape
        count, chosen, chosen_stage = won
        # In the driver's form (times converted): built once.
        group_rows.append((group_id, project_id, set_id, folder, size, stages, max_stage, as_time(first),
                           as_time(last), count, real_id(chosen), chosen_stage))
        member_rows.extend((real_id(image_id), group_id, position) for position, image_id in enumerate(ids))
    executemany(conn, image_groups.insert(), group_rows, _GROUP_COLUMNS, converted=True)
    executemany(conn, group_members.insert(), member_rows, ("image_id", "group_id", "position"))


def delete_groups(conn: Connection, plan: GroupPlan) -> None:
    stale = [(gid,) for gid in plan.deletes]
    executemany(conn, group_members.delete().where(group_members.c.group_id == bindparam("group_id")),
                stale, ("group_id",))
    executemany(conn, image_groups.delete().where(image_groups.c.id == bindparam("group_id")),
                stale, ("group_id",))


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
