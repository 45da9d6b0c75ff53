"""`catalog crops` and `catalog export-crops`: crop boxes, proven or flagged.

First the search itself on generated pairs whose box is known: every pure
PNG crop exact (edges and full frame included), JPEG re-encodes approx within
a pixel, and no non-crop (another picture, a sibling at another scale, a
resized crop, an edited sibling) ever exact. Then the catalogue side on the
sample workspace, whose SAMPLE_EXPECTED.json holds the true box and status of
every crop: the stored boxes, the sibling fallback, the incremental re-run,
unreadable files, stats and check, Ctrl-C, and the exported rows read back.
"""

from __future__ import annotations

import csv
import io
import json
import os
import random
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from conftest import Run, query
from PIL import Image

from catalog.cropfind import Picture, find_crop, open_picture
from catalog.sample import photo, png_bytes

REPO = Path(__file__).resolve().parent.parent


# ---------------------------------------------------------------- the search, on generated pairs


def save(image: Image.Image, path: Path, **options) -> Path:
    image.save(path, **options)
    return path


def boxes(rnd: random.Random, w: int, h: int) -> list[tuple[int, int, int, int]]:
    """Boxes as the crop tools drew them, plus every edge and the full frame."""
    out = [(0, 0, w, h), (0, 0, w - 1, h), (w // 3, 0, w, h), (0, h // 4, w * 2 // 3, h),
           (w // 5, h // 5, w - 1, h * 4 // 5), (w - 40, h - 60, w, h), (0, 0, 48, 64)]
    for _ in range(5):
        f = rnd.uniform(0.31, 0.95)
        bw, bh = round(w * f), round(h * f)
        x1 = rnd.randint(0, w - bw)
        y1 = 0 if rnd.random() < 0.6 else rnd.randint(0, h - bh)
        out.append((x1, y1, x1 + bw, y1 + bh))
    return out


@pytest.fixture(scope="module")
def originals(tmp_path_factory) -> list[tuple[Path, Image.Image]]:
    base = tmp_path_factory.mktemp("pairs")
    rnd = random.Random(11)
    return [(save(im, base / f"original{i}.png"), im)
            for i, im in enumerate(photo(rnd, w, h) for w, h in ((288, 416), (384, 384), (416, 288)))]


def test_every_pure_png_crop_is_found_exactly(originals, tmp_path):
    rnd = random.Random(5)
    checked = 0
    for path, image in originals:
        original = open_picture(str(path))
        for box in boxes(rnd, *image.size):
            final = open_picture(str(save(image.crop(box), tmp_path / "final.png")))
            found = find_crop(final, original)
            assert (found.status, found.box) == ("exact", box), (path.name, box, found)
            checked += 1
    assert checked == 36


def test_jpeg_reencodes_are_approx_within_a_pixel(originals, tmp_path):
    rnd = random.Random(6)
    for path, image in originals:
        original = open_picture(str(path))
        for quality in (90, 95, 98):
            w, h = image.size
            f = rnd.uniform(0.35, 0.9)
            bw, bh = round(w * f), round(h * f)
            x1, y1 = rnd.randint(0, w - bw), rnd.choice([0, rnd.randint(0, h - bh)])
            box = (x1, y1, x1 + bw, y1 + bh)
            final = open_picture(str(save(image.crop(box), tmp_path / "final.jpg", quality=quality)))
            found = find_crop(final, original)
            assert found.status == "approx", (path.name, quality, box, found)
            assert found.box is not None and max(abs(a - b) for a, b in zip(found.box, box)) <= 1, (box, found)
            assert found.score is not None and found.score >= 0.99


def non_crops(rnd: random.Random, image: Image.Image):
    """(what, final, original, the status it must get) for pictures that are
    not a crop of the original they are held against."""
    w, h = image.size
    box = (w // 6, 0, w * 5 // 6, h * 3 // 4)
    crop = image.crop(box)
    yield "another picture", photo(rnd, w, h).crop(box), image, "none"
    for scale in (1.5, 2.0):
        # A crop of a picture, held against its upscale (a 2048 crop against its 3072 version).
        bigger = image.resize((round(w * scale), round(h * scale)), Image.Resampling.LANCZOS)
        yield f"sibling at {scale}x", crop, bigger, "none"
        yield f"sibling at {scale}x (nearest)", crop, image.resize(bigger.size, Image.Resampling.NEAREST), "none"
    for dw, dh in ((1, 1), (2, 2), (2, 0)):
        yield f"resized by {dw}x{dh} px", crop.resize((crop.width - dw, crop.height - dh), Image.Resampling.BICUBIC), \
            image, "review"
    edited = crop.copy()
    edited.paste(photo(rnd, crop.width // 4, crop.height // 5), (crop.width // 3, crop.height // 4))
    yield "edited sibling (face swap)", edited, image, "review"
    brighter = crop.point(lambda v: min(255, round(v * 1.12 + 4)))
    yield "enhanced sibling (contrast)", brighter, image, "review"


def test_no_non_crop_is_ever_exact(originals):
    rnd = random.Random(7)
    seen = 0
    for _, image in originals:
        for what, final, original, status in non_crops(rnd, image):
            found = find_crop(Picture.from_pil(final), Picture.from_pil(original))
            assert found.status == status, (what, found)
            seen += 1
    assert seen == 3 * 10


def test_a_flat_final_is_never_exact_and_a_larger_one_fails():
    blank = Picture.from_pil(Image.new("RGB", (300, 400), (90, 90, 90)))
    found = find_crop(Picture.from_pil(Image.new("RGB", (100, 120), (90, 90, 90))), blank)
    assert found.status == "review" and "not unique" in (found.reason or "")
    found = find_crop(Picture.from_pil(Image.new("RGB", (301, 10))), blank)
    assert found.status == "failed" and "larger" in (found.reason or "")


# ---------------------------------------------------------------- the catalogue, on the sample


@pytest.fixture(scope="module")
def cropped_master(indexed_master, tmp_path_factory):
    """The indexed sample with every crop looked for once: (workspace, db, expected)."""
    root, db, expected = indexed_master
    copy = tmp_path_factory.mktemp("cropped") / "catalog.db"
    backup(db, copy)
    result = Run(copy)("crops", "--jobs", "1")
    assert result.exit_code == 0, result.output
    return root, copy, expected


@pytest.fixture
def cropped(cropped_master, tmp_path) -> tuple[Path, Path, object]:
    """A private copy of the sample's files and of the catalogue with its crops."""
    root, db, expected = cropped_master
    ws = tmp_path / "workspace"
    shutil.copytree(root, ws, symlinks=True)
    copy = tmp_path / "catalog.db"
    backup(db, copy)
    # The same files in another place: the project moves, no row changes.
    assert Run(copy)("index", ws).exit_code == 0
    return ws, copy, expected


def backup(src: Path, dst: Path) -> None:
    a, b = sqlite3.connect(src), sqlite3.connect(dst)
    a.backup(b)
    a.close()
    b.close()


def truth(expected) -> dict[tuple[str, str], dict]:
    return {(name, c["final"]): c for name, p in expected.projects.items() for c in p.crops}


def stored(db: Path) -> dict[tuple[str, str], tuple]:
    rows = query(db, """SELECT project, final_path, sandbox_path, x1, y1, x2, y2, status, score, width, height
                        FROM crops""")
    return {(r[0], r[1]): r[2:] for r in rows}


def test_the_sample_holds_every_kind_of_crop(sample_master):
    kinds = {c["kind"] for c in truth(sample_master[1]).values()}
    assert kinds >= {"plain", "edges_right_bottom", "edges_left_bottom", "right_short", "full_frame", "jpeg",
                     "resized", "other_image", "scaled_sibling", "edited_sibling", "edited", "truncated"}
    assert sum(p.cropped for p in sample_master[1].projects.values()) == len(truth(sample_master[1]))


def test_every_sample_crop_gets_its_true_box_and_status(cropped_master):
    _, db, expected = cropped_master
    want, got = truth(expected), stored(db)
    assert set(got) == set(want)
    for key, c in want.items():
        sandbox_path, x1, y1, x2, y2, status, score, width, height = got[key]
        assert status == c["status"], (key, c, got[key])
        box = (x1, y1, x2, y2)
        if status == "exact":
            # found in the image it was really cut from, which may be a sibling of the matched one
            assert (sandbox_path, list(box), score) == (c["original"], c["box"], 1.0), (key, c, got[key])
        elif status == "approx":
            assert sandbox_path == c["original"] and max(abs(a - b) for a, b in zip(box, c["box"])) <= 1
        elif c["kind"] == "resized":  # the box the final was resized from, scaled back
            assert sandbox_path == c["original"] and max(abs(a - b) for a, b in zip(box, c["box"])) <= 3
        elif c["kind"] == "edited":
            assert sandbox_path == c["original"] and list(box) == c["box"]
        else:  # none and failed: no box; the row names the matched original
            assert box == (None, None, None, None) and sandbox_path == c["matched"]


def test_a_crop_of_a_sibling_is_not_found_in_the_matched_original(cropped_master):
    """The matched stage 2 of the full-frame and half-scale crops is their
    picture enlarged twice: searched alone it must say none, never exact."""
    root, _, expected = cropped_master
    from catalog.cropfind import find_by_correlation, find_exact

    for (name, final), c in truth(expected).items():
        if c["kind"] in ("full_frame", "scaled_sibling", "edited_sibling"):
            f = open_picture(str(root / name / final))
            matched = open_picture(str(root / "sandbox" / name / c["matched"]))
            assert find_exact(f, matched) is None
            assert find_by_correlation(f, matched).status == ("review" if c["kind"] == "edited_sibling" else "none")


def test_a_rerun_looks_at_nothing(cropped):
    _, db, _ = cropped
    before = query(db, "SELECT * FROM crop_boxes ORDER BY 1")
    result = Run(db)("crops")
    assert result.exit_code == 0, result.output
    assert "looked at 0 pairs, 18 unchanged" in result.stdout
    assert query(db, "SELECT * FROM crop_boxes ORDER BY 1") == before  # checked_at included: nothing rewritten


def pick(expected, kind: str) -> tuple[str, dict]:
    return next((name, c) for (name, _), c in truth(expected).items() if c["kind"] == kind)


def test_changed_pairs_are_looked_at_again_and_gone_pairs_removed(cropped):
    ws, db, expected = cropped
    run = Run(db)
    plain = [(name, c) for (name, _), c in truth(expected).items() if c["kind"] == "plain"]
    # 1. a final cut again, elsewhere: its new box is found
    name, c = plain[0]
    original = Image.open(ws / "sandbox" / name / c["original"])
    new_box = (10, 20, 10 + original.width // 2, 20 + original.height // 2)
    original.crop(new_box).save(ws / name / c["final"])
    # 2. a final replaced by an uncropped copy: no longer a crop, its row goes
    name2, c2 = plain[1]
    shutil.copy(ws / "sandbox" / name2 / c2["matched"], ws / name2 / c2["final"])
    # 3. a final deleted: its image row goes, and its crop row with it
    name3, c3 = plain[2]
    (ws / name3 / c3["final"]).unlink()
    assert run("index", ws).exit_code == 0
    result = run("crops", "--jobs", "1")
    assert result.exit_code == 0, result.output
    assert "looked at 1 pairs, 15 unchanged; " in result.stdout and "removed 1 whose pair is gone" in result.stdout
    got = stored(db)
    assert got[(name, c["final"])][1:6] == (*new_box, "exact")
    assert (name2, c2["final"]) not in got and (name3, c3["final"]) not in got
    assert len(got) == 16


def test_unreadable_and_changed_files_fail_with_a_reason(cropped):
    ws, db, expected = cropped
    run = Run(db)
    name, c = pick(expected, "truncated")
    assert "unreadable" in query(db, "SELECT reason FROM crop_boxes WHERE status = 'failed'")[0][0]
    # an original cut short: the pair is looked at again (its size changed) and fails, saying why
    name, c = pick(expected, "right_short")
    path = ws / "sandbox" / name / c["original"]
    path.write_bytes(path.read_bytes()[:4000])
    # a final changed on disk after the last index: not read as if it were the indexed one
    name2, c2 = pick(expected, "edges_left_bottom")
    final2 = ws / name2 / c2["final"]
    assert run("index", ws).exit_code == 0
    final2.write_bytes(final2.read_bytes() + b"\0")
    result = run("crops", "--recheck", "--project", name)
    assert result.exit_code == 0, result.output
    reasons = dict(query(db, """SELECT f.rel_path, c.reason FROM crop_boxes c JOIN images f ON f.id = c.final_image_id
                                WHERE c.status = 'failed'"""))
    assert "original unreadable" in reasons[c["final"]] and "truncated" in reasons[c["final"]]
    assert reasons[c2["final"]].startswith("final changed on disk since it was indexed")
    check = json.loads(run("check", "-f", "json").stdout)
    listed = {(p["problem"], p["path"]) for p in check}
    assert ("crop_failed", c["final"]) in listed and ("crop_failed", c2["final"]) in listed


def test_stats_and_check_count_crops_by_status(cropped_master):
    _, db, expected = cropped_master
    run = Run(db)
    rows = {r["project"]: r for r in json.loads(run("stats", "-f", "json").stdout)}
    for name, p in expected.projects.items():
        for status in ("exact", "approx", "review", "none", "failed"):
            assert rows[name][f"crops_{status}"] == sum(1 for c in p.crops if c["status"] == status), (name, status)
    assert rows["TOTAL"]["crops_exact"] == sum(1 for c in truth(expected).values() if c["status"] == "exact")
    problems = json.loads(run("check", "-f", "json").stdout)
    crop_problems = sorted((p["project"], p["problem"], p["path"]) for p in problems if p["problem"].startswith("crop_"))
    want = sorted((name, "crop_" + c["status"], final) for (name, final), c in truth(expected).items()
                  if c["status"] in ("review", "none", "failed"))
    assert crop_problems == want


def test_ctrl_c_keeps_what_is_done(cropped):
    from catalog.crops import CropsInterrupted, run_crops
    from catalog.database import open_catalog

    _, db, _ = cropped
    query(db, "SELECT 1")
    con = sqlite3.connect(db)
    con.execute("DELETE FROM crop_boxes")
    con.commit()
    con.close()
    engine = open_catalog(str(db), write=True)
    seen = []

    def stop_after_two(done: int, total: int) -> None:
        seen.append(done)
        if done >= 2:
            raise KeyboardInterrupt

    with pytest.raises(CropsInterrupted) as stopped:
        run_crops(engine, jobs=1, progress=stop_after_two)
    assert (stopped.value.saved, stopped.value.left) == (2, 16)
    assert query(db, "SELECT count(*) FROM crop_boxes") == [(2,)]
    result = Run(db)("crops", "--jobs", "1")
    assert "looked at 16 pairs, 2 unchanged" in result.stdout
    engine.dispose()


def test_worker_processes_store_what_one_process_stores(cropped_master, tmp_path):
    _, master_db, _ = cropped_master
    db = tmp_path / "catalog.db"
    backup(master_db, db)
    code = "from catalog.cli import app; app(prog_name='catalog')"
    proc = subprocess.run([sys.executable, "-c", code, "--db", str(db), "crops", "--recheck", "--jobs", "2",
                           "--project", "aiko"], cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "looked at 11 pairs" in proc.stdout
    columns = "final_image_id, original_image_id, x1, y1, x2, y2, status, score, reason"
    assert query(db, f"SELECT {columns} FROM crop_boxes ORDER BY 1") == \
        query(master_db, f"SELECT {columns} FROM crop_boxes ORDER BY 1")


def test_a_project_whose_folder_is_gone_is_left_alone(cropped):
    ws, db, _ = cropped
    before = query(db, "SELECT * FROM crop_boxes ORDER BY 1")
    (ws / "sandbox" / "mojo-1").rename(ws / "sandbox" / "mojo-1-away")
    result = Run(db)("crops", "--recheck", "--project", "mojo-1")
    assert result.exit_code == 0, result.output
    assert "mojo-1: its sandbox or final folder is missing" in result.stderr
    assert query(db, "SELECT * FROM crop_boxes ORDER BY 1") == before


def test_crops_needs_an_indexed_catalogue_and_known_projects(tmp_path):
    run = Run(tmp_path / "none.db")
    assert run("crops").exit_code == 2
    result = run("export-crops", tmp_path / "out.csv")
    assert result.exit_code == 2 and "no catalogue" in result.stderr


# ---------------------------------------------------------------- the export, read back


def read_csv(text: str) -> list[dict]:
    return list(csv.DictReader(io.StringIO(text)))


def test_export_crops_reads_back_as_the_true_boxes(cropped_master, tmp_path):
    root, db, expected = cropped_master
    run = Run(db)
    out = tmp_path / "crops.csv"
    result = run("export-crops", out)
    assert result.exit_code == 0, result.output
    rows = read_csv(out.read_text())
    assert list(rows[0]) == ["timestamp", "project_id", "filename", "crop_x1", "crop_y1", "crop_x2", "crop_y2",
                             "width", "height"]
    want = [c for c in truth(expected).values() if c["status"] in ("exact", "approx")]
    assert len(rows) == len(want)
    sizes = {(name, rel): (w, h) for name, rel, w, h in query(
        db, "SELECT p.name, i.rel_path, i.width, i.height FROM images i JOIN projects p ON p.id = i.project_id "
            "WHERE i.role = 'sandbox'")}
    by_file = {}
    for name, p in expected.projects.items():
        for c in p.crops:
            if c["status"] in ("exact", "approx"):
                by_file.setdefault((name, c["original"].rsplit("/", 1)[-1]), []).append(c)
    for row in rows:
        candidates = by_file[(row["project_id"], row["filename"])]
        c = candidates[0]
        w, h = int(row["width"]), int(row["height"])
        assert (w, h) == sizes[(row["project_id"], c["original"])]
        box = [round(float(row["crop_x1"]) * w), round(float(row["crop_y1"]) * h),
               round(float(row["crop_x2"]) * w), round(float(row["crop_y2"]) * h)]
        tolerance = 0 if c["status"] == "exact" else 1
        assert max(abs(a - b) for a, b in zip(box, c["box"])) <= tolerance, (row, c)
        assert all(0.0 <= float(row[k]) <= 1.0 for k in ("crop_x1", "crop_y1", "crop_x2", "crop_y2"))
        stem = row["filename"]
        assert row["timestamp"] == f"{stem[:4]}-{stem[4:6]}-{stem[6:8]}T{stem[9:11]}:{stem[11:13]}:{stem[13:15]}Z"
    assert "aiko: 7 rows; left out 4 review, none or failed" in result.stdout
    assert f"wrote {len(want)} rows to {out}" in result.stdout


def test_export_crops_options(cropped_master, tmp_path):
    _, db, expected = cropped_master
    run = Run(db)
    out = tmp_path / "all.jsonl"
    assert run("export-crops", out, "--include-review").exit_code == 0
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert len(rows) == len(truth(expected))
    assert sorted(r["status"] for r in rows) == sorted(c["status"] for c in truth(expected).values())
    assert all(isinstance(r["width"], int) for r in rows)
    assert {r["crop_x1"] is None for r in rows if r["status"] in ("none", "failed")} == {True}
    result = run("export-crops", out)
    assert result.exit_code == 2 and "--force" in result.stderr
    result = run("export-crops", "-", "--project", "mojo-1")
    assert result.exit_code == 0, result.output
    rows = read_csv(result.stdout)
    assert {r["project_id"] for r in rows} == {"mojo-1"} and len(rows) == 4
    assert "wrote 4 rows to -" in result.stderr
    result = run("export-crops", tmp_path / "x.csv", "--project", "mojo")
    assert result.exit_code == 2 and "did you mean 'mojo-1'" in result.stderr
    result = run("export-crops", tmp_path / "x.csv", "--format", "jsonl")
    assert result.exit_code == 2


def test_export_crops_is_atomic(cropped_master, tmp_path):
    """A failing write leaves OUT as it was: the rows go to a temporary file first."""
    _, db, _ = cropped_master
    out = tmp_path / "crops.csv"
    out.write_text("previous\n")
    env = {**os.environ, "CATALOG_CRASH_AT": "export_written"}
    code = "from catalog.cli import app; app(prog_name='catalog')"
    proc = subprocess.run([sys.executable, "-c", code, "--db", str(db), "export-crops", str(out), "--force"],
                          cwd=REPO, capture_output=True, text=True, env=env, timeout=120)
    assert proc.returncode != 0 and "crash point export_written reached" in proc.stderr
    assert out.read_text() == "previous\n"


def test_blank_crops_of_big_samples_are_review(tmp_path):
    """Past REAL_CROPS a sample's crops are blank: their box cannot be told."""
    from catalog.cropfind import find_exact

    final = Picture.from_pil(Image.open(io.BytesIO(png_bytes(748, 1094))))
    original = Picture.from_pil(Image.open(io.BytesIO(png_bytes(832, 1216))))
    found = find_exact(final, original)
    assert found is not None and found.status == "review"


# ---------------------------------------------------------------- PostgreSQL

pytest_plugins = ["conftest_pg"]


def test_postgres_stores_and_exports_the_same_boxes(pg_db, cropped_master):
    """The same run on a PostgreSQL catalogue, with worker processes: the
    same rows in `crops`, the same stats and the same exported bytes."""
    root, sqlite_db, _ = cropped_master
    sqlite, postgres = Run(sqlite_db), Run(pg_db.owner)  # type: ignore[arg-type]
    assert postgres("index", root, "--quiet").exit_code == 0
    result = postgres("crops", "--jobs", "2")
    assert result.exit_code == 0, result.output
    assert "looked at 18 pairs" in result.stdout
    columns = "project, final_path, sandbox_path, x1, y1, x2, y2, width, height, status, score"
    for run in (sqlite, postgres):
        assert run("sql", f"SELECT {columns} FROM crops ORDER BY 1, 2", "-f", "csv").exit_code == 0
    assert sqlite("sql", f"SELECT {columns} FROM crops ORDER BY 1, 2", "-f", "csv").stdout == \
        postgres("sql", f"SELECT {columns} FROM crops ORDER BY 1, 2", "-f", "csv").stdout
    for args in (("export-crops", "-"), ("export-crops", "-", "--include-review", "-f", "jsonl")):
        assert sqlite(*args).stdout == postgres(*args).stdout
    crop_columns = [f"crops_{s}" for s in ("exact", "approx", "review", "none", "failed")]
    counts = [{k: r[k] for k in ["project", *crop_columns]} for r in json.loads(postgres("stats", "-f", "json").stdout)]
    assert counts == [{k: r[k] for k in ["project", *crop_columns]}
                      for r in json.loads(sqlite("stats", "-f", "json").stdout)]
    assert postgres("crops").stdout.endswith("looked at 0 pairs, 18 unchanged\n")
