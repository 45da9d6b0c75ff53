"""Small real workspaces on disk for the re-index tests.

A workspace root holds ``sandbox/<project>/`` and the final folder
``<project>/`` (the "sandbox" layout of README "Layouts"). Every file is
written with real PNG/JPEG headers (`catalog.sample`) and an explicit mtime
from a `Clock`, so a file that is rewritten or touched always gets an mtime
no earlier file had.

`selector_groups` is the image selector's rule written out plainly (as in
tests/test_properties.py), used only to choose *which* files a test deletes
or moves; the catalogue's own grouping is what the tests check.
"""

from __future__ import annotations

import os
import random
import re
import shutil
import struct
from datetime import datetime, timedelta
from pathlib import Path
from typing import Optional

from catalog.sample import jpeg_bytes, png_bytes

LABELS = {1.0: "generated", 1.5: "face_swapped", 2.0: "upscaled", 3.0: "enhanced"}
SIZES = {1.0: (832, 1216), 1.5: (832, 1216), 2.0: (1664, 2432), 3.0: (1664, 2432)}
SHAPES = [(1.0, 2.0, 3.0), (1.0, 1.5, 2.0), (1.0, 1.5, 2.0, 3.0), (1.0, 2.0), (2.0, 3.0)]
IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".webp")
LOOKAHEAD = 50

_NAME = re.compile(r"^(\d{8}_\d{6})_stage(\d+(?:\.\d+)?)", re.IGNORECASE)


class Clock:
    """Explicit, unique, rising mtimes (nanoseconds) for every write; a
    second and a bit apart, so that they differ even on a file system that
    keeps whole seconds."""

    def __init__(self, start_ns: int = 1_751_000_000 * 10**9):
        self.ns = start_ns

    def next(self) -> int:
        self.ns += 1_000_000_007
        return self.ns


def stage_text(stage: float) -> str:
    return str(int(stage)) if float(stage).is_integer() else str(stage)


def image_name(when: datetime, stage: float, ext: str = ".png", label: Optional[str] = None) -> str:
    return f"{when:%Y%m%d_%H%M%S}_stage{stage_text(stage)}_{label or LABELS[stage]}{ext}"


def parse(filename: str) -> tuple[Optional[datetime], Optional[float]]:
    m = _NAME.match(filename)
    if m is None:
        return None, None
    try:
        return datetime.strptime(m[1], "%Y%m%d_%H%M%S"), float(m[2])
    except ValueError:
        return None, None


def pixel_size(data: bytes) -> Optional[tuple[int, int]]:
    """(width, height) of the PNG or JPEG bytes these helpers write."""
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        return struct.unpack(">II", data[16:24])
    i = data.find(b"\xff\xc0")
    if data[:2] == b"\xff\xd8" and i > 0:
        height, width = struct.unpack(">HH", data[i + 5:i + 9])
        return width, height
    return None


def write(path: Path, data: bytes, clock: Clock, mtime_ns: Optional[int] = None) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    t = clock.next() if mtime_ns is None else mtime_ns
    os.utime(path, ns=(t, t))
    return path


def touch(path: Path, clock: Clock) -> None:
    t = clock.next()
    os.utime(path, ns=(t, t))


def rel(path: Path, base: Path) -> str:
    return path.relative_to(base).as_posix()


def images_under(base: Path) -> list[str]:
    """Relative paths of the image files under `base`, sorted."""
    out = []
    top = str(base)
    for folder, dirs, files in os.walk(top):
        dirs.sort()
        prefix = os.path.relpath(folder, top).replace(os.sep, "/") + "/" if folder != top else ""
        out.extend(prefix + f for f in sorted(files) if f.lower().endswith(IMAGE_EXTENSIONS))
    return out


def _runs(stages: list[float]) -> list[list[int]]:
    groups, i = [], 0
    while i < len(stages):
        taken = [i]
        while True:
            last = taken[-1]
            best = None
            for j in range(last + 1, min(last + 1 + LOOKAHEAD, len(stages))):
                if stages[j] <= stages[last]:
                    break
                if best is None or stages[j] < stages[best]:
                    best = j
            if best is None:
                break
            taken.append(best)
        if len(taken) > 1:
            groups.append(taken)
            i = taken[-1] + 1
        else:
            i += 1
    return groups


def selector_groups(rel_paths: list[str]) -> list[list[str]]:
    """The selector's groups among sandbox `rel_paths`, folder by folder."""
    by_dir: dict[str, list[tuple]] = {}
    for r in rel_paths:
        folder, _, filename = r.rpartition("/")
        when, stage = parse(filename)
        if when is not None and stage is not None:
            by_dir.setdefault(folder, []).append((when, stage, filename, r))
    out = []
    for folder in sorted(by_dir):
        images = sorted(by_dir[folder])
        out.extend([images[k][3] for k in run] for run in _runs([i[1] for i in images]))
    return out


class Workspace:
    """Projects in one or more workspace roots: ``root/sandbox/<p>/`` + ``root/<p>/``."""

    def __init__(self, roots: list[Path], clock: Optional[Clock] = None):
        self.roots = roots
        self.clock = clock or Clock()
        self.where: dict[str, Path] = {}  # live project -> its root
        for root in roots:
            (root / "sandbox").mkdir(parents=True, exist_ok=True)

    # ------------------------------------------------------------ layout

    def sandbox(self, name: str) -> Path:
        return self.where[name] / "sandbox" / name

    def final(self, name: str) -> Path:
        return self.where[name] / name

    def add_project(self, name: str, root: Optional[Path] = None) -> None:
        self.where[name] = root or self.roots[0]
        self.sandbox(name).mkdir(parents=True, exist_ok=True)
        self.final(name).mkdir(parents=True, exist_ok=True)

    def rename_project(self, old: str, new: str) -> None:
        root = self.where[old]
        os.rename(root / "sandbox" / old, root / "sandbox" / new)
        os.rename(root / old, root / new)
        self.where[new] = self.where.pop(old)

    def move_project(self, name: str, root: Path) -> None:
        sandbox, final = self.sandbox(name), self.final(name)
        shutil.move(str(sandbox), str(root / "sandbox" / name))
        shutil.move(str(final), str(root / name))
        self.where[name] = root

    def sandbox_images(self, name: str) -> list[str]:
        return images_under(self.sandbox(name))

    def final_images(self, name: str) -> list[str]:
        return images_under(self.final(name))

    def groups(self, name: str) -> list[list[str]]:
        return selector_groups(self.sandbox_images(name))

    def times(self, name: str) -> list[datetime]:
        out = []
        for r in self.sandbox_images(name):
            when = parse(r.rpartition("/")[2])[0]
            if when is not None:
                out.append(when)
        return sorted(out)

    # ------------------------------------------------------------ writing

    def sandbox_image(self, name: str, folder: str, when: datetime, stage: float, *,
                      companion: bool = False) -> tuple[str, datetime]:
        """Write one sandbox image at `when` (or the first free second after
        it); returns its relative path and the time it got."""
        base = self.sandbox(name) / folder if folder else self.sandbox(name)
        while (base / image_name(when, stage)).exists():
            when += timedelta(seconds=1)
        path = write(base / image_name(when, stage), png_bytes(*SIZES[stage]), self.clock)
        if companion:
            path.with_suffix(".yaml").write_text(f"stage: {stage}\nseed: 42\n")
        return rel(path, self.sandbox(name)), when

    def group(self, name: str, folder: str, start: datetime, stages, rng: random.Random,
              *, companions: bool = True) -> list[str]:
        """Write one rising run of stages starting at `start`; each stage a
        later time than the one before (stage 1.5 sometimes in stage 1's second)."""
        out = []
        when = start
        for k, stage in enumerate(stages):
            if k:
                same_second = stage == 1.5 and rng.random() < 0.3
                when += timedelta(seconds=0 if same_second else rng.randint(8, 140))
            r, when = self.sandbox_image(name, folder, when, stage, companion=companions and rng.random() < 0.3)
            out.append(r)
        return out

    def pick(self, name: str, sandbox_rel: str, how: str = "same", *, mirror: bool = True) -> Optional[str]:
        """Copy a sandbox image into the final folder (its mirrored sub-folder
        or the top). `how`: same, cropped (same name, smaller), renamed
        (``_cropped``, smaller), converted (``.jpg``). None if the target exists."""
        folder, _, filename = sandbox_rel.rpartition("/")
        data = (self.sandbox(name) / sandbox_rel).read_bytes()
        width, height = pixel_size(data) or (832, 1216)
        stem, ext = os.path.splitext(filename)
        if how == "same":
            target = filename
        elif how == "cropped":
            target, data = filename, png_bytes(width * 3 // 4, height * 3 // 4)
        elif how == "renamed":
            target, data = f"{stem}_cropped{ext}", png_bytes(width * 3 // 4, height * 3 // 4)
        elif how == "converted":
            target, data = f"{stem}.jpg", jpeg_bytes(width, height)
        else:
            raise ValueError(how)
        path = self.final(name) / folder / target if (mirror and folder) else self.final(name) / target
        if path.exists():
            return None
        write(path, data, self.clock)
        return rel(path, self.final(name))

    def junk(self, folder: Path) -> None:
        (folder / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")


def build_project(ws: Workspace, name: str, rng: random.Random, start: datetime, *,
                  groups: int, folders: list[str]) -> None:
    """A project of `groups` groups over `folders`, with winners of every
    kind: picked top stages, anomalies, groups kept twice, skipped groups,
    cropped, renamed and converted winners; a few companions, .DS_Store,
    an unparsed name and an orphan."""
    ws.add_project(name)
    clock = start
    firsts: list[tuple[str, datetime]] = []
    for _ in range(groups):
        folder = rng.choice(folders)
        other = [(f, t) for f, t in firsts if f != folder]
        if other and rng.random() < 0.2:
            when = rng.choice(other)[1]  # two groups, one first second: set ids _2, _3
        else:
            clock += timedelta(seconds=rng.randint(60, 400))
            when = clock
        stages = rng.choice(SHAPES)
        members = ws.group(name, folder, when, stages, rng)
        firsts.append((folder, when))
        clock = max(clock, *(parse(m.rpartition("/")[2])[0] for m in members))
        roll = rng.random()
        mirror = rng.random() < 0.7
        how = rng.choices(["same", "cropped", "renamed", "converted"], [70, 10, 10, 10])[0]
        if roll < 0.15:
            continue  # skipped group
        if roll < 0.25:
            ws.pick(name, members[-1], mirror=mirror)  # kept twice
            ws.pick(name, members[-2], mirror=mirror)
        elif roll < 0.4:
            ws.pick(name, members[rng.randrange(len(members) - 1)], how, mirror=mirror)  # anomaly
        else:
            ws.pick(name, members[-1], how, mirror=mirror)
    for folder in folders:
        d = ws.sandbox(name) / folder if folder else ws.sandbox(name)
        d.mkdir(parents=True, exist_ok=True)
        ws.junk(d)
    ws.junk(ws.final(name))
    if rng.random() < 0.5:
        write(ws.sandbox(name) / "IMG_0001.png", png_bytes(512, 512), ws.clock)
    if rng.random() < 0.5:
        write(ws.final(name) / "edited_portrait.png", png_bytes(1024, 1024), ws.clock)
