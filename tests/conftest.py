"""Shared fixtures: the sample workspace (written once), fresh catalogues, and
a CLI runner that returns exit code, stdout and stderr.

Tests about the catalogue's contents run on both backends: a module or test
that uses the `backend` fixture (most say `pytestmark =
pytest.mark.usefixtures("backend")`) runs once on SQLite and once on
PostgreSQL (the server of tests/pg.py, started once per session), and then
`run`, `indexed` and `backend.new()` give it catalogues of that backend:
a file path, or the URL of a fresh database, half of them with an ICU en-US
collation. `query` reads rows back from either. A test that is about SQLite
by nature says why with `@pytest.mark.sqlite_only("...")` and runs on
SQLite only."""

from __future__ import annotations

import os
import shutil
import sqlite3
import zlib
from pathlib import Path
from typing import Union

import pytest
from hypothesis import HealthCheck, settings
from proc import is_url, rows
from typer.testing import CliRunner

from catalog.cli import app
from catalog.sample import Expected, write_sample

# Property tests must not depend on how busy the machine is: no per-example
# deadline, and slow data generation is not a failure (a test's own
# @settings still sets its example counts).
settings.register_profile("catalog", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("catalog")

SAMPLE_GROUPS = 60
SAMPLE_SEED = 7

# The server's fixtures (`pg`, ...), for `backend` and the PostgreSQL tests.
pytest_plugins = ["conftest_pg"]

BACKENDS = ["sqlite", "postgresql"]
Target = Union[Path, str]  # a SQLite file, or a PostgreSQL database's URL


def pytest_configure(config):
    config.addinivalue_line("markers", "sqlite_only(reason): a test of a module run on both backends that is about "
                                       "SQLite by nature; runs on SQLite only")


def pytest_generate_tests(metafunc):
    if "backend" in metafunc.fixturenames:
        only = metafunc.definition.get_closest_marker("sqlite_only")
        assert only is None or only.args, f"{metafunc.definition.nodeid}: sqlite_only needs its reason"
        metafunc.parametrize("backend", ["sqlite"] if only else BACKENDS, indirect=True)


class Backend:
    """Where one test's catalogues live: SQLite files in its folder, or new
    databases on the test server (dropped when the test ends). On
    PostgreSQL, a test gets an ICU en-US collation or the server's C.UTF-8
    one by a hash of its name: the same every run, half of the tests each."""

    def __init__(self, name: str, request, tmp_path: Path):
        self.name = name
        self.tmp_path = tmp_path
        self.pg = request.getfixturevalue("pg") if name == "postgresql" else None
        self.icu = zlib.crc32(request.node.nodeid.encode()) % 2 == 1
        self.databases: dict[str, object] = {}  # URL -> pg.Database
        self._files = 0

    @property
    def postgres(self) -> bool:
        return self.pg is not None

    def new(self, label: str = "catalog") -> Target:
        """A place for a new, empty catalogue."""
        if self.pg is None:
            self._files += 1
            return self.tmp_path / (f"{label}.db" if self._files == 1 else f"{label}-{self._files}.db")
        db = self.pg.new_database(icu=self.icu)
        self.databases[db.owner] = db
        return db.owner

    def copy(self, source: Target) -> Target:
        """A new catalogue holding what `source` (of this backend) holds."""
        if self.pg is None:
            self._files += 1
            target = self.tmp_path / f"copy-{self._files}.db"
            src, dst = sqlite3.connect(source), sqlite3.connect(target)
            try:
                src.backup(dst)
            finally:
                src.close()
                dst.close()
            return target
        db = self.pg.copy_database(database_name(source))
        self.databases[db.owner] = db
        return db.owner

    def database(self, target: str):
        """The pg.Database (role URLs) of a target made here."""
        return self.databases[target]

    def drop_all(self) -> None:
        if self.pg is not None:
            for db in self.databases.values():
                self.pg.drop_database(db.name)  # type: ignore[attr-defined]


def database_name(url: str) -> str:
    return url.rsplit("/", 1)[1].split("?", 1)[0]


@pytest.fixture
def backend(request, tmp_path):
    """"sqlite" or "postgresql" (parametrized by pytest_generate_tests)."""
    chosen = Backend(request.param, request, tmp_path)
    yield chosen
    chosen.drop_all()


def backend_of(request) -> Backend | None:
    """The test's Backend when it runs on both backends, else None."""
    return request.getfixturevalue("backend") if "backend" in request.fixturenames else None


class Run:
    def __init__(self, db: Target):
        self.db = db
        self.runner = CliRunner()

    def __call__(self, *args: str, input: str | None = None):
        return self.runner.invoke(app, ["--db", str(self.db), *map(str, args)], input=input)


@pytest.fixture(scope="session")
def sample_master(tmp_path_factory) -> tuple[Path, Expected]:
    root = tmp_path_factory.mktemp("sample") / "workspace"
    expected = write_sample(root, groups=SAMPLE_GROUPS, seed=SAMPLE_SEED)
    return root, expected


@pytest.fixture
def sample(sample_master, tmp_path) -> tuple[Path, Expected]:
    """A private copy of the sample workspace, free to modify."""
    src, expected = sample_master
    dst = tmp_path / "workspace"
    shutil.copytree(src, dst, symlinks=True)
    return dst, expected


@pytest.fixture
def run(request, tmp_path) -> Run:
    """A CLI runner on a new catalogue (of the test's backend)."""
    backend = backend_of(request)
    return Run(backend.new() if backend else tmp_path / "catalog.db")


@pytest.fixture(scope="session")
def indexed_master(sample_master, tmp_path_factory) -> tuple[Path, Path, Expected]:
    """The sample indexed once, for read-only tests: (workspace, db, expected)."""
    root, expected = sample_master
    db = tmp_path_factory.mktemp("indexed") / "catalog.db"
    result = Run(db)("index", root)
    assert result.exit_code == 0, result.output
    return root, db, expected


@pytest.fixture(scope="session")
def indexed_pg_master(pg, sample_master):
    """The sample indexed once into a PostgreSQL database with an ICU en-US
    collation: (workspace, pg.Database, expected)."""
    root, expected = sample_master
    db = pg.new_database(icu=True)
    result = Run(db.owner)("index", root, "--quiet")
    assert result.exit_code == 0, result.output
    return root, db, expected


@pytest.fixture
def indexed(indexed_master, request, tmp_path) -> tuple[Path, Target, Expected]:
    """A private copy of the indexed catalogue (of the test's backend)."""
    backend = backend_of(request)
    if backend is not None and backend.postgres:
        root, pg_db, expected = request.getfixturevalue("indexed_pg_master")
        return root, backend.copy(pg_db.owner), expected
    root, db, expected = indexed_master
    (tmp_path / "db").mkdir()
    copy = tmp_path / "db" / "copy.db"
    src = sqlite3.connect(db)
    dst = sqlite3.connect(copy)
    src.backup(dst)
    src.close()
    dst.close()
    return root, copy, expected


def unreadable_folder(parent: Path) -> None:
    """Make, inside `parent`, a folder the walk cannot open even as root: its
    path is longer than the operating system accepts (PATH_MAX), built one
    level at a time relative to its parent."""
    fd = os.open(parent, os.O_RDONLY)
    try:
        for _ in range(20):
            name = "d" * 250
            os.mkdir(name, dir_fd=fd)
            child = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = child
    finally:
        os.close(fd)


def query(db: Target, sql: str, *params):
    """The rows of `sql` (`?` placeholders) on a catalogue of either backend."""
    return rows(db, sql, *params)


def is_postgres(db: Target) -> bool:
    return is_url(db)
