"""Read names and headers of new and changed files, on every core.

Owns the one part of indexing that spreads over processes: parsing each new
file's name (catalog/names.py) and reading its header (catalog/headers.py).
The walk hands files over as it finds them, in chunks; worker processes read
them while the walk goes on, and the results come back in walk order, so
the ids given to new images do not depend on the number of cores.

Workers are started only once a folder has a whole chunk of new files (a
re-index with a few changes never pays for them), ignore Ctrl-C (the main
process decides what an interrupt means), and die with the main process
even when it is killed (Linux: PR_SET_PDEATHSIG), so no worker outlives a
killed `catalog index`. When the walk ends, chunks no worker has started
yet are read by the main process itself: both cores stay busy to the end.
"""

from __future__ import annotations

import atexit
import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
from contextlib import contextmanager
from typing import Optional, Union

from .headers import pixel_size
from .names import parse_name

# Files per hand-over: large enough that pickling is a small share of the
# work, small enough that the walk is not kept waiting at its end.
CHUNK = 2000

# (timestamp, stage, stage_label, width, height)
Fields = tuple


def read_fields(files: list[tuple[str, str]]) -> list[Fields]:
    """What the names and headers of (absolute path, file name) pairs say."""
    out = []
    for path, filename in files:
        size = pixel_size(path) or (None, None)
        out.append((*parse_name(filename), *size))
    return out


# True inside a worker process: a worker reads (or plans) in itself and never
# starts workers of its own.
_in_worker = False


def _worker_init(parent: int) -> None:
    global _in_worker
    _in_worker = True
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    # A worker's way out is the command's (the run waits for it to end).
    from .__main__ import before_exit

    atexit.register(before_exit)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # no prctl: the worker ends when its queue closes
    if os.getppid() != parent:
        # The main process died while this one was starting, before the
        # signal was asked for: nobody will hand it work or read its output.
        os._exit(0)


def default_workers() -> int:
    """Worker processes beside the main one, which walks: one per other core
    (none inside a worker)."""
    if _in_worker:
        return 0
    return max(0, min((os.cpu_count() or 1) - 1, 8))


def _start_pool(workers: int) -> ProcessPoolExecutor:
    _start_quiet_resource_tracker()
    return ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("spawn"), initializer=_worker_init,
                               initargs=(os.getpid(),))


def _start_quiet_resource_tracker() -> None:
    """Start multiprocessing's resource tracker (the helper process that
    frees the pool's semaphores if this process is killed) with its stderr
    on /dev/null. After a kill it would otherwise print a warning about
    "leaked semaphore objects" under the user's prompt, for a clean-up it
    does anyway. It inherits file descriptor 2, hence the swap around its
    start; nothing else writes meanwhile."""
    from multiprocessing import resource_tracker

    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        resource_tracker.ensure_running()
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _RunPool:
    """The pool shared by every folder of one run (`shared_workers`)."""

    def __init__(self, workers: int):
        self.workers = workers
        self.pool: Optional[ProcessPoolExecutor] = None
        # Workers plan whole projects (catalog/ahead.py): chunks of the main
        # process's own reading would wait behind those plans, so it reads
        # them itself.
        self.planning = False

    def get(self) -> ProcessPoolExecutor:
        if self.pool is None:
            self.pool = _start_pool(self.workers)
        return self.pool


_shared: Optional[_RunPool] = None


@contextmanager
def shared_workers(workers: Optional[int] = None) -> Iterator[None]:
    """Let every Reader inside (and `run_pool`'s callers) share one pool of
    workers, started at first use and stopped on leaving. Starting a worker
    costs about a third of a second of CPU (a fresh interpreter importing
    the package); a run over many projects pays it once instead of per folder."""
    global _shared, _abandoned
    if _shared is not None:  # already inside one
        yield
        return
    _shared = _RunPool(default_workers() if workers is None else workers)
    stopped = False
    try:
        yield
    except BaseException:
        stopped = True
        raise
    finally:
        run, _shared = _shared, None
        if run.pool is not None:
            if stopped:
                # Ctrl-C or an error stopped the run: a worker may be
                # planning a whole project (seconds of work), and nothing it
                # returns is wanted any more. The workers are killed, and
                # the pool is not shut down: its shutdown would wait for
                # that plan, and it sends them stop messages, one of which,
                # written to a pipe a dead worker closed, makes the pool's
                # feeder thread print a traceback. The command line ends
                # the process without running exit handlers, which would do
                # the same (`abandoned`).
                processes = list((getattr(run.pool, "_processes", None) or {}).values())
                for process in processes:
                    process.kill()
                for process in processes:
                    process.join()
                _abandoned = True
            else:
                run.pool.shutdown(wait=True, cancel_futures=True)


# Set when a run's workers were killed on the way out of `shared_workers`
# (Ctrl-C or an error; a run that ends normally shuts its pool down).
_abandoned = False


def abandoned() -> bool:
    """Whether this process killed its workers (Ctrl-C or an error) and
    should end without the interpreter's exit handlers."""
    return _abandoned


def run_pool(*, for_plans: bool = False) -> Optional[ProcessPoolExecutor]:
    """The pool of the run this process is in (`shared_workers`), started now
    if it was not yet; None outside a run or when there are no workers.
    `for_plans`: its workers will plan projects from now on."""
    if _shared is None or _shared.workers <= 0:
        return None
    _shared.planning = _shared.planning or for_plans
    return _shared.get()


class Reader:
    """Collects files in walk order and yields their fields in the same order.

        reader = Reader()
        for each file found: reader.add(path, name)
        for fields in reader.results(): ...
        reader.close()  # or use it as a context manager
    """

    def __init__(self, workers: Optional[int] = None, chunk: Optional[int] = None):
        self.workers = default_workers() if workers is None else workers
        self.chunk = CHUNK if chunk is None else chunk
        self.pending: list[tuple[str, str]] = []
        # In walk order: a chunk handed to the pool, or one kept to read here.
        self.parts: list[Union[Future, list[tuple[str, str]]]] = []
        self.pool: Optional[ProcessPoolExecutor] = None
        self.own_pool = False

    def add(self, path: str, filename: str) -> None:
        self.pending.append((path, filename))
        if len(self.pending) >= self.chunk:
            self._hand_over()

    def _hand_over(self) -> None:
        files, self.pending = self.pending, []
        if self.workers <= 0 or (_shared is not None and _shared.planning):
            self.parts.append(files)
            return
        if self.pool is None:
            if _shared is not None and _shared.workers == self.workers:
                self.pool = _shared.get()
            else:
                self.pool, self.own_pool = _start_pool(self.workers), True
        future = self.pool.submit(read_fields, files)
        future.files = files  # type: ignore[attr-defined]
        self.parts.append(future)

    def results(self) -> Iterator[Fields]:
        """Every file's fields, in the order the files were added."""
        if self.pending:
            self.parts.append(self.pending)
            self.pending = []
        done: dict[int, list[Fields]] = {}
        # From the end: chunks no worker has started are read here while the
        # workers finish theirs (a started chunk cannot be cancelled).
        for k in range(len(self.parts) - 1, -1, -1):
            part = self.parts[k]
            if isinstance(part, list):
                done[k] = read_fields(part)
            elif part.cancel():
                done[k] = read_fields(part.files)  # type: ignore[attr-defined]
        for k, part in enumerate(self.parts):
            yield from done.pop(k) if k in done else self._result(part)  # type: ignore[arg-type]
        self.parts = []

    @staticmethod
    def _result(part: Future) -> list[Fields]:
        try:
            return part.result()
        except BrokenExecutor:
            # A worker could not start or died (a host program without a
            # main guard, memory): read the chunk here; nothing is lost.
            return read_fields(part.files)  # type: ignore[attr-defined]

    def close(self) -> None:
        if self.pool is None:
            return
        if self.own_pool:
            self.pool.shutdown(wait=True, cancel_futures=True)
        else:
            # A shared pool goes on serving other folders: only this
            # folder's chunks that no worker has started are dropped.
            for part in self.parts:
                if isinstance(part, Future):
                    part.cancel()
        self.parts = []
        self.pool = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
