"""Scan files: walk one sandbox or final folder and yield its images.

Owns the walk: which entries are images, that symlinked folders are not
followed, that names become `/`-separated paths relative to the folder, and
that a folder we cannot read stops the scan (a silently skipped folder would
look like deleted images and empty the catalogue).

The walk streams: it holds one directory listing at a time, never the tree.
Only images are stat()ed; companions (.yaml, .caption, ...) cost nothing.
"""

from __future__ import annotations

import os
import stat as statmod
from collections.abc import Callable, Iterator
from operator import attrgetter
from typing import NamedTuple, Optional

from .errors import CatalogError
from .names import IMAGE_EXTENSIONS


class FileEntry(NamedTuple):
    rel_path: str
    dir: str
    filename: str
    size_bytes: int
    mtime_ns: int
    abs_path: str


def text_name(name: str) -> str:
    """A name SQL can store. Undecodable bytes (non-UTF-8 names) come from
    os.scandir as surrogates; they are kept visible as \\xNN instead of
    failing the whole project."""
    try:
        name.encode("utf-8")
        return name
    except UnicodeEncodeError:
        return name.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def scan_images(
    root: str,
    warn: Callable[[str], None] = lambda msg: None,
    progress: Optional[Callable[[int], None]] = None,
) -> Iterator[FileEntry]:
    """Yield every image under `root`, folders in name order, depth first."""
    stack: list[tuple[str, str]] = [("", root)]
    seen = 0
    by_name = attrgetter("name")
    while stack:
        rel_dir, abs_dir = stack.pop()
        found, subdirs = [], []
        try:
            with os.scandir(abs_dir) as it:
                # Hot loop: every companion passes through it, so the image
                # test is inlined (names.is_image is the rule; a test keeps
                # the two equal). is_dir() is answered from the directory
                # listing, without a stat.
                for entry in it:
                    name = entry.name
                    dot = name.rfind(".")
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            subdirs.append(entry)
                        elif dot > 0 and name[dot:].lower() in IMAGE_EXTENSIONS:
                            found.append(entry)
                    except OSError:
                        continue
        except PermissionError:
            raise CatalogError(
                f"cannot read folder {abs_dir}: permission denied; fix its permissions "
                "(nothing was changed for this project)"
            ) from None
        except OSError as exc:
            raise CatalogError(f"cannot read folder {abs_dir}: {exc.strerror}; nothing was changed for this project") from None
        found.sort(key=by_name)
        for entry in found:
            try:
                st = entry.stat()  # follows a symlinked *file*: its target is the image
            except FileNotFoundError:
                warn(f"skipped broken symlink {entry.path}")
                continue
            except OSError as exc:
                warn(f"skipped {entry.path}: {exc.strerror}")
                continue
            if not statmod.S_ISREG(st.st_mode):
                continue
            name = entry.name
            filename = name if name.isascii() else text_name(name)
            if filename is not name:
                warn(f"name is not UTF-8, recorded as {filename!r}: {entry.path!r}")
            rel_path = f"{rel_dir}/{filename}" if rel_dir else filename
            yield FileEntry(rel_path, rel_dir, filename, st.st_size, st.st_mtime_ns, entry.path)
            seen += 1
            if progress is not None and seen % 1000 == 0:
                progress(seen)
        subdirs.sort(key=by_name, reverse=True)
        for entry in subdirs:
            name = text_name(entry.name)
            stack.append((f"{rel_dir}/{name}" if rel_dir else name, entry.path))
    if progress is not None:
        progress(seen)
