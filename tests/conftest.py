"""Shared fixtures: the sample workspace (written once), fresh catalogues, and
a CLI runner that returns exit code, stdout and stderr."""

from __future__ import annotations

import os
import shutil
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from catalog.cli import app
from catalog.sample import Expected, write_sample

SAMPLE_GROUPS = 60
SAMPLE_SEED = 7


class Run:
    def __init__(self, db: Path):
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
def run(tmp_path) -> Run:
    return Run(tmp_path / "catalog.db")


@pytest.fixture(scope="session")
def indexed_master(sample_master, tmp_path_factory) -> tuple[Path, Path, Expected]:
    """The sample indexed once, for read-only tests: (workspace, db, expected)."""
    root, expected = sample_master
    db = tmp_path_factory.mktemp("indexed") / "catalog.db"
    result = Run(db)("index", root)
    assert result.exit_code == 0, result.output
    return root, db, expected


@pytest.fixture
def indexed(indexed_master, tmp_path) -> tuple[Path, Path, Expected]:
    """A private copy of the indexed catalogue."""
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


def query(db: Path, sql: str, *params):
    con = sqlite3.connect(db)
    try:
        return con.execute(sql, params).fetchall()
    finally:
        con.close()
