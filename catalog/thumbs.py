"""Thumbnails for the review site: the tiles under OUT_DIR/thumbs/<project>/.

Owns turning originals into small JPEG or WebP tiles: their names (a digest
of the original's path, size and mtime and of the tile settings, so an
unchanged image is never decoded twice and a changed one gets a new tile),
making the missing ones on all cores, a placeholder tile that says why when
an image cannot be decoded, and removing tiles no page uses any more: only
files named the way this module names them, only inside OUT_DIR/thumbs.
"""

from __future__ import annotations

import contextlib
import hashlib
import multiprocessing
import os
import re
import signal
import textwrap
import warnings
from collections.abc import Callable, Iterable
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Optional

FORMATS = {"jpeg": ".jpg", "webp": ".webp"}
UNREADABLE = ".unreadable.png"
DEFAULT_EDGE = 384
# Every file this module writes into a thumbs folder, and its temporaries;
# nothing else there is ever deleted.
_TILE = re.compile(r"^[0-9a-f]{32}(?:\.jpg|\.webp|\.unreadable\.png)$")
_TEMPORARY = re.compile(r"^[0-9a-f]{32}(?:\.jpg|\.webp|\.unreadable\.png)\.tmp$")
# Below this many tiles, starting worker processes costs more than it saves.
_POOL_FROM = 8

Progress = Callable[[int, int], None]


def tile_stem(path: str, size_bytes: int, mtime_ns: int, edge: int, fmt: str) -> str:
    """The digest naming an original's tile: any change to the file (size or
    mtime) or to the tile settings gives another name."""
    h = hashlib.blake2b(digest_size=16)
    h.update(f"{edge}\0{fmt}\0{size_bytes}\0{mtime_ns}\0".encode())
    h.update(os.fsencode(path))  # names that are not UTF-8 still hash
    return h.hexdigest()


def placeholder_size(edge: int) -> tuple[int, int]:
    return edge * 3 // 4, edge


@dataclass(frozen=True)
class Tile:
    """What a page shows for one original: the tile's file name in its
    project's thumbs folder, and why the original could not be read (None
    when it could)."""

    name: str
    reason: Optional[str] = None


@dataclass
class TileRun:
    made: int = 0
    kept: int = 0
    removed: int = 0
    unreadable: int = 0
    tiles: dict[tuple[str, str], Tile] = field(default_factory=dict)  # (folder, stem) -> tile
    # Tiles (and temporaries) in the folders that no tile of this run is:
    # removed by remove_stale once the pages that used them are replaced.
    stale: dict[Path, set[str]] = field(default_factory=dict)


# Placeholders whose cause may pass (a drive unmounted, a permission fixed):
# tried again on every run while the original looks readable. Any other
# cause is in the file itself, whose next version gets a new tile name.
NOT_FOUND = "file not found (moved or deleted since it was indexed?)"
NO_PERMISSION = "permission denied"


def _good_name(stem: str, fmt: str) -> str:
    return stem + FORMATS[fmt]


def _read_reason(path: Path) -> str:
    """The reason stored in a placeholder tile written by an earlier run."""
    from PIL import Image

    try:
        with Image.open(path) as im:
            return str(getattr(im, "text", {}).get("reason") or "unreadable")
    except Exception:  # a damaged placeholder still stands for an unreadable original
        return "unreadable"


def make_tiles(wanted: dict[Path, dict[str, str]], *, edge: int, fmt: str, jobs: int,
               progress: Optional[Progress] = None) -> TileRun:
    """Make the tiles each thumbs folder lacks.

    `wanted` maps a thumbs folder to {tile stem: original's absolute path}.
    Tiles already there are kept; the missing ones are made (in `jobs`
    processes); every other tile of those folders is listed as stale.
    """
    run = TileRun()
    todo: list[tuple[str, str, int, str]] = []
    where: list[tuple[Path, str]] = []
    used: dict[Path, set[str]] = {}
    present: dict[Path, set[str]] = {}
    for folder, stems in wanted.items():
        folder.mkdir(parents=True, exist_ok=True)
        present[folder] = there = set(os.listdir(folder))
        used[folder] = set()
        for stem, source in stems.items():
            good, bad = _good_name(stem, fmt), stem + UNREADABLE
            tile = None
            if good in there:
                tile = Tile(good)
            elif bad in there:
                why = _read_reason(folder / bad)
                if why not in (NOT_FOUND, NO_PERMISSION) or not os.access(source, os.R_OK):
                    tile = Tile(bad, why)
            if tile is None:
                todo.append((source, str(folder / stem), edge, fmt))
                where.append((folder, stem))
                continue
            run.tiles[(str(folder), stem)] = tile
            used[folder].add(tile.name)
            run.kept += 1
            run.unreadable += tile.reason is not None

    for (folder, stem), reason in zip(where, _run(todo, jobs, progress)):
        tile = Tile(_good_name(stem, fmt) if reason is None else stem + UNREADABLE, reason)
        run.tiles[(str(folder), stem)] = tile
        used[folder].add(tile.name)
        run.made += 1
        run.unreadable += reason is not None
    for folder, there in present.items():
        run.stale[folder] = {n for n in there - used[folder] if _TILE.match(n) or _TEMPORARY.match(n)}
    return run


def remove_stale(run: TileRun, prune: Iterable[Path] = ()) -> None:
    """Remove the stale tiles of a run, and every tile of the folders in
    `prune` (thumbs of projects no longer catalogued, which go too when
    nothing else is in them). Called once the new pages are written, so a
    page of the previous run never loses its tiles while it is still there."""
    for folder, names in run.stale.items():
        run.removed += _remove_tiles(folder, names)
    for folder in prune:
        run.removed += _remove_tiles(folder, os.listdir(folder))
        with contextlib.suppress(OSError):  # something that is not ours is in it: leave the folder
            folder.rmdir()


def _remove_tiles(folder: Path, names: Iterable[str]) -> int:
    removed = 0
    for name in names:
        if _TILE.match(name) or _TEMPORARY.match(name):
            try:
                (folder / name).unlink()
            except FileNotFoundError:
                continue
            removed += not name.endswith(".tmp")
    return removed


def jobs_default() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


def _run(todo: list[tuple[str, str, int, str]], jobs: int, progress: Optional[Progress]) -> list[Optional[str]]:
    if progress is not None:
        progress(0, len(todo))
    if jobs <= 1 or len(todo) < _POOL_FROM:
        results = []
        for k, item in enumerate(todo, start=1):
            results.append(make_tile(item))
            if progress is not None:
                progress(k, len(todo))
        return results
    # forkserver, not fork: a parent with threads (the progress bar) must not
    # be forked; the server preloads Pillow once for every worker.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("forkserver" if "forkserver" in methods else "spawn")
    if "forkserver" in methods:
        ctx.set_forkserver_preload([__name__])
    workers = min(jobs, len(todo))
    # Small chunks keep every core busy to the end (one original can take a
    # tenth of a second); items are a few short strings, so chunks stay cheap.
    chunk = max(1, min(16, len(todo) // (workers * 8)))
    results = []
    pool = ProcessPoolExecutor(workers, mp_context=ctx, initializer=_worker_started)
    try:
        for k, reason in enumerate(pool.map(make_tile, todo, chunksize=chunk), start=1):
            results.append(reason)
            if progress is not None and (k % 16 == 0 or k == len(todo)):
                progress(k, len(todo))
    except BaseException:
        # Ctrl-C: drop the queued tiles instead of waiting for them all.
        pool.shutdown(wait=False, cancel_futures=True)
        raise
    pool.shutdown()
    return results


def _worker_started() -> None:
    # Ctrl-C is the parent's to handle (it stops the pool); a worker just
    # finishes the tile in hand, so no half-written tile and no traceback.
    signal.signal(signal.SIGINT, signal.SIG_IGN)


def make_tile(item: tuple[str, str, int, str]) -> Optional[str]:
    """Write one tile: (original, tile path without extension, edge, format).
    Returns None, or why the original could not be read (a placeholder tile
    saying so is written instead). Runs in the worker processes."""
    source, stem_path, edge, fmt = item
    try:
        _thumbnail(source, stem_path + FORMATS[fmt], edge, fmt)
        return None
    except FileNotFoundError:
        reason = NOT_FOUND
    except PermissionError:
        reason = NO_PERMISSION
    except Exception as exc:  # decoders raise many kinds on damaged files; one must not stop the site
        reason = _describe(exc)
    _placeholder(stem_path + UNREADABLE, edge, reason)
    return reason


def _describe(exc: Exception) -> str:
    from PIL import Image, UnidentifiedImageError

    if isinstance(exc, UnidentifiedImageError):
        return "not an image Pillow can read (empty or damaged file)"
    if isinstance(exc, Image.DecompressionBombError):
        return "too many pixels to decode safely"
    text = str(exc).strip() or type(exc).__name__
    return text[:200]


def _thumbnail(source: str, target: str, edge: int, fmt: str) -> None:
    from PIL import Image, ImageOps

    with warnings.catch_warnings():
        # Large originals (over 89 Mpx) are legitimate here; the hard limit still applies.
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(source) as original:
            # JPEG decodes at 1/2, 1/4 or 1/8 scale straight away; PNG and
            # WebP ignore this and decode in full (which dominates the time).
            original.draft("RGB", (edge, edge))
            tile = _flatten(ImageOps.exif_transpose(original))
            tile.thumbnail((edge, edge), Image.Resampling.LANCZOS, reducing_gap=2.0)
    tmp = target + ".tmp"
    if fmt == "webp":
        tile.save(tmp, "WEBP", quality=80, method=4)
    else:
        tile.save(tmp, "JPEG", quality=85)
    os.replace(tmp, target)


def _flatten(im):
    """RGB (or L): the only modes that resize smoothly and that JPEG stores;
    transparency is shown over white, as image viewers do."""
    from PIL import Image

    if im.mode in ("RGB", "L"):
        return im
    if im.mode in ("1", "I;16", "I", "F"):
        return im.convert("L")
    if im.mode == "P" and "transparency" not in im.info:
        return im.convert("RGB")
    rgba = im.convert("RGBA")
    white = Image.new("RGB", rgba.size, (255, 255, 255))
    white.paste(rgba, mask=rgba.getchannel("A"))
    return white


def _placeholder(target: str, edge: int, reason: str) -> None:
    """A tile that says the original is unreadable, and why (also kept in the
    PNG's text, so later runs can show the reason without decoding again)."""
    from PIL import Image, ImageDraw, ImageFont, PngImagePlugin

    w, h = placeholder_size(edge)
    im = Image.new("RGB", (w, h), (238, 232, 226))
    draw = ImageDraw.Draw(im)
    draw.rectangle((3, 3, w - 4, h - 4), outline=(196, 62, 52), width=3)
    try:
        big, small = ImageFont.load_default(size=max(12, edge // 12)), ImageFont.load_default(size=max(10, edge // 24))
    except (TypeError, OSError):  # Pillow without FreeType: the bitmap font
        big = small = ImageFont.load_default()
    draw.text((w // 2, h // 3), "unreadable", fill=(160, 40, 32), font=big, anchor="mm")
    y = h // 3 + edge // 10
    for line in textwrap.wrap(reason, width=max(12, w // max(6, edge // 48)))[:8]:
        draw.text((w // 2, y), line, fill=(60, 60, 60), font=small, anchor="mt")
        y += edge // 20 + 2
    info = PngImagePlugin.PngInfo()
    info.add_text("reason", reason)
    tmp = target + ".tmp"
    im.save(tmp, "PNG", pnginfo=info)
    os.replace(tmp, target)

