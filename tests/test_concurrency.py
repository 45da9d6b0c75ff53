"""Concurrent use: readers during an index, and two indexers at once; on
SQLite (WAL, the file's write lock) and on PostgreSQL (snapshots, the sync lock)."""

from __future__ import annotations

import json

import pytest
from proc import catalog, integrity, start, views, wait_until_writing

from catalog.sample import write_sample


@pytest.fixture(scope="module")
def big(tmp_path_factory):
    ws = tmp_path_factory.mktemp("conc") / "ws"
    expected = write_sample(ws, groups=2400, seed=3)
    return ws, expected


@pytest.mark.slow
def test_readers_see_each_project_before_or_after_its_sync(big, backend):
    ws, expected = big
    db = backend.new()
    assert catalog(db, "db", "upgrade").returncode == 0
    full = {n: (p.sandbox_images + p.final_images, len(p.groups)) for n, p in expected.projects.items()}
    writer = start(db, "index", ws)
    # Start reading once the writer is at work, not after a guessed delay.
    assert wait_until_writing(db, writer), writer.stderr.read() if writer.stderr else ""
    reads = reads_during = 0
    query = ("SELECT p.name AS project, (SELECT count(*) FROM images i WHERE i.project_id = p.id) AS n, "
             "(SELECT count(*) FROM groups g WHERE g.project = p.name) AS g FROM projects p")
    while writer.poll() is None or reads < 4:
        reads_during += writer.poll() is None
        result = catalog(db, "sql", query, "--format", "json")
        assert result.returncode == 0, result.stderr  # never "database is locked"
        rows = json.loads(result.stdout)
        for row in rows:
            assert (row["n"], row["g"]) == full[row["project"]], row
        stats = catalog(db, "stats", "--format", "json")
        assert stats.returncode == 0, stats.stderr
        for row in json.loads(stats.stdout)[:-1]:
            p = expected.projects[row["project"]]
            assert (row["sandbox_images"], row["groups"]) == (p.sandbox_images, len(p.groups))
        reads += 1
    assert writer.wait() == 0, writer.stderr.read()
    assert reads_during >= 1, "no read overlapped the index"


@pytest.mark.slow
def test_two_indexers_at_once(big, backend):
    ws, _ = big
    reference = backend.new("ref")
    assert catalog(reference, "index", ws).returncode == 0
    db = backend.new()
    first = start(db, "index", ws)
    wait_until_writing(db, first)  # the second starts while the first holds the lock (or has finished)
    second = start(db, "index", ws)
    outcomes = []
    for proc in (first, second):
        out, err = proc.communicate(timeout=300)
        outcomes.append((proc.returncode, err))
    for code, err in outcomes:
        # Either it waited its turn and succeeded, or it says clearly why not.
        assert code == 0 or (code == 1 and "busy" in err), err
        assert "Traceback" not in err
    assert any(code == 0 for code, _ in outcomes)
    assert integrity(db) == "ok"
    assert views(db) == views(reference)
