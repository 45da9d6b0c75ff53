"""Crash safety: `catalog index` killed with SIGKILL at many points leaves
every project as it was before the run or fully synced, and the next run ends
exactly where an uninterrupted one does. `catalog export` killed mid-write
leaves the previous file byte for byte."""

from __future__ import annotations

import os
import shutil
import signal
import time
from pathlib import Path

import pytest

from catalog.sample import write_sample
from proc import catalog, images_of, integrity, start, views

KILLS = 24


def mutate(workspace: Path) -> None:
    """Remove, change and add a few images in every project."""
    for project in ("aiko", "tattersail", "mojo-1"):
        pngs = sorted((workspace / "sandbox" / project).rglob("2025*.png"))
        for path in pngs[5:200:20]:
            path.unlink()
        for path in pngs[7:200:20]:
            with open(path, "ab") as f:
                f.write(b"\0")
        for i, path in enumerate(pngs[9:200:20]):
            shutil.copyfile(path, path.parent / f"20310101_0000{i:02d}_stage1_generated.png")


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    base = tmp_path_factory.mktemp("crash")
    ws = base / "ws"
    write_sample(ws, groups=900, seed=11)
    ws2 = base / "ws2"
    shutil.copytree(ws, ws2)
    mutate(ws2)
    before = base / "before.db"
    started = time.perf_counter()
    assert catalog(before, "index", ws).returncode == 0
    duration = time.perf_counter() - started
    after = base / "after.db"
    shutil.copyfile(before, after)
    started = time.perf_counter()
    assert catalog(after, "index", ws2).returncode == 0
    duration2 = time.perf_counter() - started
    return {
        "ws": ws, "ws2": ws2, "before": before, "after": after,
        "duration": {"fresh": duration, "incremental": duration2},
        "views_before": views(before), "views_after": views(after),
        "images_before": images_of(before), "images_after": images_of(after),
    }


def kill_after(db: Path, delay: float, *args) -> int:
    proc = start(db, *args)
    time.sleep(delay)
    proc.send_signal(signal.SIGKILL)
    proc.communicate()
    return proc.returncode


def per_project(all_views: dict, project: str) -> dict:
    return {v: [r for r in rows if r[0] == project] for v, rows in all_views.items()}


@pytest.mark.slow
@pytest.mark.parametrize("kind", ["fresh", "incremental"])
def test_sigkill_during_index(world, tmp_path, kind):
    """Half the kills hit a first index (before = no project), half a re-index
    of a changed tree (before = the previous catalogue)."""
    runs = KILLS // 2
    killed_mid_run = 0
    for i in range(runs):
        db = tmp_path / f"{kind}-{i}.db"
        if kind == "fresh":
            target, before_images, before_views = world["ws"], {}, None
            after_images, after_views = world["images_before"], world["views_before"]
        else:
            shutil.copyfile(world["before"], db)
            target, before_images, before_views = world["ws2"], world["images_before"], world["views_before"]
            after_images, after_views = world["images_after"], world["views_after"]
        # Delays from just after start to past the end of a normal run.
        delay = 0.05 + world["duration"][kind] * 1.1 * i / (runs - 1)
        code = kill_after(db, delay, "index", target)
        killed_mid_run += code == -signal.SIGKILL

        if db.exists():
            assert integrity(db) == "ok"
            got_images = images_of(db)
            for project in ("aiko", "tattersail", "mojo-1"):
                state = got_images.get(project)
                if state == after_images[project]:
                    assert per_project(views(db), project) == per_project(after_views, project)
                else:
                    assert state == before_images.get(project), f"{project} half-synced after kill at {delay:.2f}s"
                    if before_views is not None:
                        assert per_project(views(db), project) == per_project(before_views, project)
        result = catalog(db, "index", target)
        assert result.returncode == 0, result.stderr
        assert integrity(db) == "ok"
        assert images_of(db) == after_images
        assert views(db) == after_views
    assert killed_mid_run >= runs // 2  # most kills really hit a running index


@pytest.mark.slow
@pytest.mark.parametrize("args", [["export"], ["export", "--merge"], ["export-anomalies"]],
                         ids=["export", "merge", "anomalies"])
def test_sigkill_during_export_keeps_the_previous_file(world, tmp_path, args):
    db = tmp_path / "c.db"
    shutil.copyfile(world["after"], db)
    out = tmp_path / "out.csv"
    header = "session_id,set_id,chosen_path,neg_paths,timestamp\n" if args != ["export-anomalies"] else ""
    previous = (header + 'old_extraction,group_1,/x/a.png,"[""/x/b.png""]",2025-01-01T00:00:00Z\n').encode()
    hits = 0
    for attempt in range(40):
        out.write_bytes(previous)
        flags = [] if "--merge" in args else ["--force"]
        proc = start(db, *args, out, *flags)
        # Kill the moment the temporary file shows up: the write is under way.
        while proc.poll() is None:
            if any(name.startswith(".out.csv.") for name in os.listdir(tmp_path)):
                proc.send_signal(signal.SIGKILL)
                break
            time.sleep(0.0005)
        proc.communicate()
        if proc.returncode == -signal.SIGKILL:
            hits += 1
            assert out.read_bytes() == previous
        if hits >= 3:
            break
    assert hits >= 3, "the export never got killed mid-write"
    result = catalog(db, *args, out, *([] if "--merge" in args else ["--force"]))
    assert result.returncode == 0, result.stderr
    assert [n for n in os.listdir(tmp_path) if n.startswith(".out.csv")] == []  # no stray temporary file
    assert out.read_bytes() != previous


@pytest.mark.slow
def test_ctrl_c_leaves_the_project_as_it_was(world, tmp_path):
    hits = 0
    for i in range(4):
        db = tmp_path / f"int-{i}.db"
        shutil.copyfile(world["before"], db)
        proc = start(db, "index", world["ws2"])
        # Past start-up (an interrupt during imports is Python's own), before the end.
        time.sleep(world["duration"]["incremental"] * (0.5 + 0.12 * i))
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate()
        assert "Traceback" not in err
        got = images_of(db)
        if proc.returncode == 130:
            hits += 1
            assert "interrupted" in err
        else:
            # The signal landed after the work (at exit): the sync is complete.
            assert proc.returncode in (0, -signal.SIGINT), err
            assert got == world["images_after"]
        for project in ("aiko", "tattersail", "mojo-1"):
            assert got[project] in (world["images_before"][project], world["images_after"][project])
        assert integrity(db) == "ok"
    assert hits >= 1
