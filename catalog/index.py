"""`catalog index` and `catalog forget`: the writes of whole projects.

Owns what happens to a project as a unit: its row in `projects` (created,
re-pointed when its folders moved, forgotten), one transaction per project
sync (plan and apply, see catalog/sync.py, then a `scans` row), turning a
failed project into one error line while the others go on, and reporting
projects whose folders are gone. A reader sees a project wholly before or
wholly after a sync, and a run killed or interrupted midway leaves the
project being synced as it was.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, NamedTuple, Optional

from sqlalchemy import delete, func, select
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import SQLAlchemyError

from . import dialects, faults
from .errors import CatalogError
from .images import Progress
from .projects import Project, missing_projects, resolve_names
from .schema import (
    DERIVED_VERSION,
    crop_boxes,
    group_members,
    image_groups,
    images,
    matches,
    projects,
    review_marks,
    scans,
)
from .sync import ProjectPlan, apply_plan, plan_project
from .views import project_counts

if TYPE_CHECKING:
    from .ahead import Ahead


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
    decisions: int = 0
    anomalies: int = 0
    orphans: int = 0
    skipped: int = 0
    kept_twice: int = 0
    groups_added: int = 0
    groups_removed: int = 0
    moved_from: Optional[str] = None  # the folder the project was catalogued from, when it changed
    moved_to: Optional[str] = None
    moved_from_exists: bool = False  # the old folder is still there: two copies of one project?
    seconds: float = 0.0
    dry_run: bool = False
    error: Optional[str] = None
    warnings: list[str] = field(default_factory=list)
    # --dry-run --list: role -> {"added": [...], "changed": [...], "removed": [...]} relative paths
    paths: Optional[dict] = None

    # What only a real sync knows: read back from the views after writing.
    DERIVED = ("groups", "decisions", "anomalies", "orphans", "skipped", "kept_twice")

    def as_dict(self) -> dict:
        out = asdict(self)
        if self.dry_run:
            # A dry run does not derive these; zeros would read as facts.
            for key in self.DERIVED:
                del out[key]
        if self.paths is None:
            del out["paths"]
        return out

    def take(self, plan: ProjectPlan, *, list_paths: bool = False) -> None:
        changes = plan.changes
        self.added, self.changed = changes.added, changes.changed
        self.removed, self.unchanged = changes.removed, changes.unchanged
        self.groups_added, self.groups_removed = len(plan.groups.inserts), len(plan.groups.deletes)
        if list_paths:
            self.paths = {
                f.role: {"added": f.added_paths, "changed": f.changed_paths, "removed": f.removed_paths}
                for f in plan.folders
            }


class SyncInterrupted(KeyboardInterrupt):
    """Ctrl-C during a project's sync: which project, and whether its
    transaction had already committed when it came."""

    def __init__(self, project: str, committed: bool):
        super().__init__(project)
        self.project = project
        self.committed = committed


def utcnow() -> datetime:
    # Stored naive: DateTime columns are UTC by convention on every backend.
    return datetime.now(timezone.utc).replace(tzinfo=None)


class ProjectRow(NamedTuple):
    """A project's row as a sync reads it (a plain tuple: it may travel
    between processes with a plan, see catalog/ahead.py)."""

    id: int
    derived_version: int
    sandbox_dir: str
    final_dir: Optional[str]
    generation: int


@dataclass
class Planned:
    """A sync's plan and what it was planned on: the project's row as it was
    read (None: not catalogued yet) and the plan's warnings."""

    planned_on: Optional[ProjectRow]
    plan: ProjectPlan
    warnings: list[str]


def _project_row(conn: Connection, name: str) -> Optional[ProjectRow]:
    row = conn.execute(
        select(projects.c.id, projects.c.derived_version, projects.c.sandbox_dir, projects.c.final_dir,
               projects.c.generation)
        .where(projects.c.name == name)
    ).first()
    return None if row is None else ProjectRow(*row)


def _note_move(summary: ProjectSummary, row, project: Project) -> bool:
    """Record on `summary` whether the project is catalogued from other folders."""
    if row is None:
        return False
    if row.sandbox_dir != project.sandbox_dir:
        summary.moved_from, summary.moved_to = row.sandbox_dir, project.sandbox_dir
    elif row.final_dir != project.final_dir:
        summary.moved_from, summary.moved_to = row.final_dir, project.final_dir
    else:
        return False
    summary.moved_from_exists = summary.moved_from is not None and os.path.isdir(summary.moved_from)
    return True


def index_project(
    engine: Engine,
    project: Project,
    *,
    progress: Optional[Progress] = None,
    ahead: Optional[Ahead] = None,
) -> ProjectSummary:
    """Sync one project; `ahead`: the run's planner (catalog/ahead.py), which
    may have planned it already."""
    committed = False
    try:
        summary = _sync(engine, project, progress, ahead)
        committed = True
        faults.reach("committed")
    except KeyboardInterrupt:
        raise SyncInterrupted(project.name, committed) from None
    return summary


def plan_sync(engine: Optional[Engine], project: Project, progress: Optional[Progress] = None) -> Planned:
    """The first half of a sync: read the project's rows, scan its folders
    and derive, in one read transaction that takes no lock. `engine` None:
    plan on no rows at all (the catalogue is being created; the write finds
    whether the project got rows meanwhile, as for any plan)."""
    warnings: list[str] = []
    if engine is None:
        return Planned(None, plan_project(None, None, project, warn=warnings.append, progress=progress), warnings)
    with engine.connect() as conn:
        dialects.reading(conn)
        with conn.begin():
            planned_on = _project_row(conn, project.name)
            plan = plan_project(conn, planned_on.id if planned_on is not None else None, project,
                                derived_current=planned_on is not None and planned_on.derived_version == DERIVED_VERSION,
                                warn=warnings.append, progress=progress)
    return Planned(planned_on, plan, warnings)


def _sync(engine: Engine, project: Project, progress: Optional[Progress],
          ahead: Optional[Ahead] = None) -> ProjectSummary:
    """Plan without a lock, then write under the project's lock.

    The plan (reading the project's rows, scanning its folders, deriving)
    holds no lock, so a slow drive holds up nobody. The write takes the
    project's lock (catalog/dialects.py `lock_projects`) and checks that the
    project's generation is the one planned on; if another sync of the same
    project committed meanwhile, the plan is made again under the lock."""
    summary = ProjectSummary(project.name, project.sandbox_dir, project.final_dir)
    started = utcnow()
    clock = time.perf_counter()
    planned = ahead.take(project, progress) if ahead is not None else plan_sync(engine, project, progress)
    planned_on, plan = planned.planned_on, planned.plan
    summary.warnings.extend(planned.warnings)
    faults.reach("planned")
    writing = time.perf_counter()
    with engine.begin() as conn:
        row = _project_row(conn, project.name)
        created = False
        if row is None:
            created = dialects.create_project(conn, projects, {
                "name": project.name, "sandbox_dir": project.sandbox_dir, "final_dir": project.final_dir})
            row = _project_row(conn, project.name)
        assert row is not None  # created above, or by another sync
        dialects.lock_projects(conn, [row.id])
        row = _project_row(conn, project.name)  # as it is now that nobody else may write it
        assert row is not None  # locked: nobody may forget it now
        project_id = row.id
        faults.reach("sync_started")
        unchanged = (created and planned_on is None) or (
            planned_on is not None and (planned_on.id, planned_on.generation) == (row.id, row.generation))
        if not unchanged:
            # Another sync of this project committed while we planned.
            summary.warnings.clear()
            plan = plan_project(conn, project_id, project, derived_current=row.derived_version == DERIVED_VERSION,
                                warn=summary.warnings.append, progress=progress)
        if not created and _note_move(summary, row, project):
            # Rows are relative to the folders, so only the bases change;
            # the sync then finds what differs in the new place.
            conn.execute(
                projects.update().where(projects.c.id == project_id)
                .values(sandbox_dir=project.sandbox_dir, final_dir=project.final_dir)
            )
        apply_plan(conn, project_id, plan, progress)
        counts = project_counts(conn, project.name)
        changes = plan.changes
        conn.execute(scans.insert().values(
            project_id=project_id, started=started, finished=utcnow(),
            added=changes.added, changed=changes.changed, removed=changes.removed, unchanged=changes.unchanged,
            groups=counts["groups"], winners=counts["winners"], anomalies=counts["anomalies"],
            orphans=counts["orphans"],
        ))
        conn.execute(
            projects.update().where(projects.c.id == project_id)
            .values(indexed_at=utcnow(), derived_version=DERIVED_VERSION, generation=projects.c.generation + 1)
        )
        faults.reach("before_commit")
    if ahead is not None:
        ahead.wrote(time.perf_counter() - writing)
    summary.take(plan)
    for key in ProjectSummary.DERIVED:
        setattr(summary, key, counts[key])
    summary.seconds = round(time.perf_counter() - clock, 3)
    return summary


def pretend_project(engine: Optional[Engine], project: Project, *, list_paths: bool = False) -> ProjectSummary:
    """What `index_project` would change, without writing (for --dry-run)."""
    summary = ProjectSummary(project.name, project.sandbox_dir, project.final_dir, dry_run=True)
    clock = time.perf_counter()

    def run(conn: Optional[Connection]) -> ProjectPlan:
        row = _project_row(conn, project.name) if conn is not None else None
        _note_move(summary, row, project)
        return plan_project(conn, row.id if row is not None else None, project,
                            derived_current=row is not None and row.derived_version == DERIVED_VERSION,
                            warn=summary.warnings.append)

    if engine is None:
        plan = run(None)
    else:
        with engine.connect() as conn:
            plan = run(conn)
    summary.take(plan, list_paths=list_paths)
    summary.seconds = round(time.perf_counter() - clock, 3)
    return summary


def sync_or_fail(engine: Optional[Engine], project: Project, *, dry_run: bool = False, list_paths: bool = False,
                 progress: Optional[Progress] = None, target: str = "",
                 ahead: Optional[Ahead] = None) -> ProjectSummary:
    """Sync (or pretend to) one project; a failure becomes `summary.error`
    instead of stopping the projects after it. Interrupts still stop the run."""
    try:
        if dry_run:
            return pretend_project(engine, project, list_paths=list_paths)
        assert engine is not None
        return index_project(engine, project, progress=progress, ahead=ahead)
    except CatalogError as exc:
        message = str(exc)
    except SQLAlchemyError as exc:
        from .database import describe_db_error

        message = str(describe_db_error(exc, target))
    except OSError as exc:
        message = f"{exc.strerror or exc} ({exc.filename}); nothing was changed for this project"
    return ProjectSummary(project.name, project.sandbox_dir, project.final_dir, dry_run=dry_run,
                          error=message)


def vanished(engine: Optional[Engine], indexed: Sequence[str]) -> list[Project]:
    """Catalogued projects, other than `indexed`, whose sandbox folder is gone.

    A courtesy after the syncs: when the database cannot be read now (a
    server that went away, which every failed project already reported),
    there is nothing to add, and the run's totals must still be printed."""
    if engine is None:
        return []
    try:
        with engine.connect() as conn:
            return [p for p in missing_projects(conn) if p.name not in set(indexed)]
    except SQLAlchemyError:
        return []


@dataclass
class Forgotten:
    project: str
    images: int
    groups: int


def forget(engine: Engine, names: Sequence[str], *, dry_run: bool = False) -> list[Forgotten]:
    """Remove projects and every row derived from them, in one transaction
    (or only count what would go)."""
    out = []
    with engine.begin() as conn:
        ids = dict(conn.execute(select(projects.c.name, projects.c.id)).all())
        wanted = resolve_names(sorted(ids), names)
        if not dry_run:
            dialects.lock_projects(conn, [ids[name] for name in wanted])
        for name in wanted:
            pid = ids[name]
            n_images = conn.execute(select(func.count()).select_from(images)
                                    .where(images.c.project_id == pid)).scalar() or 0
            n_groups = conn.execute(select(func.count()).select_from(image_groups)
                                    .where(image_groups.c.project_id == pid)).scalar() or 0
            out.append(Forgotten(name, n_images, n_groups))
            if dry_run:
                continue
            # Explicit deletes, children first: the same statements on every
            # backend, without leaning on cascades being switched on.
            project_images = select(images.c.id).where(images.c.project_id == pid)
            conn.execute(delete(crop_boxes).where(crop_boxes.c.final_image_id.in_(project_images)))
            conn.execute(delete(review_marks).where(review_marks.c.project_id == pid))
            conn.execute(delete(matches).where(matches.c.final_image_id.in_(project_images)))
            conn.execute(delete(group_members).where(group_members.c.image_id.in_(project_images)))
            conn.execute(delete(image_groups).where(image_groups.c.project_id == pid))
            conn.execute(delete(images).where(images.c.project_id == pid))
            conn.execute(delete(scans).where(scans.c.project_id == pid))
            conn.execute(delete(projects).where(projects.c.id == pid))
    return out
