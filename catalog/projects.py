"""Find projects: which folders under a PATH are a project's sandbox and final.

Owns the layout rules. Three are recognised, tried in this order:

1. ``PATH/sandbox/X/`` is project X with final folder ``PATH/X/``
   (covers the single-project ``X/sandbox/X/`` + ``X/X/`` and whole workspaces);
2. ``PATH/X_final/`` with a sibling ``PATH/X/`` or ``PATH/X_raw/`` is project X
   (``training data/X`` + ``training data/X_final``);
3. explicit ``--project NAME --sandbox DIR --final DIR``.

Also owns the catalogue's own list of projects as folders (`stored_projects`,
`missing_projects`) and checking project names a user types against it.
"""

from __future__ import annotations

import difflib
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import UsageError

LAYOUTS_HELP = (
    "looked for PATH/sandbox/<project>/ (final folder PATH/<project>/) and for "
    "PATH/<project>_final/ beside PATH/<project>/ or PATH/<project>_raw/"
)


@dataclass(frozen=True)
class Project:
    name: str
    sandbox_dir: str
    final_dir: Optional[str]
    layout: str

    @property
    def final_exists(self) -> bool:
        return self.final_dir is not None and os.path.isdir(self.final_dir)


def _subdirs(path: Path) -> list[str]:
    try:
        with os.scandir(path) as it:
            # Symlinked folders are not followed: they are how loops and
            # double-counted trees get in.
            return sorted(e.name for e in it if e.is_dir(follow_symlinks=False))
    except PermissionError:
        raise UsageError(
            f"cannot read folder {path}: permission denied; fix its permissions or index another path") from None
    except OSError as exc:
        raise UsageError(f"cannot read folder {path}: {exc.strerror}") from None


def check_folder(path: Path, what: str = "PATH") -> Path:
    if not path.exists():
        if path.is_symlink():
            raise UsageError(f"{what} {path} is a broken symlink; point it at a folder")
        raise UsageError(f"{what} {path} does not exist; check the spelling or mount the drive")
    if not path.is_dir():
        raise UsageError(f"{what} {path} is a file, not a folder; give the folder that holds the project")
    return path


def find_projects(path: str | os.PathLike) -> list[Project]:
    root = check_folder(Path(path)).resolve()
    sandbox_root = root / "sandbox"
    if sandbox_root.is_dir() and not sandbox_root.is_symlink():
        return [
            Project(name, str(sandbox_root / name), str(root / name), "sandbox")
            for name in _subdirs(sandbox_root)
        ]
    names = _subdirs(root)
    present = set(names)
    found = []
    for name in names:
        if not name.endswith("_final") or len(name) == len("_final"):
            continue
        project = name[: -len("_final")]
        for candidate in (project, project + "_raw"):
            if candidate in present:
                found.append(Project(project, str(root / candidate), str(root / name), "final-suffix"))
                break
    if not found:
        raise UsageError(f"no projects found in {root}: {LAYOUTS_HELP}")
    return found


def explicit_project(name: str, sandbox: str, final: Optional[str]) -> Project:
    if not name.strip():
        raise UsageError("--project needs a non-empty name")
    sandbox_dir = check_folder(Path(sandbox), "--sandbox").resolve()
    final_dir = None
    if final:
        final_path = Path(final)
        if final_path.exists() and not final_path.is_dir():
            raise UsageError(f"--final {final} is a file, not a folder; give the folder of picked images")
        final_dir = str(final_path.resolve())
    return Project(name, str(sandbox_dir), final_dir, "explicit")


def find_all(paths: Iterable[str]) -> list[Project]:
    """Projects under every PATH; a name found twice is a mistake worth stopping for."""
    projects: dict[str, Project] = {}
    for path in paths:
        for project in find_projects(path):
            other = projects.get(project.name)
            if other is not None and other.sandbox_dir != project.sandbox_dir:
                raise UsageError(
                    f"project {project.name!r} found twice: {other.sandbox_dir} and {project.sandbox_dir}; "
                    "index them separately with --project"
                )
            projects[project.name] = project
    return list(projects.values())


def requested(paths: Optional[list[str]], name: Optional[str], sandbox: Optional[str],
              final: Optional[str]) -> list[Project]:
    """The projects `catalog index` was asked for: PATH... or one explicit project."""
    if name or sandbox or final:
        if paths:
            raise UsageError("give either PATH... or --project/--sandbox/--final, not both")
        if not (name and sandbox):
            raise UsageError("--project and --sandbox go together (and --final, if there is one)")
        return [explicit_project(name, sandbox, final)]
    if not paths:
        return []  # the caller re-syncs every catalogued project
    return find_all(paths)


def stored_projects(conn) -> list[Project]:
    """Every catalogued project, from the folders it was last indexed from."""
    from sqlalchemy import select

    from .dialects import byte_ordered
    from .schema import projects

    # Code point order on every backend: runs and listings do not depend on a collation.
    rows = conn.execute(
        select(projects.c.name, projects.c.sandbox_dir, projects.c.final_dir)
        .order_by(byte_ordered(conn, projects.c.name))
    )
    return [Project(name, sandbox, final, "stored") for name, sandbox, final in rows]


def missing_projects(conn) -> list[Project]:
    """Catalogued projects whose sandbox folder is not there any more
    (renamed, moved, or on a drive that is not mounted)."""
    return [p for p in stored_projects(conn) if not os.path.isdir(p.sandbox_dir)]


def resolve_names(known: Sequence[str], asked: Iterable[str]) -> list[str]:
    """`asked` checked against the catalogued project names: a name that is
    not there is a usage error listing what is, with the closest match, so a
    typo never selects nothing in silence."""
    present = set(known)
    out = []
    for name in asked:
        if name in present:
            if name not in out:
                out.append(name)
            continue
        by_case = [k for k in known if k.lower() == name.lower()]
        close = by_case or difflib.get_close_matches(name, known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        listing = ", ".join(known) if known else "none yet; run `catalog index PATH` first"
        raise UsageError(f"no project named {name!r} in the catalogue{hint} (projects: {listing})")
    return out
