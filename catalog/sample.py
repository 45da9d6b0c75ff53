"""`catalog sample`: write a small, realistic sample workspace, and what it holds.

Owns the sample data the README demo, the tests and the benchmark run on.
It writes ``DIR/sandbox/<project>/`` and ``DIR/<project>/`` with everything real
folders have: both naming styles (``_stage2_upscaled.png`` and bare
``_stage2.png``), stage 1.5 sharing stage 1's timestamp now and then,
character sub-folders interleaved in time, companions (.yaml, .caption, .txt,
.decision), junk (.DS_Store), unparsed names, a zero-byte image, the selector's
skipped images (``1,3,2,3``), skipped groups, groups kept twice, anomalies,
cropped, renamed and converted winners, and orphans of every reason.

Cropped winners are real crops of real pictures (`_CropMaker`): textures and
gradients, drawn at low resolution and enlarged by pixel repetition, so that
every box is unique yet an original costs tens of kilobytes and milliseconds.
Stage 2 is stage 1 (or 1.5) enlarged twice, stage 1.5 a face swap of stage 1,
stage 3 an enhanced stage 2. Besides plain crops (top edge 0 often, right
edge one pixel short now and then), the sample holds one of each hard case:
boxes touching the edges, a full-frame final and a crop of a sibling at half
the scale (both matched to the stage 2 enlarged from them), a crop of stage 2
matched to its enhanced stage 3, a JPEG re-encode, a crop resized by a pixel
or two, an edited crop, a crop of another picture, a truncated final.
Other pixels stay blank 1-bit images, cheap to write.

The sample is built group by group *by construction*, so `Expected` (written
to SAMPLE_EXPECTED.json) states the truth independently of the code that
indexes it: tests compare the catalogue against it. That truth includes the
true box of every crop and the status `catalog crops` must give it.
"""

from __future__ import annotations

import json
import os
import random
import struct
import zlib
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Optional

from .names import format_name

EXPECTED_FILE = "SAMPLE_EXPECTED.json"
LABELS = {1.0: "generated", 1.5: "face_swapped", 2.0: "upscaled", 3.0: "enhanced"}
SIZES = {1.0: (832, 1216), 1.5: (832, 1216), 2.0: (1664, 2432), 3.0: (1664, 2432)}
# Group shapes as seen in real projects: mostly 3 images, some 2 and 4.
SHAPES = [((1, 2, 3), 40), ((1, 1.5, 2), 25), ((1, 1.5, 2, 3), 15), ((1, 2), 12), ((2, 3), 8)]
MAX_IMAGES_PER_PROJECT = 20_000


@cache
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
    # One per cropped winner: final and matched sandbox path, the sandbox
    # image it was really cut from (None: another picture), its true box
    # [x1, y1, x2, y2] in that image (x2, y2 exclusive; None when no box can
    # be told), the kind of crop, and the status `catalog crops` must give.
    crops: list[dict] = field(default_factory=list)

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
    def from_json(cls, text: str) -> Expected:
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


# ---------------------------------------------------------------- real crops

# Real pictures for at most this many crops per sample; later ones (samples of
# thousands of groups, for the index's tests and benchmarks) are blank crops
# of blank originals, whose box cannot be told (`catalog crops` says review).
REAL_CROPS = 40
# Stages 1 and 1.5 show a low-resolution texture 16 times larger, stages 2
# and 3 show theirs 32 times larger: stage 2 is an upscale by two, as in the
# workflow. A crop of 0.31 of a side still spans 16 cells.
ENLARGE = {1.0: 16, 1.5: 16, 2.0: 32, 3.0: 32}
LOW_SIZE = (SIZES[1.0][0] // 16, SIZES[1.0][1] // 16)
# The hard cases, each placed once, on the first winner it fits (in writing order).
CROP_CASES = ("edges_right_bottom", "full_frame", "jpeg", "scaled_sibling", "resized", "edited_sibling",
              "other_image", "edges_left_bottom", "edited", "right_short", "truncated")
# What `catalog crops` must say of each kind of crop.
CROP_STATUS = {
    "plain": "exact", "edges_right_bottom": "exact", "edges_left_bottom": "exact", "right_short": "exact",
    "full_frame": "exact", "scaled_sibling": "exact", "edited_sibling": "exact",
    "jpeg": "approx", "resized": "review", "edited": "review", "other_image": "none", "truncated": "failed",
    "blank": "review",
}

_PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_ADLER_BASE = 65521
_zero_runs: dict[tuple[int, int], tuple[bytes, int, int]] = {}


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))


def _adler_combine(first: int, second: int, second_len: int) -> int:
    """adler32 of two byte strings joined, from theirs (zlib's adler32_combine)."""
    rem = second_len % _ADLER_BASE
    s1 = first & 0xFFFF
    s2 = rem * s1 % _ADLER_BASE
    s1 = (s1 + (second & 0xFFFF) + _ADLER_BASE - 1) % _ADLER_BASE
    s2 = (s2 + (first >> 16) + (second >> 16) + _ADLER_BASE - rem) % _ADLER_BASE
    return s1 | (s2 << 16)


def _zero_rows(line: int, count: int) -> tuple[bytes, int, int]:
    """`count` rows equal to the one above (Up filter, all zeros), deflated
    from a fresh state and ending on a full flush, so the bytes can be
    spliced into any stream; with their adler32 and length."""
    key = (line, count)
    if key not in _zero_runs:
        raw = (b"\x02" + bytes(line)) * count
        comp = zlib.compressobj(6, zlib.DEFLATED, -15)
        _zero_runs[key] = (comp.compress(raw) + comp.flush(zlib.Z_FULL_FLUSH), zlib.adler32(raw), len(raw))
    return _zero_runs[key]


def _rows_png(rows, counts: list[int]) -> bytes:
    """An 8-bit RGB PNG of `rows` (a Pillow image of the distinct rows), row i
    repeated counts[i] times. Distinct rows are filtered "Sub" (zero within a
    cell) and deflated; each run of repeats is filtered "Up" (all zeros),
    deflated once per length and spliced in. A 1664x2432 picture costs a few
    milliseconds and some 40 KB."""
    from PIL import Image, ImageChops

    width, n = rows.size
    left = Image.new("RGB", rows.size)
    left.paste(rows.crop((0, 0, width - 1, n)), (1, 0))
    sub = ImageChops.subtract_modulo(rows, left).tobytes()
    line = width * 3
    comp = zlib.compressobj(1, zlib.DEFLATED, -15)
    out = [b"\x78\x01"]
    adler = 1
    for i, count in enumerate(counts):
        data = b"\x01" + sub[i * line:(i + 1) * line]
        out.append(comp.compress(data))
        adler = zlib.adler32(data, adler)
        if count > 1:
            # The stream's state is reset here, so what follows never refers back past the splice.
            out.append(comp.flush(zlib.Z_FULL_FLUSH))
            packed, zeros_adler, zeros_len = _zero_rows(line, count - 1)
            out.append(packed)
            adler = _adler_combine(adler, zeros_adler, zeros_len)
    out.append(comp.flush())
    out.append(struct.pack(">I", adler))
    ihdr = struct.pack(">IIBBBBB", width, sum(counts), 8, 2, 0, 0, 0)
    return _PNG_SIGNATURE + _chunk(b"IHDR", ihdr) + _chunk(b"IDAT", b"".join(out)) + _chunk(b"IEND", b"")


Box = tuple[int, int, int, int]


class _Picture:
    """A sample picture: a low-resolution texture (a Pillow image) shown
    `scale` times larger, every pixel a square of scale x scale."""

    def __init__(self, low, scale: int):
        self.low = low
        self.scale = scale

    @property
    def size(self) -> tuple[int, int]:
        return self.low.width * self.scale, self.low.height * self.scale

    def png(self, box: Optional[Box] = None) -> bytes:
        from PIL import Image

        x1, y1, x2, y2 = box or (0, 0, *self.size)
        k = self.scale
        first, last = y1 // k, (y2 - 1) // k
        band = self.low.crop((0, first, self.low.width, last + 1))
        rows = band.resize((band.width * k, band.height), Image.Resampling.NEAREST).crop((x1, 0, x2, band.height))
        counts = [min(y2, (r + 1) * k) - max(y1, r * k) for r in range(first, last + 1)]
        return _rows_png(rows, counts)

    def image(self, box: Box):
        """The pixels of `box`, as a Pillow image."""
        from PIL import Image

        x1, y1, x2, y2 = box
        k = self.scale
        window = self.low.crop((x1 // k, y1 // k, (x2 - 1) // k + 1, (y2 - 1) // k + 1))
        big = window.resize((window.width * k, window.height * k), Image.Resampling.NEAREST)
        return big.crop((x1 % k, y1 % k, x1 % k + x2 - x1, y1 % k + y2 - y1))


def _texture(rnd: random.Random):
    """A low-resolution picture: soft gradients (a few random colours,
    smoothly enlarged) under grain. The grain is what makes every box of the
    enlarged picture unique."""
    from PIL import Image

    w, h = LOW_SIZE
    smooth = Image.frombytes("RGB", (4, 6), rnd.randbytes(72)).resize((w, h), Image.Resampling.BICUBIC)
    grain = Image.frombytes("RGB", (w, h), rnd.randbytes(w * h * 3))
    return Image.blend(smooth, grain, 0.15)


def _patch(low, rnd: random.Random, region: Box):
    """`low` with `region` (in its own pixels) taken from another texture:
    a face swap, an inpainted hand."""
    out = low.copy()
    out.paste(_texture(rnd).crop(region), region[:2])
    return out


def photo(rnd: random.Random, width: int, height: int):
    """A photo-like picture (a Pillow RGB image) for crop tests and
    benchmarks: soft shapes at several scales and a fine grain, every pixel
    its own, so it decodes and correlates like a generated image does."""
    from PIL import Image

    out = Image.frombytes("RGB", (3, 4), rnd.randbytes(36)).resize((width, height), Image.Resampling.BICUBIC)
    for cell, weight in ((96, 0.45), (24, 0.3), (6, 0.15)):
        gw, gh = width // cell + 2, height // cell + 2
        layer = Image.frombytes("RGB", (gw, gh), rnd.randbytes(gw * gh * 3))
        layer = layer.resize((gw * cell, gh * cell), Image.Resampling.BICUBIC).crop((0, 0, width, height))
        out = Image.blend(out, layer, weight)
    grain = Image.frombytes("RGB", (width, height), rnd.randbytes(width * height * 3))
    return Image.blend(out, grain, 0.04)


class _GroupArt:
    """The pictures of one group's stages, made on demand: 1.5 swaps stage
    1's face, 2 enlarges the stage below it twice, 3 enhances stage 2."""

    def __init__(self, rnd: random.Random, stages: list[float]):
        self.rnd = rnd
        self.stages = stages
        self.lows: dict[float, object] = {}

    def low(self, stage: float):
        from PIL import ImageEnhance

        if stage not in self.lows:
            w, h = LOW_SIZE
            if stage == 1.0:
                self.lows[stage] = _texture(self.rnd)
            elif stage == 1.5:
                self.lows[stage] = _patch(self.low(1.0), self.rnd, (w // 3, h // 6, w * 2 // 3, h // 3))
            elif stage == 2.0:
                below = [s for s in self.stages if s < 2.0]
                self.lows[stage] = self.low(max(below)) if below else _texture(self.rnd)
            else:
                enhanced = ImageEnhance.Contrast(self.low(2.0)).enhance(1.15).point(lambda v: min(255, v + 6))
                self.lows[stage] = _patch(enhanced, self.rnd, (w // 6, h * 2 // 3, w // 3, h * 5 // 6))
        return self.lows[stage]

    def picture(self, stage: float) -> _Picture:
        return _Picture(self.low(stage), ENLARGE[stage])


def _box(rnd: random.Random, size: tuple[int, int], kind: str) -> Box:
    """A crop box as the workflow's crop tools drew them: sides 0.31-1.0 of
    the original's (median about 0.72), usually the original's aspect, the
    top edge at 0 in 61% of crops, the right edge one pixel short in 7%."""
    w, h = size
    f = rnd.triangular(0.31, 1.0, 0.85)
    if kind in ("jpeg", "resized"):
        f = rnd.uniform(0.31, 0.45)  # their finals are encoded pixel by pixel: small ones cost less
    bw = max(32, round(w * f))
    bh = max(32, round(h * (f if rnd.random() < 0.8 else rnd.triangular(0.31, 1.0, 0.85))))
    if (bw, bh) == (w, h):
        bw -= 1  # a crop, not a copy
    x1 = rnd.randint(0, w - bw)
    y1 = 0 if rnd.random() < 0.61 else rnd.randint(0, h - bh)
    if rnd.random() < 0.07 and bw < w:
        x1 = w - 1 - bw
    if kind == "edges_right_bottom":
        x1, y1 = w - bw, h - bh
    elif kind == "edges_left_bottom":
        x1, y1 = 0, h - bh
    elif kind == "right_short":
        bw = min(bw, w - 1)
        x1, y1 = w - 1 - bw, 0
    return x1, y1, x1 + bw, y1 + bh


class _CropMaker:
    """Makes every cropped winner of a sample: the hard cases once each, then
    plain crops, all of real pictures up to REAL_CROPS, blank ones after."""

    def __init__(self, rnd: random.Random):
        self.rnd = rnd
        self.pending = list(CROP_CASES)
        self.real = 0

    def _case_for(self, stages: list[float], winner: int, how: str) -> Optional[str]:
        stage = stages[winner]
        for case in self.pending:
            if case in ("full_frame", "scaled_sibling"):
                fits = stage == 2.0 and any(s < 2.0 for s in stages)
            elif case == "edited_sibling":
                fits = stage == 3.0 and 2.0 in stages
            elif case == "jpeg":
                fits = how != "cropped"  # a cropped copy keeps its name, so it cannot become a .jpg
            else:
                fits = True
            if fits:
                return case
        return None

    def winner(self, writer: _Writer, rels: list[str], stages: list[float], times: list[datetime],
               winner: int, how: str) -> None:
        """Write the final copy of a group's winner, cropped or not."""
        if how == "converted":
            writer.final_copy(rels[winner], stages[winner], how=how)
            return
        case = self._case_for(stages, winner, how) if self.real < REAL_CROPS else None
        if case is None and how == "same":
            writer.final_copy(rels[winner], stages[winner], how=how)
            return
        if case is not None:
            self.pending.remove(case)
        if how == "same":
            how = "cropped"
        if case is None and self.real >= REAL_CROPS:
            self._blank(writer, rels[winner], stages[winner], how)
            return
        self.real += 1
        self._real(writer, rels, stages, times, winner, how, case or "plain")

    def _blank(self, writer: _Writer, rel: str, stage: float, how: str) -> None:
        w, h = SIZES[stage]
        final = writer.final_copy(rel, stage, how=how, data=png_bytes(w * 9 // 10, h * 9 // 10))
        writer.expected.crops.append({"final": final, "matched": rel, "original": rel, "box": None,
                                      "kind": "blank", "status": CROP_STATUS["blank"]})

    def _real(self, writer: _Writer, rels: list[str], stages: list[float], times: list[datetime],
              winner: int, how: str, kind: str) -> None:
        art = _GroupArt(self.rnd, stages)
        stage = stages[winner]
        source = winner  # the group image the final is really cut from
        if kind in ("full_frame", "scaled_sibling"):
            source = stages.index(max(s for s in stages if s < 2.0))
        elif kind == "edited_sibling":
            source = stages.index(2.0)
        for k in sorted({winner, source}):
            writer._write(writer.sandbox / rels[k], art.picture(stages[k]).png(), times[k])
        picture = art.picture(stages[source])
        box = (0, 0, *picture.size) if kind == "full_frame" else _box(self.rnd, picture.size, kind)
        ext = None
        if kind == "jpeg":
            data, ext, how = self._jpeg(picture.image(box)), ".jpg", "renamed"
        elif kind == "resized":
            data = self._resized(picture.image(box))
        elif kind == "edited":
            k = picture.scale
            # a face swap inside the box, in whole cells of the low-resolution picture
            cx, cy = -(-box[0] // k), -(-box[1] // k)
            data = _Picture(_patch(picture.low, self.rnd, (cx + 1, cy + 1, cx + 6, cy + 7)), k).png(box)
        elif kind == "other_image":
            data = _Picture(_texture(self.rnd), picture.scale).png(box)
        elif kind == "truncated":
            whole = picture.png(box)
            data = whole[:max(64, len(whole) * 55 // 100)]
        else:
            data = picture.png(box)
        final = writer.final_copy(rels[winner], stage, how=how, data=data, ext=ext)
        writer.expected.crops.append({
            "final": final,
            "matched": rels[winner],
            "original": None if kind == "other_image" else rels[source],
            "box": None if kind == "other_image" else list(box),
            "kind": kind,
            "status": CROP_STATUS[kind],
        })

    @staticmethod
    def _jpeg(image) -> bytes:
        import io

        out = io.BytesIO()
        image.save(out, "JPEG", quality=92)
        return out.getvalue()

    def _resized(self, image) -> bytes:
        import io

        from PIL import Image

        dw, dh = self.rnd.choice([(1, 1), (2, 2), (1, 2), (2, 1), (2, 0)])
        out = io.BytesIO()
        image.resize((image.width - dw, image.height - dh), Image.Resampling.BICUBIC).save(out, "PNG", compress_level=1)
        return out.getvalue()


class _Writer:
    """Writes one project: its sandbox and final folders, and what to expect."""

    def __init__(self, root: Path, name: str, rng: random.Random, *, bare: bool,
                 folders: list[str], companions: bool, crops: _CropMaker):
        self.crops = crops
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

    def final_copy(self, sandbox_rel: str, stage: float, *, how: str, data: Optional[bytes] = None,
                   ext: Optional[str] = None) -> str:
        """Write a winner's final copy; returns its path in the final folder.
        `data` is a cropped copy's file, `ext` its extension when renamed."""
        folder, _, name = sandbox_rel.rpartition("/")
        target_dir = self.final / folder
        target_dir.mkdir(parents=True, exist_ok=True)
        when = self.clock + timedelta(days=1)
        stem, sandbox_ext = os.path.splitext(name)
        if how == "same":
            target, payload = name, png_bytes(*SIZES[stage])
        elif how == "cropped":
            assert data is not None
            target, payload = name, data
            self.expected.cropped += 1
        elif how == "renamed":  # cropped and renamed: only the key matches
            assert data is not None
            target, payload = f"{stem}_cropped{ext or sandbox_ext}", data
            self.expected.cropped += 1
            self.expected.key_matches += 1
        else:  # converted: same pixels, another format: key match
            target, payload = f"{stem}.jpg", jpeg_bytes(*SIZES[stage])
            self.expected.key_matches += 1
        self._write(target_dir / target, payload, when)
        self.expected.final_images += 1
        return f"{folder}/{target}" if folder else target

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
        self.crops.winner(self, rels, stages, times, winner, how)
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
    # Crops draw from their own generator: the rest of the sample is the same
    # whatever the crops look like.
    crops = _CropMaker(random.Random(f"crops-{seed}"))
    for (name, bare, folders), n in zip(plan, per_project):
        writer = _Writer(root, name, rng, bare=bare, folders=folders, companions=companions, crops=crops)
        for i in range(n):
            writer.group(i)
            done += 1
            if progress is not None and (done % 200 == 0 or done == total):
                progress(done, total)
        writer.extras()
        expected.projects[name] = writer.expected
    (root / EXPECTED_FILE).write_text(expected.to_json())
    return expected
