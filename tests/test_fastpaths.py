"""Each fast path of indexing against its slow twin, on random inputs:

- names and headers read by worker processes (catalog/reading.py) against
  the same files read one by one in this process;
- the bulk writer's time conversion (catalog/bulk.py) against SQLAlchemy's;
- a whole index with workers and tiny chunks against one without workers;
- a whole run with the next projects planned ahead by workers
  (catalog/ahead.py) against one planned project by project, on random
  changes to every project.

The incremental derivation of a re-index (catalog/sync.py `derive`) is held
equal to a fresh index by tests/test_reindex_differential.py.
"""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
from datetime import datetime
from pathlib import Path
from typing import Optional

import pytest
from conftest import Run
from hypothesis import given, settings
from hypothesis import strategies as st
from sqlalchemy import DateTime
from sqlalchemy.dialects import sqlite as sqlite_dialect

from catalog import ahead, reading
from catalog.bulk import bind_converter
from catalog.scan import scan_images


def _files(root: Path) -> list[tuple[str, str]]:
    return [(e.abs_path, e.filename) for e in scan_images(str(root))]


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_workers_read_what_one_process_reads(sample, seed):
    root, _ = sample
    files = _files(root)
    random.Random(seed).shuffle(files)
    # Junk the workers must survive: missing files, odd names.
    files[5:5] = [(str(root / "gone.png"), "20250101_000000_stage2.png"), (str(root), "x.png")]
    chunk = random.Random(seed).randint(1, 40)
    with reading.Reader(workers=2, chunk=chunk) as reader:
        for path, name in files:
            reader.add(path, name)
        # Wait until a worker has read the first chunk, so that both paths
        # (read by a worker, taken back and read here) are taken.
        first = reader.parts[0]
        assert not isinstance(first, list)
        first.result(timeout=120)
        got = list(reader.results())
    assert reader.pool is None
    assert got == reading.read_fields(files)
    assert len(got) == len(files)


def test_reader_without_workers_is_the_plain_loop(sample):
    root, _ = sample
    files = _files(root)[:100]
    with reading.Reader(workers=0, chunk=7) as reader:
        for path, name in files:
            reader.add(path, name)
        assert reader.pool is None  # never started
        assert list(reader.results()) == reading.read_fields(files)


@settings(max_examples=300, deadline=None)
@given(st.datetimes(min_value=datetime(1, 1, 1), max_value=datetime(9999, 12, 31)))
def test_fast_time_binding_stores_what_sqlalchemy_stores(value):
    dialect = sqlite_dialect.dialect()
    slow = DateTime().dialect_impl(dialect).bind_processor(dialect)
    fast = bind_converter(dialect, DateTime())
    assert slow is not None and fast is not None
    assert fast(value) == slow(value)


def _dump(db: Path) -> dict[str, list]:
    con = sqlite3.connect(db)
    try:
        out = {}
        for table, cols in {
            "images": "project_id, role, rel_path, dir, filename, timestamp, stage, stage_label, width, height, "
                      "size_bytes, mtime_ns, id",
            "image_groups": "id, project_id, set_id, dir, size, stages, max_stage, first_timestamp, last_timestamp, "
                            "winner_count, chosen_image_id, chosen_stage",
            "group_members": "image_id, group_id, position",
            "matches": "final_image_id, sandbox_image_id, match, problem, cropped",
            "decisions": "*",
            "anomalies": "*",
            "orphans": "*",
        }.items():
            out[table] = sorted(con.execute(f"SELECT {cols} FROM {table}").fetchall(), key=repr)
        return out
    finally:
        con.close()


def test_index_with_workers_equals_index_without(sample, tmp_path, monkeypatch):
    root, _ = sample
    monkeypatch.setattr(reading, "default_workers", lambda: 0)
    plain = Run(tmp_path / "plain.db")
    assert plain("index", root, "-q").exit_code == 0

    monkeypatch.setattr(reading, "default_workers", lambda: 2)
    monkeypatch.setattr(reading, "CHUNK", 9)
    parallel = Run(tmp_path / "parallel.db")
    done = parallel("index", root, "-q")
    assert done.exit_code == 0, done.output
    assert _dump(tmp_path / "parallel.db") == _dump(tmp_path / "plain.db")

    # And again after changes, through the incremental path of both.
    victim = next(p for p in sorted((root / "sandbox").rglob("*.png")))
    shutil.copyfile(victim, victim.with_name("20300101_000000_stage1_added.png"))
    victim.unlink()
    for run in (plain, parallel):
        assert run("index", root, "-q").exit_code == 0
    assert _dump(tmp_path / "parallel.db") == _dump(tmp_path / "plain.db")


_names = st.lists(
    st.tuples(st.integers(0, 40), st.sampled_from([1.0, 1.5, 2.0, 3.0, None]), st.sampled_from(["", "a", "upscaled", "b_c"]),
              st.sampled_from([".png", ".jpg"])),
    max_size=60)


@settings(max_examples=200, deadline=None)
@given(_names, st.booleans())
def test_runs_on_names_equal_the_selectors_groups(specs, stored):
    """selector_runs_of sorts on the name's first 15 characters instead of
    the parsed time: the same runs as form_groups, for new and stored rows."""
    from datetime import timedelta

    from catalog.grouping import form_groups, selector_runs_of
    from catalog.images import ImageRow, StoredImage
    from catalog.names import format_name, parse_name

    rows: list[ImageRow] = []
    seen = set()
    for k, (minute, stage, label, ext) in enumerate(specs):
        name = format_name(datetime(2025, 7, 1) + timedelta(seconds=minute * 7), stage, label or None, ext)
        if name in seen:
            continue
        seen.add(name)
        timestamp, parsed_stage, _ = parse_name(name)
        rows.append(ImageRow(k, "", name, timestamp, parsed_stage, None, None))
    # The same runs; their order may differ (form_groups lists groups by first
    # image across the project, the selector in its own order), and regroup
    # compares them as sets.
    expected = sorted(tuple(i.id for i in g) for g in form_groups(rows))
    if stored:
        # As read back from SQLite: (id, size, mtime, dir, filename, time text, stage, w, h).
        as_stored: list[StoredImage] = [
            (r.id, 0, 0, r.dir, r.filename, r.timestamp.isoformat(" ", "microseconds") if r.timestamp else None,
             r.stage, None, None) for r in rows]
        assert sorted(selector_runs_of(as_stored)) == expected
    else:
        assert sorted(selector_runs_of(rows)) == expected


def _count_plans_made_ahead(monkeypatch) -> list[tuple[Optional[str], str]]:
    """(catalogue, project name) of the plans handed to a worker, as they are
    handed; catalogue None: planned on no rows, the run creates the catalogue."""
    handed: list[tuple[Optional[str], str]] = []
    real_run_pool = ahead.run_pool

    def counting_pool(**kwargs):
        pool = real_run_pool(**kwargs)
        if pool is not None and not hasattr(pool, "counted"):
            submit = pool.submit

            def counted_submit(fn, *args):
                if fn is ahead.plan_elsewhere:
                    handed.append((args[0], args[1].name))
                return submit(fn, *args)

            pool.submit = counted_submit  # type: ignore[method-assign]
            pool.counted = True  # type: ignore[attr-defined]
        return pool

    monkeypatch.setattr(ahead, "run_pool", counting_pool)
    return handed


@pytest.mark.parametrize("seed", [3, 17])
def test_plans_made_ahead_equal_plans_made_in_turn(sample, tmp_path, monkeypatch, seed):
    """The same runs (a first index, then re-indexes after random removals,
    additions, changes and renames in every project) give the same catalogue
    whether the next projects are planned by workers ahead of their turn or
    each in its turn by the main process."""
    root, _ = sample
    monkeypatch.setattr(reading, "default_workers", lambda: 0)
    in_turn = Run(tmp_path / "in_turn.db")
    monkeypatch.setattr(reading, "default_workers", lambda: 1)
    monkeypatch.setattr(ahead, "MIN_IMAGES", 0)
    handed = _count_plans_made_ahead(monkeypatch)
    planned_ahead = Run(tmp_path / "ahead.db")
    rng = random.Random(seed)
    for step in range(3):
        if step:
            pngs = sorted((root / "sandbox").rglob("*.png")) + sorted(root.glob("*/*.png"))
            for path in rng.sample(pngs, 12):
                what = rng.choice(["remove", "change", "rename", "copy"])
                if what == "remove":
                    path.unlink()
                elif what == "change":
                    with open(path, "ab") as f:
                        f.write(b"\0")
                elif what == "rename":
                    path.rename(path.with_name(
                        f"2030{rng.randrange(1, 13):02d}{rng.randrange(1, 29):02d}_{rng.randrange(24):02d}0000"
                        f"_stage{rng.choice(['1', '1.5', '2', '3'])}_moved.png"))
                else:
                    shutil.copyfile(path, path.with_name(f"2030{rng.randrange(1, 13):02d}01_000000_stage2_copy.png"))
        monkeypatch.setattr(reading, "default_workers", lambda: 0)
        plain = in_turn("index", root, "--json")
        monkeypatch.setattr(reading, "default_workers", lambda: 1)
        before = len(handed)
        parallel = planned_ahead("index", root, "--json")
        assert plain.exit_code == 0 and parallel.exit_code == 0, (plain.output, parallel.output)
        assert len(handed) > before, "no project was planned by a worker"
        # A first index creates the catalogue: the workers plan on no rows
        # from the start; later runs plan on the catalogue.
        assert all((target is None) == (step == 0) for target, _ in handed[before:]), handed[before:]
        assert _dump(tmp_path / "ahead.db") == _dump(tmp_path / "in_turn.db"), f"step {step}"
        # What each run reports is the same too (but for the time it took).
        summaries = [json.loads(r.stdout) for r in (plain, parallel)]
        for summary in summaries:
            for project in summary:
                del project["seconds"]
        assert summaries[0] == summaries[1]


def test_warnings_of_a_plan_made_ahead_are_reported(sample, tmp_path, monkeypatch):
    """A project planned by a worker reports its warnings like any other."""
    root, _ = sample
    # The second project is the first one handed to a worker (the main
    # process plans the first), whatever the timing.
    shutil.rmtree(root / "mojo-1")  # its final folder: a warning, not an error
    monkeypatch.setattr(reading, "default_workers", lambda: 1)
    monkeypatch.setattr(ahead, "MIN_IMAGES", 0)
    handed = _count_plans_made_ahead(monkeypatch)
    done = Run(tmp_path / "c.db")("index", root)
    assert done.exit_code == 0, done.output
    assert "mojo-1" in [name for _, name in handed]
    assert f"final folder {root / 'mojo-1'} not found" in done.output


def test_holds_images_counts_images_only(tmp_path):
    """The look that decides whether a new catalogue's workers start at once:
    images as the sync's walk finds them, not companions, not through a
    symlinked folder, and it stops counting once it has seen enough."""
    (tmp_path / "a" / "b").mkdir(parents=True)
    for name in ("a/20250101_000000_stage1.png", "a/b/20250101_000001_stage2.JPG", "x.webp"):
        (tmp_path / name).write_bytes(b"")
    for name in ("a/20250101_000000_stage1.yaml", "a/b/notes.txt", ".png"):
        (tmp_path / name).write_bytes(b"")
    outside = tmp_path.parent / f"{tmp_path.name}-linked"
    outside.mkdir()
    for k in range(5):
        (outside / f"{k}.png").write_bytes(b"")
    (tmp_path / "link").symlink_to(outside, target_is_directory=True)
    assert ahead._holds_images(str(tmp_path), 3)
    assert not ahead._holds_images(str(tmp_path), 4)
    assert not ahead._holds_images(str(tmp_path / "missing"), 1)
