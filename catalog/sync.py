"""Plan, then apply: bring one project's rows in line with its folders.

Owns the shape of a project sync. `plan_project` reads everything the
catalogue holds for the project (images, groups with their members, matches)
before anything is written, scans the folders, derives the groups and winner
matches a fresh index of the same folders would derive, and returns the
difference as plain data. `apply_plan` writes exactly that difference, in an
order the foreign keys accept. `catalog index --dry-run` is the plan without
the apply. Stored groups and matches are only read when something must be
derived again.

Derived rows are recomputed from the images the project will hold, never
patched in place: a group whose images changed is replaced, a group whose
images are gone is deleted, so a re-index ends with what a fresh index holds.
The one shortcut: when no image changed and the stored derived rows were
written by the current rules (`projects.derived_version`), they already are
what a fresh derivation gives, because they are a function of the images
alone.
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from sqlalchemy.engine import Connection

from . import dialects, faults
from .errors import CatalogError
from .grouping import (
    GroupPlan,
    delete_groups,
    form_groups,
    group_order,
    new_group,
    plan_groups,
    read_groups,
    read_groups_of,
    read_set_ids,
    runs_in_order,
    selector_order,
    write_groups,
)
from .images import (
    S_DIR,
    S_ID,
    Changes,
    FolderPlan,
    ImageRow,
    Progress,
    RealId,
    plan_folder,
    read_folder,
    to_image_row,
    unchanged_folder,
    write_folder,
)
from .matching import (
    MatchPlan,
    delete_matches,
    group_winners,
    match_finals,
    picked_images,
    plan_matches,
    read_matches,
    winner_of,
    write_matches,
)
from .names import timestamp_key
from .projects import Project
from .schema import images


@dataclass
class ProjectPlan:
    folders: list[FolderPlan]
    groups: GroupPlan
    matches: MatchPlan

    @property
    def rows_to_write(self) -> int:
        return (sum(len(f.inserts) + len(f.updates) + len(f.deletes) for f in self.folders)
                + len(self.groups.inserts) + len(self.groups.updates) + len(self.matches.inserts))

    @property
    def changes(self) -> Changes:
        total = Changes()
        for folder in self.folders:
            total += folder.changes
        return total


def check_sandbox(project: Project) -> None:
    if not os.path.isdir(project.sandbox_dir):
        raise CatalogError(
            f"sandbox folder of project {project.name!r} is missing: {project.sandbox_dir} "
            "(unmounted drive or typo?); nothing was changed"
        )


def no_final_warning(project: Project) -> str:
    if project.final_dir is None:
        return f"no final folder given for project {project.name!r}: it has no winners"
    return (f"final folder {project.final_dir} not found: project {project.name!r} gets no new winners "
            "(final images recorded earlier are kept)")


def plan_project(
    conn: Optional[Connection],
    project_id: Optional[int],
    project: Project,
    *,
    derived_current: bool = False,
    warn: Callable[[str], None] = lambda msg: None,
    progress: Optional[Progress] = None,
) -> ProjectPlan:
    """What the sync of `project` would write. `conn` may be None (and
    `project_id` None) for a project that is not in the catalogue yet."""
    check_sandbox(project)
    stored_sandbox = read_folder(conn, project_id, "sandbox")
    stored_final = read_folder(conn, project_id, "final")

    new_ids = itertools.count(-1, -1)  # provisional, see `real_ids`
    sandbox = plan_folder("sandbox", project.sandbox_dir, stored_sandbox, new_ids, warn=warn, progress=progress)
    if project.final_exists:
        assert project.final_dir is not None
        final = plan_folder("final", project.final_dir, stored_final, new_ids, warn=warn, progress=progress)
    else:
        # A missing final folder is never taken as "nothing was picked":
        # rows from an earlier sync stay until the folder is back.
        warn(no_final_warning(project))
        final = unchanged_folder("final", stored_final)
    plan = ProjectPlan([sandbox, final], GroupPlan(), MatchPlan())
    if not plan.changes.any and derived_current:
        return plan

    plan.groups, plan.matches = derive(conn, project_id, sandbox, final, everything=not derived_current,
                                       progress=progress)
    return plan


def derive(conn: Optional[Connection], project_id: Optional[int], sandbox: FolderPlan, final: FolderPlan, *,
           everything: bool, progress: Optional[Progress] = None) -> tuple[GroupPlan, MatchPlan]:
    """The groups and matches a fresh index of the planned folders would
    hold, as a difference from the stored ones. Still before any write.

    Only what a change can reach is derived again (everything when
    `everything`, e.g. the rules changed): the groups of sub-folders that
    gained or lost an image, the matches of final images that are new or
    changed or share a name or a (timestamp, stage) key with a sandbox image
    that is, and the winner columns of groups whose images were picked or
    unpicked by those matches. Groups of other folders and other matches are
    what a fresh derivation gives already, since they are a function of
    images that did not change. The differential re-index test holds the
    result equal to a fresh index's.
    """
    if progress is not None:
        progress("matching winners", 0, None)
    stored_matches = read_matches(conn, project_id)
    if everything:
        matches = match_finals(sandbox.images(), final.images())
    else:
        finals = _finals_to_match(sandbox, final)
        names = {f.filename for f in finals}
        prefixes = {timestamp_key(f.timestamp) for f in finals if f.timestamp is not None and f.stage is not None}
        found = match_finals(sandbox.with_names(names, prefixes), finals)
        # Matches of final images that stay and were not matched again are
        # kept; those of removed final images go.
        remaining = final.ids()
        matches = {fid: m for fid, m in stored_matches.items() if fid in remaining and fid not in found}
        matches.update(found)
    picked = picked_images(matches)

    if progress is not None:
        progress("grouping", 0, None)
    group_plan = None if everything else regroup(conn, project_id, sandbox, picked)
    if group_plan is None:
        # Stored groups are read whole, with every member, now: deleting
        # images would cascade their memberships away.
        stored_groups = read_groups(conn, project_id)
        groups = form_groups(sandbox.images())
        group_plan = plan_groups(stored_groups, groups, group_winners(groups, picked))
    if not everything:
        # Groups kept as they were whose images were picked or unpicked.
        flipped = picked ^ picked_images(stored_matches)
        deleted = set(group_plan.deletes)
        for group in read_groups_of(conn, project_id, flipped):
            if group.id in deleted:
                continue
            won = winner_of(group.members, picked)
            if won != tuple(group.winner):
                group_plan.updates.append((*won, group.id))
    return group_plan, plan_matches(stored_matches, matches)


def regroup(conn: Optional[Connection], project_id: Optional[int], sandbox: FolderPlan,
            picked: set[int]) -> Optional[GroupPlan]:
    """The groups that change, when the stored groups are those of the
    stored images (the rules did not change): in each sub-folder that gained
    or lost an image, the selector's runs over the images before and after;
    a run found only before is a stored group to delete, a run found only
    after is a group to insert, every other run is a group kept as it is.
    The runs are computed on (name, stage) alone: no row is converted and no
    stored group read but those that go. None when the stored groups are
    not what the stored images give (the caller derives everything)."""
    dirs = sandbox.added_dirs()
    # Per folder, its rows before and after in one list, sorted once.
    rows: dict[str, list] = {d: [] for d in dirs}
    for row in sandbox.rows.values():
        folder = row.dir if isinstance(row, ImageRow) else row[S_DIR]
        if folder in rows:
            rows[folder].append(row)
    for row in sandbox.gone:
        rows[row[S_DIR]].append(row)
    removed = {row[S_ID] for row in sandbox.gone}

    gone: dict[int, tuple[int, ...]] = {}  # first image id -> run
    added: list[list[ImageRow]] = []
    for folder in sorted(dirs):
        both = selector_order(rows[folder])
        # New images have provisional negative ids.
        old = runs_in_order([k for k in both if k[3] >= 0])
        new = runs_in_order([k for k in both if k[3] not in removed] if removed else both)
        old_set, new_set = set(old), set(new)
        gone.update((run[0], run) for run in old if run not in new_set)
        fresh = [run for run in new if run not in old_set]
        if fresh:
            by_id = {row[0]: row for row in rows[folder]}
            added.extend([to_image_row(by_id[i]) for i in run] for run in fresh)

    plan = GroupPlan()
    freed = set()
    for group in read_groups_of(conn, project_id, gone):
        if tuple(i for i, _ in group.members) != gone.get(group.members[0][0]):
            return None  # stored groups drifted from the rules: derive everything
        plan.deletes.append(group.id)
        freed.add(group.set_id)
    if len(plan.deletes) != len(gone):
        return None
    if not added:
        return plan
    # Set ids of deleted groups are free again; every other one is taken.
    taken = set(read_set_ids(conn, project_id)) - freed
    added.sort(key=group_order)
    for members, won in zip(added, group_winners(added, picked)):
        plan.inserts.append(new_group(members, won, taken))
    return plan


def _finals_to_match(sandbox: FolderPlan, final: FolderPlan) -> list[ImageRow]:
    """Final images whose match may differ from the stored one: those read
    now, and those sharing a name or a key with a sandbox image added,
    changed or removed (its candidates changed)."""
    touched = sandbox.read_now() + sandbox.removed()
    names = {i.filename for i in touched}
    keys = {(i.timestamp, i.stage) for i in touched if i.timestamp is not None and i.stage is not None}
    prefixes = {timestamp_key(ts) for ts, _ in keys}
    out = final.read_now()
    fresh = {f.id for f in out}
    for f in final.with_names(names, prefixes):
        if f.id not in fresh and (f.filename in names or (f.timestamp, f.stage) in keys):
            out.append(f)
    return out


def real_ids(real: list[int]) -> RealId:
    """How new images get their real ids. A plan names them by provisional
    ids -1, -2, ... (in walk order), because it is made before the write
    lock is taken, and only under it are ids reserved (PostgreSQL: while
    other projects are written too); provisional id -k becomes real[k-1].
    The writers map ids as they build their rows, so no row is built twice."""

    def real_id(i: Optional[int]) -> Optional[int]:
        return real[-i - 1] if i is not None and i < 0 else i

    return real_id


def apply_plan(conn: Connection, project_id: int, plan: ProjectPlan, progress: Optional[Progress] = None) -> None:
    """Write the plan inside the caller's transaction. Stale derived rows go
    first, while the images they name still exist; then images; then the new
    groups and matches, which may name images inserted just before."""
    real_id = real_ids(dialects.reserve_ids(conn, images, sum(len(f.inserts) for f in plan.folders)))
    delete_matches(conn, plan.matches)
    delete_groups(conn, plan.groups)
    for folder in plan.folders:
        write_folder(conn, project_id, folder, real_id, progress)
    faults.reach("images_written")
    if progress is not None:
        progress("writing groups and matches", 0, None)
    write_groups(conn, project_id, plan.groups, real_id)
    faults.reach("groups_written")
    write_matches(conn, plan.matches, real_id)
    faults.reach("matches_written")
