"""Plan ahead: the next projects of a run are planned by worker processes
while the main process writes the current one.

Owns which projects are handed to the run's workers (catalog/reading.py
`shared_workers`) and how their plans come back. A sync is a plan (read the
project's rows, scan its folders, derive; no lock) and then a write (under
the project's lock, catalog/index.py). One project's plan does not depend on
another's write, so a run over many projects keeps both cores busy: while
one project is written, the next ones are planned.

Plans are still written one project at a time, in the run's order, so ids
and set ids do not depend on which process planned what. A plan made
elsewhere is checked like one made here: under the lock, if the project's
generation moved since it was read, the main process plans again.

Anything that goes wrong in a worker (a folder that cannot be read, a lost
server, a worker that died) is not reported from there: the main process
then plans that project itself and reports what it finds in the usual way.
"""

from __future__ import annotations

import itertools
import os
import threading
import time
from collections.abc import Sequence
from concurrent.futures import Future, ProcessPoolExecutor
from typing import TYPE_CHECKING, Optional

from .reading import run_pool

if TYPE_CHECKING:
    from sqlalchemy.engine import Engine

    from .images import Progress
    from .index import Planned
    from .projects import Project

# Workers plan for a run only when it is large enough to repay starting one
# (about a third of a second of CPU): the catalogue already holds this many
# images, or the walk of the first project finds this many.
# CATALOG_AHEAD_MIN_IMAGES overrides it (0: always, as the tests do to take
# this path on small trees).
MIN_IMAGES = int(os.environ.get("CATALOG_AHEAD_MIN_IMAGES", "5000"))
# While it waits for a worker's plan, the main process plans projects ahead
# of their turn and holds them, as long as the rows they will write stay
# under this (about one 20K-image project of a first index, 15 MB; a
# re-index of unchanged folders writes nothing, so it may plan every project
# ahead). Memory: the plan being written, these, and the workers' plans.
MAX_HELD_ROWS = 20_000
# A SQLite catalogue takes about 280 bytes per image (measured at 120K).
BYTES_PER_IMAGE = 250


# In a worker: one engine per catalogue, kept for the worker's life.
_engines: dict[str, Engine] = {}


def _engine(target: str) -> Engine:
    from .database import open_engine

    engine = _engines.get(target)
    if engine is None:
        engine = _engines[target] = open_engine(target, readonly=True)
    return engine


def plan_elsewhere(target: Optional[str], project: Project) -> Planned:
    """In a worker: the first half of `project`'s sync (catalog/index.py
    `plan_sync`), made on the worker's own read-only connection; `target`
    None: the run creates the catalogue, so the project has no rows to read."""
    from .index import plan_sync

    return _lighter(plan_sync(_engine(target) if target is not None else None, project))


def _get_ready(target: str) -> None:
    """In a worker: import what planning needs and open the catalogue."""
    import catalog.index  # noqa: F401

    _engine(target)


def start_early(target: str, projects: Sequence[Project]) -> Optional[Ahead]:
    """Start the run's workers now, before this process has imported the
    database stack, when it pays: they get ready (a third of a second of
    imports) while this process does the same, instead of after.

    - The catalogue is a SQLite file large enough to hold MIN_IMAGES images:
      the workers open it and wait for `Ahead` to hand out work (or read
      chunks of new files).
    - The run creates a new SQLite catalogue and its first project holds
      MIN_IMAGES images: no project has rows to read, so the workers start
      planning the next projects at once, while this process creates the
      catalogue and plans the first. The `Ahead` returned already hands out
      work; the run gives it its engine (`Ahead.open`)."""
    from .database import sqlite_path

    path = sqlite_path(target)
    if path is None:
        return None
    try:
        large = os.path.getsize(path) >= MIN_IMAGES * BYTES_PER_IMAGE
    except OSError:
        if os.path.exists(path) or len(projects) < 2 or not _holds_images(projects[0].sandbox_dir, MIN_IMAGES):
            return None
        ahead = Ahead(None, None, projects)
        ahead._start()
        return ahead
    if large:
        pool = run_pool()
        if pool is not None:
            pool.submit(_get_ready, target)
    return None


def _holds_images(root: str, count: int) -> bool:
    """Whether the folder `root` holds at least `count` images, as the sync's
    walk finds them (catalog/scan.py), stopping as soon as it has seen that
    many."""
    from .errors import CatalogError
    from .scan import scan_images

    try:
        return sum(1 for _ in itertools.islice(scan_images(root), count)) >= count
    except CatalogError:
        return False  # a folder it cannot read: the sync reports it


def _lighter(planned: Planned) -> Planned:
    """A plan kept for later (or sent back from a worker) needs only its
    writes: the rows were needed to derive, not to write."""
    for folder in planned.plan.folders:
        folder.drop_rows()
    return planned


class Ahead:
    """Gives the plans of a run's projects in order, planning the next ones
    in the workers while one is written.

        ahead = Ahead(engine, target, projects)
        for project in projects:
            planned = ahead.take(project, progress)  # then write it

    Projects are handed to the workers a few ahead of the one being written.
    While the plan the main process needs is still being made by a worker,
    it plans the next projects not handed out yet itself instead of waiting,
    while that keeps the two sides' work even (`_worth_planning_here`) and
    the plans it holds under MAX_HELD_ROWS rows to write, so memory stays
    that of a few projects however many the run has.
    """

    def __init__(self, engine: Optional[Engine], target: Optional[str], projects: Sequence[Project]):
        # None until `open` when made before the catalogue exists (`start_early`).
        self.engine = engine
        # What workers plan on: None while the run creates the catalogue
        # (no project of the run has rows in it before its own write).
        self.target = target
        self.pool: Optional[ProcessPoolExecutor] = None
        self.workers = 0
        self.decided = len(projects) < 2  # nothing to plan ahead of
        # Guards the two below: the pool's thread hands out work too.
        self.lock = threading.RLock()
        # Not handed out yet, in order. The first project is always planned
        # here: this process has nothing else to do until it is planned.
        self.queue = list(projects[1:])
        self.futures: dict[str, Future] = {}
        self.held: dict[str, Optional[Planned]] = {}  # planned here ahead of its turn (None: failed)
        self.to_write = len(projects)  # projects whose write is still to come
        # Seconds the main process took to plan a project, and to write one.
        self.plan_seconds: list[float] = []
        self.write_seconds: list[float] = []

    def open(self, engine: Engine) -> None:
        """The catalogue is open: plans made in this process read it."""
        self.engine = engine

    def wrote(self, seconds: float) -> None:
        """A project's write took `seconds` (told by the sync)."""
        self.write_seconds.append(seconds)

    def take(self, project: Project, progress: Optional[Progress] = None) -> Planned:
        """`project`'s plan: made ahead of its turn, or now. Errors of a plan
        made now are raised; a plan made ahead that failed is made again
        now, where its error is raised."""
        from .index import plan_sync

        with self.lock:
            if self.queue and self.queue[0].name == project.name:
                self.queue.pop(0)  # its turn came before anyone planned it
            future = self.futures.pop(project.name, None)
        if not self.decided and self._catalogue_size() >= MIN_IMAGES:
            self._start()
        while project.name not in self.held and future is not None and not future.done():
            if self._held_rows() >= MAX_HELD_ROWS or not self._worth_planning_here():
                break
            with self.lock:
                ahead = self.queue.pop(0) if self.queue else None
            if ahead is None:
                break  # nothing left to do meanwhile: wait
            clock = time.perf_counter()
            try:
                self.held[ahead.name] = _lighter(plan_sync(self.engine, ahead))
                self.plan_seconds.append(time.perf_counter() - clock)
            except Exception:
                self.held[ahead.name] = None
        planned = self.held.pop(project.name, None)
        if planned is None and future is not None:
            try:
                planned = future.result()
            except Exception:
                planned = None
        if planned is None:
            clock = time.perf_counter()
            planned = plan_sync(self.engine, project, progress if self.decided else self._watching(progress))
            self.plan_seconds.append(time.perf_counter() - clock)
        self.decided = True
        self.to_write -= 1
        return planned

    def _worth_planning_here(self) -> bool:
        """Whether the main process, waiting for a worker's plan, should plan
        the next project itself: when that makes the run end no later than
        waiting would. Either way the run ends when both sides are done: the
        main process when it has written every project still to come, the
        workers when they have planned the one waited for, the others handed
        out and the rest, and the main process has written their last plan.
        Planning here adds a plan to the first and takes one from the
        second, so it pays while

            plan + to_write * write  <=  plans_left * plan / workers + write

        (plans_left counts the one waited for; as long as the left side is
        not above the right, the main process is not what the run waits for).
        A first index writes a lot, so the main process plans fewer projects
        than the workers; a re-index of unchanged folders writes next to
        nothing, and it plans about half. Before both are measured: yes."""
        if not self.plan_seconds or not self.write_seconds or self.workers <= 0:
            return True
        plan = sum(self.plan_seconds) / len(self.plan_seconds)
        write = sum(self.write_seconds) / len(self.write_seconds)
        with self.lock:
            plans_left = 1 + self._running() + len(self.queue)
        return plan + self.to_write * write <= plans_left * plan / self.workers + write

    def _running(self) -> int:
        """Plans handed out (other than the one taken) and not done yet."""
        return sum(not f.done() for f in self.futures.values())

    def _watching(self, progress: Optional[Progress]) -> Progress:
        """`progress`, which also starts planning ahead as soon as the walk
        of the first project has found MIN_IMAGES images: the workers start
        on the next projects while this one is still being planned."""

        def watch(phase: str, done: int, total: Optional[int]) -> None:
            if not self.decided and phase.startswith("scanning") and done >= MIN_IMAGES:
                self._start()
            if progress is not None:
                progress(phase, done, total)

        return watch

    def _held_rows(self) -> int:
        return sum(p.plan.rows_to_write for p in self.held.values() if p is not None)

    def _catalogue_size(self) -> int:
        from sqlalchemy import func, select

        from .schema import images

        assert self.engine is not None  # undecided only in an Ahead made with its engine
        # max(id) rather than count(*): read from the key, not the table.
        with self.engine.connect() as conn:
            return conn.execute(select(func.max(images.c.id))).scalar() or 0

    def _start(self) -> None:
        self.decided = True
        self.pool = run_pool(for_plans=True)
        self.workers = self.pool._max_workers if self.pool is not None else 0  # type: ignore[attr-defined]
        self._hand_out()

    def _hand_out(self, _done: Optional[Future] = None) -> None:
        """Keep one plan per worker going, and one more queued while enough
        projects are left (so a worker starts its next plan while its last
        one travels back, but the last projects stay for whoever is free
        first: a queued plan cannot be taken back). The next is handed out
        as soon as one is done (from the pool's thread), so finished plans
        do not pile up and the main process finds projects to plan itself."""
        with self.lock:
            while (self.pool is not None and self.queue
                   and self._running() < self.workers + (1 if len(self.queue) > self.workers + 1 else 0)):
                project = self.queue.pop(0)
                try:
                    future = self.pool.submit(plan_elsewhere, self.target, project)
                except RuntimeError:  # the pool is shutting down: the run is ending
                    self.queue.insert(0, project)
                    return
                self.futures[project.name] = future
                future.add_done_callback(self._hand_out)
