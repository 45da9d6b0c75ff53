"""`catalog sample`: write a small, realistic sample workspace, and what it holds.

Owns the sample data the README demo, the tests and the benchmark run on.
It writes ``DIR/sandbox/<project>/`` and ``DIR/<project>/`` with everything real
folders have: both naming styles (``_stage2_upscaled.png`` and bare
``_stage2.png``), stage 1.5 sharing stage 1's timestamp now and then,
character sub-folders interleaved in time, companions (.yaml, .caption, .txt,
.decision), junk (.DS_Store), unparsed names, a zero-byte image, the selector's
skipped images (``1,3,2,3``), skipped groups, groups kept twice, anomalies,
cropped, renamed and converted winners, and orphans of every reason.

The sample is built group by group *by construction*, so `Expected` (written
to SAMPLE_EXPECTED.json) states the truth independently of the code that
indexes it: tests compare the catalogue against it.
"""

from __future__ import annotations

import json
import os
import random
import struct
import zlib
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import lru_cache
from pathlib import Path
from typing import Callable, Optional

from .names import format_name

EXPECTED_FILE = "SAMPLE_EXPECTED.json"
LABELS = {1.0: "generated", 1.5: "face_swapped", 2.0: "upscaled", 3.0: "enhanced"}
SIZES = {1.0: (832, 1216), 1.5: (832, 1216), 2.0: (1664, 2432), 3.0: (1664, 2432)}
CROPPED_SIZE = (1536, 2304)
# Group shapes as seen in real projects: mostly 3 images, some 2 and 4.
SHAPES = [((1, 2, 3), 40), ((1, 1.5, 2), 25), ((1, 1.5, 2, 3), 15), ((1, 2), 12), ((2, 3), 8)]
MAX_IMAGES_PER_PROJECT = 20_000


@lru_cache(maxsize=None)
def png_bytes(width: int, height: int) -> bytes:
    """A valid 1-bit greyscale PNG of the given size: real header, tiny file."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    row = b"\x00" * (1 + (width + 7) // 8)
    ihdr = struct.pack(">IIBBBBB", width, height, 1, 0, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr)
            + chunk(b"IDAT", zlib.compress(row * height, 9)) + chunk(b"IEND", b""))


def jpeg_bytes(width: int, height: int) -> bytes:
    """A JPEG header (SOI, APP0, SOF0, EOI) that states its pixel size."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof0 = b"\xff\xc0" + struct.pack(">HBHHB", 11, 8, height, width, 1) + b"\x01\x11\x00"
    return b"\xff\xd8" + app0 + sof0 + b"\xff\xd9"


@dataclass
class ProjectExpected:
    sandbox_images: int = 0
    final_images: int = 0
    unparsed_names: int = 0
    unreadable_headers: int = 0
    groups: list[list[str]] = field(default_factory=list)
    # (winner, losers, is_anomaly) per group with exactly one winner
    decisions: list[tuple[str, list[str], bool]] = field(default_factory=list)
    skipped: int = 0
    kept_twice: int = 0
    cropped: int = 0
    key_matches: int = 0
    orphans: dict[str, int] = field(default_factory=lambda: {"no_match": 0, "ambiguous": 0, "ungrouped": 0})

    @property
    def anomalies(self) -> int:
        return sum(1 for d in self.decisions if d[2])


@dataclass
class Expected:
    projects: dict[str, ProjectExpected] = field(default_factory=dict)

    def to_json(self) -> str:
        return json.dumps({name: {**asdict(p), "anomalies": p.anomalies} for name, p in self.projects.items()},
                          indent=1, sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> "Expected":
        data = json.loads(text)
        out = cls()
        for name, p in data.items():
            p.pop("anomalies")
            p["decisions"] = [(w, losers, bool(a)) for w, losers, a in p["decisions"]]
            out.projects[name] = ProjectExpected(**p)
        return out

    @property
    def anomalies(self) -> int:
        return sum(p.anomalies for p in self.projects.values())


class _Writer:
    """Writes one project: its sandbox and final folders, and what to expect."""

    def __init__(self, root: Path, name: str, rng: random.Random, *, bare: bool,
                 folders: list[str], companions: bool):
        self.sandbox = root / "sandbox" / name
        self.final = root / name
        self.rng = rng
        self.bare = bare
        self.folders = folders
        self.companions = companions
        self.clock = datetime(2025, 7, 5, 21, 52, 18) + timedelta(days=rng.randrange(60))
        self.expected = ProjectExpected()
        for folder in folders:
            (self.sandbox / folder).mkdir(parents=True, exist_ok=True)
        self.final.mkdir(parents=True, exist_ok=True)

    def tick(self, lo: int, hi: int) -> datetime:
        self.clock += timedelta(seconds=self.rng.randint(lo, hi))
        return self.clock

    def _write(self, path: Path, data: bytes, when: Optional[datetime] = None) -> None:
        path.write_bytes(data)
        if when is not None:
            t = when.timestamp()
            os.utime(path, (t, t))

    def sandbox_image(self, folder: str, when: datetime, stage: float) -> str:
        label = None if self.bare else LABELS.get(stage, "generated")
        name = format_name(when, stage, label)
        rel = f"{folder}/{name}" if folder else name
        path = self.sandbox / rel
        self._write(path, png_bytes(*SIZES[stage]), when)
        if self.companions:
            stem = path.with_suffix("")
            (stem.parent / (stem.name + ".yaml")).write_text(f"stage: {stage}\nseed: {self.rng.randrange(10**9)}\n")
            (stem.parent / (stem.name + ".caption")).write_text("a portrait, studio light\n")
        self.expected.sandbox_images += 1
        return rel

    def final_copy(self, sandbox_rel: str, stage: float, *, how: str) -> None:
        folder, _, name = sandbox_rel.rpartition("/")
        target_dir = self.final / folder
        target_dir.mkdir(parents=True, exist_ok=True)
        when = self.clock + timedelta(days=1)
        if how == "same":
            self._write(target_dir / name, png_bytes(*SIZES[stage]), when)
        elif how == "cropped":
            self._write(target_dir / name, png_bytes(*CROPPED_SIZE), when)
            self.expected.cropped += 1
        elif how == "renamed":  # cropped and renamed: only the key matches
            stem, ext = os.path.splitext(name)
            self._write(target_dir / f"{stem}_cropped{ext}", png_bytes(*CROPPED_SIZE), when)
            self.expected.cropped += 1
            self.expected.key_matches += 1
        elif how == "converted":  # same pixels, another format: key match
            stem, _ = os.path.splitext(name)
            self._write(target_dir / f"{stem}.jpg", jpeg_bytes(*SIZES[stage]), when)
            self.expected.key_matches += 1
        self.expected.final_images += 1

    def group(self, index: int) -> None:
        rng = self.rng
        folder = self.folders[index % len(self.folders)]
        shapes, weights = zip(*SHAPES)
        stages = list(rng.choices(shapes, weights)[0])
        stray = len(stages) >= 3 and stages[-1] == 3 and rng.random() < 0.06
        start = self.tick(60, 400)
        rels, times = [], []
        for k, stage in enumerate(stages):
            # stage 1.5 shares stage 1's timestamp now and then
            when = start if k == 0 else (self.clock if stage == 1.5 and rng.random() < 0.35 else self.tick(8, 140))
            if stray and k == 1:
                # A higher stage written before the next one: the selector skips it (1,3,2,3 -> [1,2,3]).
                self.sandbox_image(folder, self.tick(3, 6), stages[-1])
                when = self.tick(8, 140)
            rels.append(self.sandbox_image(folder, when, stage))
            times.append(when)
        if self.companions and rng.random() < 0.3:
            (self.sandbox / folder / f"{start:%Y%m%d_%H%M%S}.decision").write_text("reviewed\n")
        self.expected.groups.append(rels)

        roll = rng.random()
        top = len(stages) - 1
        if roll < 0.10:
            self.expected.skipped += 1
            return
        if roll < 0.13:
            for k in (top, top - 1):
                self.final_copy(rels[k], stages[k], how="same")
            self.expected.kept_twice += 1
            return
        if roll < 0.22:
            winner = rng.randrange(top)  # a lower stage beat the top one
        else:
            winner = top
        how = rng.choices(["same", "cropped", "renamed", "converted"], [75, 12, 8, 5])[0]
        self.final_copy(rels[winner], stages[winner], how=how)
        losers = [r for k, r in enumerate(rels) if k != winner]
        losers.sort(key=lambda r: (stages[rels.index(r)], r.rpartition("/")[2]))
        self.expected.decisions.append((rels[winner], losers, stages[winner] < stages[top]))

    def extras(self) -> None:
        """Everything that is not a clean group, once per project."""
        folder = self.folders[0]
        # An image the selector never grouped (a lone stage 2 between runs), kept anyway.
        lone = self.sandbox_image(folder, self.tick(60, 120), 2.0)
        self.final_copy(lone, 2.0, how="same")
        self.expected.orphans["ungrouped"] += 1
        # A final image with no sandbox twin.
        self._write(self.final / "edited_portrait.png", png_bytes(1024, 1024))
        self.expected.final_images += 1
        self.expected.orphans["no_match"] += 1
        self.expected.unparsed_names += 1
        # Unparsed sandbox names: no timestamp, no stage, an impossible date.
        base = self.sandbox / folder
        for name in ("IMG_0001.png", f"{self.tick(5, 9):%Y%m%d_%H%M%S}.png", "20251399_250000_stage1.png"):
            self._write(base / name, png_bytes(512, 512))
            self.expected.sandbox_images += 1
            self.expected.unparsed_names += 1
        # A zero-byte image: recorded, header unreadable.
        (base / "thumbnail.png").write_bytes(b"")
        self.expected.sandbox_images += 1
        self.expected.unparsed_names += 1
        self.expected.unreadable_headers += 1
        # Junk that is not an image.
        (base / ".DS_Store").write_bytes(b"\x00\x00\x00\x01Bud1")
        (base / "notes.txt").write_text("try a softer light\n")
        if len(self.folders) > 1:
            # The same reference image in two character folders, picked into
            # the final folder's root: no folder breaks the tie.
            for f in self.folders[:2]:
                self._write(self.sandbox / f / "reference.png", png_bytes(640, 640))
                self.expected.sandbox_images += 1
                self.expected.unparsed_names += 1
            self._write(self.final / "reference.png", png_bytes(640, 640))
            self.expected.final_images += 1
            self.expected.unparsed_names += 1
            self.expected.orphans["ambiguous"] += 1


def write_sample(directory: str | os.PathLike, *, groups: int = 60, seed: int = 7,
                 images: Optional[int] = None, companions: bool = True,
                 progress: Optional[Callable[[int, int], None]] = None) -> Expected:
    """Write the sample workspace; returns (and saves) what it holds.

    `groups` is the total over the sample's projects. With `images`, the
    sample instead holds about that many sandbox images, in projects of at
    most MAX_IMAGES_PER_PROJECT (the benchmark's synthetic workspaces).
    """
    root = Path(directory)
    root.mkdir(parents=True, exist_ok=True)
    rng = random.Random(seed)
    expected = Expected()
    if images is None:
        plan = [
            ("aiko", False, [""]),
            ("tattersail", False, ["tara", "south-asian-late-30s"]),
            ("mojo-1", True, [""]),
        ]
        per_project = [groups // len(plan) + (1 if i < groups % len(plan) else 0) for i in range(len(plan))]
    else:
        per_group = sum(len(shape) * w for shape, w in SHAPES) / sum(w for _, w in SHAPES)
        total_groups = max(1, round(images / per_group))
        per_group_cap = int(MAX_IMAGES_PER_PROJECT / per_group)
        count = max(1, -(-total_groups // per_group_cap))
        plan = [(f"project-{i + 1:03d}", i % 3 == 2, ["", "tara"] if i % 2 else [""]) for i in range(count)]
        per_project = [total_groups // count + (1 if i < total_groups % count else 0) for i in range(count)]
    total, done = sum(per_project), 0
    for (name, bare, folders), n in zip(plan, per_project):
        writer = _Writer(root, name, rng, bare=bare, folders=folders, companions=companions)
        for i in range(n):
            writer.group(i)
            done += 1
            if progress is not None and (done % 200 == 0 or done == total):
                progress(done, total)
        writer.extras()
        expected.projects[name] = writer.expected
    (root / EXPECTED_FILE).write_text(expected.to_json())
    return expected
