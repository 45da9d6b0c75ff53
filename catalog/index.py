"""`catalog index`: sync projects into the catalogue, one transaction each.

Owns the order of a project sync: refuse a missing sandbox, sync the sandbox
and final rows of the images table, recompute groups and winner matches when
anything changed, record a `scans` row, commit. A reader therefore sees a
project wholly before or wholly after a sync, and a run killed or interrupted
midway leaves the project as it was.
"""

from __future__ import annotations

import os
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Callable, Optional

from sqlalchemy import select
from sqlalchemy.engine import Connection, Engine

from . import dialects, faults
from .errors import CatalogError
from .grouping import form_groups, store_groups
from .images import Changes, ImageRow, sync_folder
from .matching import Counts, group_winners, match_finals, store_matches
from .projects import Project
from .schema import DERIVED_VERSION, images, projects, scans


@dataclass
class ProjectSummary:
    project: str
    sandbox_dir: str
    final_dir: Optional[str]
    added: int = 0
    changed: int = 0
    removed: int = 0
    unchanged: int = 0
    groups: int = 0
    winners: int = 0
    anomalies: int = 0
    orphans: int = 0
    seconds: float = 0.0
    dry_run: bool = False
    warnings: list[str] = field(default_factory=list)

    def as_dict(self) -> dict:
        return asdict(self)

    def take(self, changes: Changes) -> None:
        self.added, self.changed = changes.added, changes.changed
        self.removed, self.unchanged = changes.removed, changes.unchanged


def utcnow() -> datetime:
    # Stored naive: DateTime columns are UTC by convention on every backend.
    return datetime.now(timezone.utc).replace(tzinfo=None)


def check_sandbox(project: Project) -> None:
    if not os.path.isdir(project.sandbox_dir):
        raise CatalogError(
            f"sandbox folder of project {project.name!r} is missing: {project.sandbox_dir} "
            "(unmounted drive or typo?); nothing was changed"
        )


def _no_final(project: Project) -> str:
    if project.final_dir is None:
        return f"no final folder given for project {project.name!r}: it has no winners"
    return (f"final folder {project.final_dir} not found: project {project.name!r} gets no new winners "
            "(final images recorded earlier are kept)")


def _project_row(conn: Connection, name: str):
    return conn.execute(
        select(projects.c.id, projects.c.derived_version).where(projects.c.name == name)
    ).first()


def index_project(
    engine: Engine,
    project: Project,
    *,
    progress: Optional[Callable[[int], None]] = None,
) -> ProjectSummary:
    check_sandbox(project)
    summary = ProjectSummary(project.name, project.sandbox_dir, project.final_dir)
    warn = summary.warnings.append
    started = utcnow()
    clock = time.perf_counter()

    def count(role_base: int) -> Callable[[int], None]:
        return (lambda n: progress(role_base + n)) if progress else None

    with engine.begin() as conn:
        dialects.begin_sync(conn)
        row = _project_row(conn, project.name)
        if row is None:
            project_id = conn.execute(
                projects.insert().values(name=project.name, sandbox_dir=project.sandbox_dir,
                                         final_dir=project.final_dir)
            ).inserted_primary_key[0]
            derived_version = 0
        else:
            project_id, derived_version = row
            # The project may have moved (a new drive letter, a renamed parent);
            # rows are relative, so only the base folders change.
            conn.execute(
                projects.update().where(projects.c.id == project_id)
                .values(sandbox_dir=project.sandbox_dir, final_dir=project.final_dir)
            )
        faults.reach("sync_started")
        changes, sandbox_rows = sync_folder(conn, project_id, "sandbox", project.sandbox_dir, warn=warn,
                                           progress=count(0))
        scanned = changes.added + changes.changed + changes.unchanged
        final_rows = None
        if project.final_exists:
            final_changes, final_rows = sync_folder(conn, project_id, "final", project.final_dir, warn=warn,
                                                    progress=count(scanned))
            changes += final_changes
        else:
            # A missing final folder is never taken as "nothing was picked":
            # rows from an earlier sync stay until the folder is back.
            warn(_no_final(project))

        faults.reach("images_written")
        counts = None
        if not changes.any and derived_version == DERIVED_VERSION:
            counts = _last_counts(conn, project_id)
        if counts is None:
            counts = derive(conn, project_id, sandbox_rows, final_rows)

        finished = utcnow()
        conn.execute(scans.insert().values(
            project_id=project_id, started=started, finished=finished,
            added=changes.added, changed=changes.changed, removed=changes.removed, unchanged=changes.unchanged,
            **counts._asdict(),
        ))
        conn.execute(
            projects.update().where(projects.c.id == project_id)
            .values(indexed_at=finished, derived_version=DERIVED_VERSION)
        )
        faults.reach("before_commit")
    faults.reach("committed")

    summary.take(changes)
    summary.groups, summary.winners, summary.anomalies, summary.orphans = counts
    summary.seconds = round(time.perf_counter() - clock, 3)
    return summary


def _last_counts(conn: Connection, project_id: int) -> Optional[Counts]:
    """Nothing changed: the project holds what its last sync counted."""
    row = conn.execute(
        select(scans.c.groups, scans.c.winners, scans.c.anomalies, scans.c.orphans)
        .where(scans.c.project_id == project_id).order_by(scans.c.id.desc()).limit(1)
    ).first()
    return Counts(*row) if row else None


def derive(conn: Connection, project_id: int, sandbox_rows: list[tuple],
           final_rows: Optional[list[tuple]]) -> Counts:
    """Recompute the project's groups and winner matches from its images, as
    the sync left them (final rows are read back when the final folder was
    not scanned)."""
    if final_rows is None:
        final_rows = conn.execute(
            select(images.c.id, images.c.dir, images.c.filename, images.c.timestamp,
                   images.c.stage, images.c.width, images.c.height)
            .where(images.c.project_id == project_id, images.c.role == "final")
        ).all()
    sandbox = list(map(ImageRow._make, sandbox_rows))
    finals = list(map(ImageRow._make, final_rows))
    groups = form_groups(sandbox)
    found = match_finals(sandbox, finals)
    winners, counts = group_winners(groups, found)
    store_groups(conn, project_id, groups, winners)
    faults.reach("groups_written")
    store_matches(conn, project_id, found)
    faults.reach("matches_written")
    return counts


def pretend_project(engine: Optional[Engine], project: Project) -> ProjectSummary:
    """What `index_project` would change, without writing (for --dry-run)."""
    check_sandbox(project)
    summary = ProjectSummary(project.name, project.sandbox_dir, project.final_dir, dry_run=True)
    warn = summary.warnings.append
    clock = time.perf_counter()

    def run(conn: Optional[Connection]) -> Changes:
        row = _project_row(conn, project.name) if conn is not None else None
        project_id = row[0] if row else None
        changes = sync_folder(conn, project_id, "sandbox", project.sandbox_dir, pretend=True, warn=warn)[0]
        if project.final_exists:
            changes += sync_folder(conn, project_id, "final", project.final_dir, pretend=True, warn=warn)[0]
        else:
            warn(_no_final(project))
        return changes

    if engine is None:
        changes = run(None)
    else:
        with engine.connect() as conn:
            changes = run(conn)
    summary.take(changes)
    summary.seconds = round(time.perf_counter() - clock, 3)
    return summary
