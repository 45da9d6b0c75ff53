"""Installed, the project is one real package, `catalog`: no generic
top-level names (`cli`, `migrations`) in site-packages, a stray `catalog/`
folder cannot shadow it, and `python -m catalog` is the command line.

The development install is editable, whose import hook runs after the
ordinary path search; so the shadowing test installs the project for real
(a wheel build into a folder), as users get it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("site")
    # No build isolation: the test extras put a recent setuptools in the venv, so nothing is downloaded.
    proc = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                           "--target", str(target), str(ROOT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return target


def run_with(target: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    return subprocess.run([sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True)


def test_only_the_catalog_package_is_installed(installed):
    top = sorted(p.name for p in installed.iterdir() if p.name not in ("bin", "__pycache__"))
    assert [n for n in top if not n.endswith(".dist-info")] == ["catalog"]
    assert (installed / "catalog" / "__init__.py").is_file()
    assert (installed / "catalog" / "migrations" / "versions").is_dir()


def test_a_stray_catalog_folder_does_not_shadow_the_package(installed, tmp_path):
    (tmp_path / "catalog").mkdir()  # e.g. a user's own folder named catalog, in the current directory
    proc = run_with(installed, tmp_path, "-c", "import catalog.cli, catalog.migrations; print(catalog.__file__)")
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(installed / "catalog" / "__init__.py")


def test_python_m_catalog_is_the_command_line(installed, tmp_path):
    proc = run_with(installed, tmp_path, "-m", "catalog", "--version")
    assert proc.returncode == 0 and proc.stdout.startswith("catalog "), proc.stderr
    proc = run_with(installed, tmp_path, "-m", "catalog", "db", "upgrade")
    assert proc.returncode == 0, proc.stderr  # the migrations ship inside the package
    assert (tmp_path / "catalog.db").exists()


def test_the_development_install_adds_no_generic_names(tmp_path):
    proc = subprocess.run([sys.executable, "-c", "import importlib.util as u; "
                           "print([n for n in ('cli', 'migrations') if u.find_spec(n)])"],
                          cwd=tmp_path, capture_output=True, text=True)
    assert proc.stdout.strip() == "[]", proc.stderr
