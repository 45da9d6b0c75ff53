"""Installed, the project is one real package, `catalog`: no generic
top-level names (`cli`, `migrations`) in site-packages, a stray `catalog/`
folder cannot shadow it, and `python -m catalog` is the command line."""

from __future__ import annotations

import subprocess
import sys


def run_elsewhere(tmp_path, code: str) -> str:
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout.strip()


def test_no_generic_top_level_names_are_installed(tmp_path):
    found = run_elsewhere(tmp_path, "import importlib.util as u; "
                                    "print([n for n in ('cli', 'migrations') if u.find_spec(n)])")
    assert found == "[]"


def test_a_stray_catalog_folder_does_not_shadow_the_package(tmp_path):
    (tmp_path / "catalog").mkdir()  # e.g. a user's own folder named catalog, in the current directory
    origin = run_elsewhere(tmp_path, "import catalog.cli, catalog.migrations; print(catalog.__file__)")
    assert origin.endswith("__init__.py") and str(tmp_path) not in origin


def test_python_m_catalog_is_the_command_line(tmp_path):
    proc = subprocess.run([sys.executable, "-m", "catalog", "--version"], cwd=tmp_path, capture_output=True, text=True)
    assert proc.returncode == 0 and proc.stdout.startswith("catalog ")
    proc = subprocess.run([sys.executable, "-m", "catalog", "db", "upgrade"], cwd=tmp_path,
                          capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr  # the migrations ship inside the package
    assert (tmp_path / "catalog.db").exists()
