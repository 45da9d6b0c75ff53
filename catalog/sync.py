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

import os
from collections.abc import Callable
from dataclasses import dataclass
from typing import Optional

from sqlalchemy.engine import Connection

from . import faults
from .errors import CatalogError
from .grouping import GroupPlan, delete_groups, form_groups, plan_groups, read_groups, write_groups
from .images import (
    Changes,
    FolderPlan,
    Progress,
    next_image_id,
    plan_folder,
    read_folder,
    unchanged_folder,
    write_folder,
)
from .matching import MatchPlan, delete_matches, group_winners, match_finals, plan_matches, read_matches, write_matches
from .projects import Project


@dataclass
class ProjectPlan:
    folders: list[FolderPlan]
    groups: GroupPlan
    matches: MatchPlan

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

    next_id = next_image_id(conn)
    sandbox = plan_folder("sandbox", project.sandbox_dir, stored_sandbox, next_id, warn=warn, progress=progress)
    if project.final_exists:
        assert project.final_dir is not None
        final = plan_folder("final", project.final_dir, stored_final, next_id + len(sandbox.inserts), warn=warn,
                            progress=progress)
    else:
        # A missing final folder is never taken as "nothing was picked":
        # rows from an earlier sync stay until the folder is back.
        warn(no_final_warning(project))
        final = unchanged_folder("final", stored_final)
    plan = ProjectPlan([sandbox, final], GroupPlan(), MatchPlan())
    if not plan.changes.any and derived_current:
        return plan

    # Still before any write: stored groups are read whole, with every member
    # (deleting images would cascade memberships away).
    stored_groups = read_groups(conn, project_id)
    stored_matches = read_matches(conn, project_id)
    sandbox_rows = sandbox.images()
    if progress is not None:
        progress("grouping", 0, None)
    groups = form_groups(sandbox_rows)
    if progress is not None:
        progress("matching winners", 0, None)
    found = match_finals(sandbox_rows, final.images())
    plan.groups = plan_groups(stored_groups, groups, group_winners(groups, found))
    plan.matches = plan_matches(stored_matches, found)
    return plan


def apply_plan(conn: Connection, project_id: int, plan: ProjectPlan, progress: Optional[Progress] = None) -> None:
    """Write the plan inside the caller's transaction. Stale derived rows go
    first, while the images they name still exist; then images; then the new
    groups and matches, which may name images inserted just before."""
    delete_matches(conn, plan.matches)
    delete_groups(conn, plan.groups)
    for folder in plan.folders:
        write_folder(conn, project_id, folder, progress)
    faults.reach("images_written")
    if progress is not None:
        progress("writing groups and matches", 0, None)
    write_groups(conn, project_id, plan.groups)
    faults.reach("groups_written")
    write_matches(conn, plan.matches)
    faults.reach("matches_written")
