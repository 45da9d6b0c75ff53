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

import multiprocessing
import os
import signal
import sys
from collections.abc import Iterator
from concurrent.futures import BrokenExecutor, Future, ProcessPoolExecutor
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


def _worker_init() -> None:
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if sys.platform.startswith("linux"):
        try:
            import ctypes

            PR_SET_PDEATHSIG = 1
            ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)
        except (OSError, AttributeError):
            pass  # no prctl: the worker still ends when its queue closes


def default_workers() -> int:
    """Worker processes beside the main one, which walks: one per other core."""
    return max(0, min((os.cpu_count() or 1) - 1, 8))


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

    def add(self, path: str, filename: str) -> None:
        self.pending.append((path, filename))
        if len(self.pending) >= self.chunk:
            self._hand_over()

    def _hand_over(self) -> None:
        files, self.pending = self.pending, []
        if self.workers <= 0:
            self.parts.append(files)
            return
        if self.pool is None:
            self.pool = ProcessPoolExecutor(self.workers, mp_context=multiprocessing.get_context("spawn"),
                                            initializer=_worker_init)
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
        if self.pool is not None:
            self.pool.shutdown(wait=True, cancel_futures=True)
            self.pool = None

    def __enter__(self) -> Reader:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
