"""Projects over time: renamed or vanished projects are reported, flagged and
left out of exports; `catalog forget` removes one; a project indexed from new
folders says it moved; one failing project does not stop the others; and the
index summary is the same count as `catalog stats`."""

from __future__ import annotations

import csv
import json
import os
import shutil

import pytest
from conftest import is_postgres, query, unreadable_folder
from proc import dangling

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

TABLES = ("images", "image_groups", "scans")


def rows_of(db, project):
    """How many rows each table holds for `project`."""
    out = {t: query(db, f"SELECT count(*) FROM {t} t JOIN projects p ON p.id = t.project_id WHERE p.name = ?",
                    project)[0][0] for t in TABLES}
    out["group_members"] = query(db, """SELECT count(*) FROM group_members gm JOIN images i ON i.id = gm.image_id
                                        JOIN projects p ON p.id = i.project_id WHERE p.name = ?""", project)[0][0]
    out["matches"] = query(db, """SELECT count(*) FROM matches m JOIN images i ON i.id = m.final_image_id
                                  JOIN projects p ON p.id = i.project_id WHERE p.name = ?""", project)[0][0]
    return out


def export_projects(run, out, *extra):
    result = run("export", out, "--force", *extra)
    assert result.exit_code == 0, result.output
    with open(out, newline="", encoding="utf-8") as f:
        return {row["project"] for row in csv.DictReader(f)}, result


def rename_project(root, old, new):
    os.rename(root / "sandbox" / old, root / "sandbox" / new)
    os.rename(root / old, root / new)


def test_renamed_project_is_reported_flagged_and_left_out_of_exports(sample, run, tmp_path):
    root, expected = sample
    assert run("index", root).exit_code == 0
    rename_project(root, "mojo-1", "mojo-1-renamed")
    result = run("index", root)
    assert result.exit_code == 0, result.output
    assert "mojo-1: sandbox folder" in result.stderr and "is gone" in result.stderr

    problems = json.loads(run("check", "-f", "json").stdout)
    flagged = {(p["project"], p["problem"]) for p in problems if p["problem"].endswith("_missing")}
    assert flagged == {("mojo-1", "sandbox_missing"), ("mojo-1", "final_missing")}

    exported, result = export_projects(run, tmp_path / "out.csv")
    assert exported == {"aiko", "tattersail", "mojo-1-renamed"}
    assert "left out mojo-1" in result.stderr
    exported, _ = export_projects(run, tmp_path / "out.csv", "--include-missing")
    assert exported == {"aiko", "tattersail", "mojo-1-renamed", "mojo-1"}

    # The renamed project holds what the old one held.
    assert rows_of(run.db, "mojo-1-renamed")["images"] == rows_of(run.db, "mojo-1")["images"]


def test_forget_removes_a_project_and_everything_derived_from_it(sample, run):
    root, _ = sample
    assert run("index", root).exit_code == 0
    before = {name: rows_of(run.db, name) for name in ("aiko", "tattersail")}
    assert all(n > 0 for n in rows_of(run.db, "mojo-1").values())

    result = run("forget", "mojo-1", "--dry-run")
    assert result.exit_code == 0 and "would forget mojo-1" in result.stdout
    assert rows_of(run.db, "mojo-1")["images"] > 0

    result = run("forget", "mojo-1")
    assert result.exit_code == 0, result.output
    assert query(run.db, "SELECT count(*) FROM projects WHERE name = 'mojo-1'") == [(0,)]
    # nothing left behind anywhere, and the other projects untouched
    for table in ("images", "image_groups", "group_members", "matches", "scans"):
        n = query(run.db, f"SELECT count(*) FROM {table}")[0][0]
        assert n == sum(b[table] for b in before.values()), table
    assert {name: rows_of(run.db, name) for name in before} == before
    assert dangling(run.db) == []
    if not is_postgres(run.db):  # PostgreSQL checks every foreign key as it writes
        assert query(run.db, "PRAGMA foreign_key_check") == []
    # the folders are untouched: indexing brings the project back whole
    assert (root / "sandbox" / "mojo-1").is_dir()


def test_forget_refuses_an_unknown_name_with_a_suggestion(indexed, run):
    _, db, _ = indexed
    run.db = db
    result = run("forget", "Aiko")
    assert result.exit_code == 2
    assert "did you mean 'aiko'" in result.stderr and "Traceback" not in result.output
    assert query(db, "SELECT count(*) FROM projects WHERE name = 'aiko'") == [(1,)]


def test_index_without_path_resyncs_every_catalogued_project(sample, run):
    root, _ = sample
    assert run("index", root).exit_code == 0
    (root / "sandbox" / "aiko" / "IMG_0001.png").unlink()
    shutil.rmtree(root / "sandbox" / "tattersail")
    result = run("index", "--json")
    assert result.exit_code == 0, result.output
    summaries = {s["project"]: s for s in json.loads(result.stdout)}
    assert set(summaries) == {"aiko", "mojo-1"}
    assert summaries["aiko"]["removed"] == 1
    assert "tattersail: sandbox folder" in result.stderr and "missing" in result.stderr
    # a project that is not there is never emptied
    assert rows_of(run.db, "tattersail")["images"] > 0


def test_indexing_a_copy_says_the_project_moved(sample, run, tmp_path):
    root, _ = sample
    assert run("index", root).exit_code == 0
    copy = tmp_path / "backup"
    shutil.copytree(root, copy)
    result = run("index", copy)
    assert result.exit_code == 0, result.output
    old, new = root / "sandbox" / "aiko", copy.resolve() / "sandbox" / "aiko"
    assert f"aiko: moved from {old.resolve()} to {new}" in result.stdout
    assert "still exists" in result.stdout
    assert query(run.db, "SELECT sandbox_dir FROM projects WHERE name = 'aiko'") == [(str(new),)]


def test_one_failing_project_does_not_stop_the_others(sample, run):
    root, expected = sample
    unreadable_folder(root / "sandbox" / "aiko")
    result = run("index", root)
    assert result.exit_code == 1
    assert "Traceback" not in result.output
    errors = [line for line in result.stderr.splitlines() if line.startswith("catalog: error:")]
    assert len(errors) == 1 and errors[0].startswith("catalog: error: aiko: cannot read folder")
    assert result.stdout.strip().splitlines()[-1] == "2 projects indexed, 1 failed"
    indexed = {name for (name,) in query(run.db, "SELECT name FROM projects WHERE indexed_at IS NOT NULL")}
    assert indexed == {"mojo-1", "tattersail"}
    assert rows_of(run.db, "aiko")["images"] == 0  # nothing half-written
    for name in ("mojo-1", "tattersail"):
        assert rows_of(run.db, name)["images"] == expected.projects[name].sandbox_images + \
            expected.projects[name].final_images


def test_summary_counts_are_the_stats_counts(sample, run):
    """The summary and `catalog stats` read the same derived rows, also after
    changes that used to leave stale groups behind."""
    root, expected = sample
    assert run("index", root).exit_code == 0
    aiko = root / "sandbox" / "aiko"
    for group in expected.projects["aiko"].groups[:3]:
        (aiko / group[-1]).unlink()  # each group loses its top stage
    for path in expected.projects["tattersail"].groups[0]:
        (root / "sandbox" / "tattersail" / path).unlink()  # a whole group goes
    result = run("index", root, "--json")
    assert result.exit_code == 0, result.output
    summary = {s["project"]: s for s in json.loads(result.stdout)}
    stats = {r["project"]: r for r in json.loads(run("stats", "-f", "json").stdout)}
    for name, s in summary.items():
        for key in ("groups", "decisions", "anomalies", "orphans", "skipped", "kept_twice"):
            assert s[key] == stats[name][key], (name, key)
    text = run("index", root).stdout
    for name in summary:
        st = stats[name]
        assert f"{name}: 0 added" in text
        assert f"{st['groups']} groups, {st['decisions']} decisions, {st['anomalies']} anomalies, " \
               f"{st['orphans']} orphans" in text
