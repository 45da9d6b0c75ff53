"""Messy and hostile input: each gets a clear outcome, no traceback, and the
catalogue stays unchanged where the run failed."""

from __future__ import annotations

import csv
import io
import json
import os
import sqlite3
import subprocess

import pytest
from conftest import query, unreadable_folder
from test_layouts import tiny_project

from catalog.sample import png_bytes

IS_ROOT = hasattr(os, "geteuid") and os.geteuid() == 0


def ws_with(tmp_path, names, project="p"):
    """A workspace whose sandbox holds a valid little group plus `names`."""
    sandbox, final = tmp_path / "ws" / "sandbox" / project, tmp_path / "ws" / project
    tiny_project(sandbox, final)
    for name in names:
        (sandbox / name).write_bytes(png_bytes(64, 64))
    return tmp_path / "ws", sandbox


def recorded(db, role="sandbox"):
    return {r[0] for r in query(db, "SELECT filename FROM images WHERE role = ?", role)}


def clean(result, code=0):
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output


def test_odd_but_valid_names_are_recorded_and_parsed(tmp_path, run):
    odd = [
        "20250708_070000_stage2_with space.png",
        "20250708_070100_stage2_it's \"quoted\".png",
        "20250708_070200_stage2_100%.png",
        "20250708_070300_stage2_new\nline.png",
        "20250708_070400_stage2_ümlaut_日本語_🙂.png",
        "20250708_070500_stage2_e\u0301_combining.png",
        "20250708_070600_stage2_\u05e2\u05d1\u05e8\u05d9\u05ea.png",
    ]
    ws, _ = ws_with(tmp_path, odd)
    clean(run("index", ws))
    assert set(odd) <= recorded(run.db)
    stages = query(run.db, "SELECT count(*) FROM images WHERE role = 'sandbox' AND stage = 2 AND timestamp IS NOT NULL")[0][0]
    assert stages == len(odd) + 1


def test_names_survive_the_export(tmp_path, run):
    sandbox, final = tmp_path / "ws" / "sandbox" / "p", tmp_path / "ws" / "p"
    sandbox.mkdir(parents=True)
    final.mkdir(parents=True)
    a = "20250708_060558_stage1_a, \"b\"\n%s.png"
    b = "20250708_060711_stage2_ü 🙂.png"
    (sandbox / a).write_bytes(png_bytes(8, 8))
    (sandbox / b).write_bytes(png_bytes(8, 8))
    (final / b).write_bytes(png_bytes(8, 8))
    clean(run("index", tmp_path / "ws"))
    rows = list(csv.DictReader(io.StringIO(run("export", "-").stdout, newline="")))
    assert [r["chosen_path"].rsplit("/", 1)[1] for r in rows] == [b]
    assert [p.rsplit("/", 1)[1] for p in json.loads(rows[0]["neg_paths"])] == [a]


def test_non_utf8_name_is_recorded_with_a_warning(tmp_path, run):
    ws, sandbox = ws_with(tmp_path, [])
    raw = os.fsencode(str(sandbox)) + b"/20250708_080000_stage3_\xff\xfe.png"
    with open(raw, "wb") as f:
        f.write(png_bytes(8, 8))
    result = run("index", ws)
    clean(result)
    assert "not UTF-8" in result.stderr
    assert "20250708_080000_stage3_\\xff\\xfe.png" in recorded(run.db)
    clean(run("index", ws))  # and a second run sees it unchanged
    assert query(run.db, "SELECT changed, removed FROM scans ORDER BY id DESC LIMIT 1") == [(0, 0)]


def test_broken_symlink_loop_and_self_link_are_not_followed(tmp_path, run):
    ws, sandbox = ws_with(tmp_path, [])
    (sandbox / "20250708_090000_stage2_gone.png").symlink_to(tmp_path / "nowhere.png")
    (sandbox / "loop_a").symlink_to(sandbox / "loop_b")
    (sandbox / "loop_b").symlink_to(sandbox / "loop_a")
    (sandbox / "self").symlink_to(sandbox)
    result = run("index", ws)
    clean(result)
    assert "broken symlink" in result.stderr
    assert query(run.db, "SELECT count(*) FROM images WHERE role='sandbox'") == [(2,)]


def test_broken_symlink_as_path(tmp_path, run):
    (tmp_path / "link").symlink_to(tmp_path / "nowhere")
    result = run("index", tmp_path / "link")
    clean(result, 2)
    assert "broken symlink" in result.stderr


def test_zero_byte_truncated_and_lying_images(tmp_path, run):
    ws, sandbox = ws_with(tmp_path, [])
    good = png_bytes(100, 100)
    (sandbox / "20250708_100000_stage1_zero.png").write_bytes(b"")
    (sandbox / "20250708_100100_stage2_trunc.png").write_bytes(good[:20])
    (sandbox / "20250708_100200_stage3_lying.png").write_bytes(good[:16] + b"\x00\x00\xff\xff\x00\x00\xff\xff" + good[24:])
    clean(run("index", ws))
    nulls = {r[0] for r in query(run.db, "SELECT filename FROM images WHERE width IS NULL")}
    assert nulls == {"20250708_100000_stage1_zero.png", "20250708_100100_stage2_trunc.png",
                     "20250708_100200_stage3_lying.png"}
    problems = json.loads(run("check", "-f", "json").stdout)
    assert sum(p["problem"] == "unreadable_header" for p in problems) == 3


def test_stage_spellings_and_impossible_dates(tmp_path, run):
    names = ["20250708_110000_stage01.png", "20250708_110100_stage1.50.png", "20250708_110200_STAGE2.png",
             "20251399_250000_stage3.png"]
    ws, _ = ws_with(tmp_path, names)
    clean(run("index", ws))
    got = dict(query(run.db, "SELECT filename, stage FROM images WHERE filename IN (?, ?, ?, ?)", *names))
    assert got == {names[0]: 1.0, names[1]: 1.5, names[2]: 2.0, names[3]: 3.0}
    assert query(run.db, "SELECT timestamp FROM images WHERE filename = ?", names[3]) == [(None,)]


def test_very_long_names_and_paths(tmp_path, run):
    ws, sandbox = ws_with(tmp_path, [])
    # Most filesystems cap one name at 255 bytes; the path goes past 300 characters.
    deep = sandbox / ("d" * 60) / ("e" * 60)
    deep.mkdir(parents=True)
    name = "20250708_120000_stage2_" + "x" * 228 + ".png"
    (deep / name).write_bytes(png_bytes(8, 8))
    clean(run("index", ws))
    (rel,) = query(run.db, "SELECT rel_path FROM images WHERE filename = ?", name)[0]
    assert len(rel) > 300 and rel.endswith(name)


@pytest.mark.slow
def test_a_hundred_thousand_files_in_one_folder(tmp_path, run):
    sandbox, final = tmp_path / "ws" / "sandbox" / "big", tmp_path / "ws" / "big"
    sandbox.mkdir(parents=True)
    final.mkdir(parents=True)
    data = png_bytes(832, 1216)
    for i in range(25_000):
        stem = f"2025{(i // 86400) % 12 + 1:02d}{(i // 3600) % 28 + 1:02d}_{(i // 60) % 24:02d}{i % 60:02d}{i % 60:02d}"
        (sandbox / f"{stem}_{i:05d}_stage{1 + i % 3}.png").write_bytes(data)
        (sandbox / f"{stem}_{i:05d}.yaml").write_bytes(b"")
        (sandbox / f"{stem}_{i:05d}.caption").write_bytes(b"")
        (sandbox / f"{stem}_{i:05d}.txt").write_bytes(b"")
    assert len(os.listdir(sandbox)) == 100_000
    result = run("index", tmp_path / "ws", "--json")
    clean(result)
    assert json.loads(result.stdout)[0]["added"] == 25_000


def test_unreadable_folder_stops_the_project_unchanged(tmp_path, run):
    ws, sandbox = ws_with(tmp_path, [])
    clean(run("index", ws))
    before = query(run.db, "SELECT * FROM images ORDER BY id")
    locked = sandbox / "locked"
    if IS_ROOT:
        # Root reads through any permission; a path longer than PATH_MAX
        # cannot be opened by anyone.
        unreadable_folder(sandbox)
    else:
        locked.mkdir()
        locked.chmod(0)
    try:
        result = run("index", ws)
        clean(result, 1)
        assert "cannot read folder" in result.stderr
        assert ("File name too long" if IS_ROOT else "permission denied") in result.stderr
    finally:
        if locked.exists():
            locked.chmod(0o755)
    assert query(run.db, "SELECT * FROM images ORDER BY id") == before


def test_database_in_a_read_only_folder(tmp_path):
    from conftest import Run

    folder = tmp_path / "ro"
    folder.mkdir()
    if IS_ROOT:
        # Root writes through any permission, but not into an immutable folder.
        made = subprocess.run(["chattr", "+i", str(folder)], capture_output=True, text=True)
        assert made.returncode == 0, (
            f"as root this test needs `chattr +i` (Debian package e2fsprogs, on ext4 or xfs): {made.stderr}; "
            "or run the tests as a non-root user")
    else:
        folder.chmod(0o555)
    try:
        result = Run(folder / "c.db")("db", "upgrade")
        clean(result, 1)
        assert "read-only" in result.stderr
        assert not (folder / "c.db").exists()
    finally:
        if IS_ROOT:
            subprocess.run(["chattr", "-i", str(folder)], check=True)
        folder.chmod(0o755)


def test_unreadable_database_file_as_root_too(tmp_path):
    """What root can reproduce of a read-only database: a database path that is a folder."""
    from conftest import Run

    (tmp_path / "c.db").mkdir()
    result = Run(tmp_path / "c.db")("stats")
    clean(result, 2)
    assert "is a folder" in result.stderr


def test_failed_run_leaves_the_catalogue_unchanged(tmp_path, run):
    ws, sandbox = ws_with(tmp_path, [])
    clean(run("index", ws))
    con = sqlite3.connect(run.db)
    before = list(con.iterdump())
    con.close()
    clean(run("index", tmp_path / "missing"), 2)
    clean(run("index", "--project", "p", "--sandbox", tmp_path / "missing"), 2)
    con = sqlite3.connect(run.db)
    assert list(con.iterdump()) == before
    con.close()
