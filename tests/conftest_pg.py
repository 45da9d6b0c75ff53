"""Fixtures over the real PostgreSQL server of tests/pg.py, for the
test_postgres*.py modules and for the `backend` fixture of tests/conftest.py
(both load this file with `pytest_plugins`). The server starts only when a
test needs it; under pytest-xdist each worker starts its own.

- `pg`: the server, started once per session and stopped at its end;
- `pg_db`: a fresh, empty catalogue database prepared as the README says;
- `pg_icu`: the same with an ICU en-US collation;
- `pg_indexed`: the sample workspace indexed once, for tests that only read.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from conftest import Run
from pg import Database, Server, start_server


@pytest.fixture(scope="session")
def pg() -> Iterator[Server]:
    server = start_server()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def pg_db(pg: Server) -> Database:
    return pg.new_database()


@pytest.fixture
def pg_icu(pg: Server) -> Database:
    return pg.new_database(icu=True)


@pytest.fixture(scope="session")
def pg_indexed(pg: Server, sample_master):
    """(workspace, Database, expected): the sample indexed by the owner role."""
    root, expected = sample_master
    db = pg.new_database()
    done = Run(db.owner)("index", root, "--quiet")  # type: ignore[arg-type]
    assert done.exit_code == 0, done.output
    return root, db, expected
