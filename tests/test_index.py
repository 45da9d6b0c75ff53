"""`catalog index` on the sample: every image recorded, the selector's groups,
winners matched, and incremental, idempotent syncs."""

import json
import os
import shutil

import pytest
from conftest import query
from proc import exists

from catalog.names import parse_name

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL


def groups_in(db, project):
    rows = query(db, """
        SELECT g.id, i.rel_path FROM image_groups g
        JOIN projects p ON p.id = g.project_id
        JOIN group_members gm ON gm.group_id = g.id
        JOIN images i ON i.id = gm.image_id
        WHERE p.name = ? ORDER BY g.id, gm.position""", project)
    out = {}
    for gid, path in rows:
        out.setdefault(gid, []).append(path)
    return sorted(out.values())


def test_every_image_recorded_with_its_name_fields(indexed):
    root, db, expected = indexed
    for name, exp in expected.projects.items():
        rows = query(db, """SELECT i.role, i.rel_path, i.filename, i.timestamp, i.stage FROM images i
                            JOIN projects p ON p.id = i.project_id WHERE p.name = ?""", name)
        by_role = {"sandbox": 0, "final": 0}
        for role, rel_path, filename, ts, stage in rows:
            by_role[role] += 1
            base = root / "sandbox" / name if role == "sandbox" else root / name
            assert (base / rel_path).is_file()
            parsed = parse_name(filename)
            assert stage == parsed.stage
            assert ts == (parsed.timestamp.strftime("%Y-%m-%d %H:%M:%S.000000") if parsed.timestamp else None)
        assert by_role == {"sandbox": exp.sandbox_images, "final": exp.final_images}


def test_no_companions_or_junk_recorded(indexed):
    _, db, _ = indexed
    bad = query(db, """SELECT rel_path FROM images WHERE lower(rel_path) NOT LIKE '%.png'
                       AND lower(rel_path) NOT LIKE '%.jpg'""")
    assert bad == []


def test_groups_are_the_selectors(indexed):
    _, db, expected = indexed
    for name, exp in expected.projects.items():
        assert groups_in(db, name) == sorted(exp.groups), name


def test_pixel_sizes_and_unreadable_headers(indexed):
    _, db, expected = indexed
    unreadable = query(db, "SELECT count(*) FROM images WHERE width IS NULL")[0][0]
    assert unreadable == sum(p.unreadable_headers for p in expected.projects.values())
    sizes = set(query(db, "SELECT stage, width, height FROM images WHERE role='sandbox' AND stage IS NOT NULL "
                          "AND timestamp IS NOT NULL"))
    assert sizes == {(1.0, 832, 1216), (1.5, 832, 1216), (2.0, 1664, 2432), (3.0, 1664, 2432)}


def test_winners_matched_by_filename_and_key(indexed):
    _, db, expected = indexed
    key = query(db, "SELECT count(*) FROM matches WHERE match = 'key'")[0][0]
    assert key == sum(p.key_matches for p in expected.projects.values())
    cropped = query(db, "SELECT count(*) FROM matches WHERE cropped = 1")[0][0]
    assert cropped == sum(p.cropped for p in expected.projects.values())


def snapshot(db):
    tables = ["projects", "images", "image_groups", "group_members", "matches"]
    out = {t: query(db, f"SELECT * FROM {t} ORDER BY 1") for t in tables}
    for row in out["projects"]:
        assert row[4] is not None  # indexed_at
    out["projects"] = [r[:4] for r in out["projects"]]
    return out


def test_reindex_unchanged_changes_nothing(sample, run):
    root, _ = sample
    assert run("index", root).exit_code == 0
    before = snapshot(run.db)
    result = run("index", root, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert all(s["added"] == s["changed"] == s["removed"] == 0 for s in summary)
    assert snapshot(run.db) == before
    assert query(run.db, "SELECT count(*) FROM scans")[0][0] == 2 * len(summary)


def test_incremental_add_change_remove(sample, run):
    root, expected = sample
    assert run("index", root).exit_code == 0
    ids_before = dict(query(run.db, "SELECT rel_path, id FROM images WHERE role='sandbox'"))
    aiko = root / "sandbox" / "aiko"
    group = expected.projects["aiko"].groups[0]
    # remove a whole group's top stage, touch one image, add a new image
    (aiko / group[-1]).unlink()
    changed = aiko / expected.projects["aiko"].groups[1][0]
    changed.write_bytes(changed.read_bytes() + b"\x00")
    shutil.copy(aiko / group[0], aiko / "20300101_000000_stage1_generated.png")
    result = run("index", root, "--json")
    assert result.exit_code == 0, result.output
    aiko_summary = next(s for s in json.loads(result.stdout) if s["project"] == "aiko")
    assert (aiko_summary["added"], aiko_summary["changed"], aiko_summary["removed"]) == (1, 1, 1)
    ids_after = dict(query(run.db, "SELECT rel_path, id FROM images WHERE role='sandbox'"))
    assert group[-1] not in ids_after
    assert ids_after[group[0]] == ids_before[group[0]]  # unchanged rows keep their id
    # the group lost its top stage: it is recomputed from what is left
    remaining = groups_in(run.db, "aiko")
    assert group not in remaining
    if len(group) > 2:
        assert group[:-1] in remaining
    size = query(run.db, "SELECT size_bytes FROM images WHERE rel_path = ?", group_path := expected.projects["aiko"].groups[1][0])
    assert size[0][0] == os.path.getsize(aiko / group_path)


def test_set_ids_stable_across_reindex(sample, run):
    root, expected = sample
    assert run("index", root).exit_code == 0
    before = dict(query(run.db, "SELECT set_id, dir FROM image_groups"))
    # a change elsewhere in the project recomputes groups; untouched groups keep their set id
    (root / "sandbox" / "aiko" / "IMG_0001.png").unlink()
    assert run("index", root).exit_code == 0
    assert dict(query(run.db, "SELECT set_id, dir FROM image_groups")) == before


def test_missing_sandbox_is_refused_and_never_emptied(sample, run, tmp_path):
    root, expected = sample
    assert run("index", root).exit_code == 0
    before = snapshot(run.db)
    sandbox = root / "sandbox" / "aiko"
    result = run("index", "--project", "aiko", "--sandbox", sandbox, "--final", root / "aiko")
    assert result.exit_code == 0, result.output
    moved = tmp_path / "elsewhere"
    shutil.move(str(sandbox), moved)
    result = run("index", "--project", "aiko", "--sandbox", sandbox, "--final", root / "aiko")
    assert result.exit_code == 2
    assert "does not exist" in result.stderr and "Traceback" not in result.output
    assert snapshot(run.db)["images"] == before["images"]


def test_missing_final_folder_warns_and_keeps_no_winners(sample, run):
    root, expected = sample
    shutil.rmtree(root / "mojo-1")
    result = run("index", root)
    assert result.exit_code == 0
    assert "final folder" in result.stderr and "mojo-1" in result.stderr
    assert query(run.db, "SELECT count(*) FROM winners WHERE project='mojo-1'")[0][0] == 0
    assert query(run.db, "SELECT count(*) FROM groups WHERE project='mojo-1'")[0][0] == len(expected.projects["mojo-1"].groups)


def test_dry_run_writes_nothing(sample, run):
    root, _ = sample
    result = run("index", root, "--dry-run")
    assert result.exit_code == 0, result.output
    assert "would add" in result.stdout
    assert not exists(run.db)
    assert run("index", root).exit_code == 0
    before = snapshot(run.db)
    (root / "sandbox" / "aiko" / "IMG_0001.png").unlink()
    result = run("index", root, "--dry-run")
    assert "aiko: would add 0, change 0, remove 1" in result.stdout
    assert snapshot(run.db) == before


def test_picking_and_unpicking_an_image_updates_its_group(sample, run):
    root, expected = sample
    assert run("index", root).exit_code == 0
    (gid, set_id), = query(run.db, "SELECT group_id, set_id FROM skipped_groups WHERE project = 'aiko' "
                                   "ORDER BY set_id LIMIT 1")
    (top,), = query(run.db, "SELECT i.rel_path FROM group_members gm JOIN images i ON i.id = gm.image_id "
                            "WHERE gm.group_id = ? ORDER BY gm.position DESC LIMIT 1", gid)
    pick = root / "aiko" / top
    shutil.copy(root / "sandbox" / "aiko" / top, pick)
    assert run("index", root).exit_code == 0
    assert query(run.db, "SELECT group_id, chosen_path, is_anomaly FROM decisions WHERE set_id = ?", set_id) == \
        [(gid, top, 0)]
    pick.unlink()
    assert run("index", root).exit_code == 0
    assert query(run.db, "SELECT count(*) FROM skipped_groups WHERE set_id = ?", set_id) == [(1,)]
    assert query(run.db, "SELECT count(*) FROM decisions WHERE set_id = ?", set_id) == [(0,)]


def test_dry_run_lists_paths_and_reports_only_what_it_computes(sample, run):
    root, expected = sample
    assert run("index", root).exit_code == 0
    before = snapshot(run.db)
    aiko = root / "sandbox" / "aiko"
    group = expected.projects["aiko"].groups[0]
    shutil.copy(aiko / group[0], aiko / "20300101_000000_stage1_generated.png")
    (aiko / group[-1]).unlink()
    changed = aiko / group[0]
    changed.write_bytes(changed.read_bytes() + b"\x00")
    result = run("index", root, "--dry-run", "--list")
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert f"  - sandbox/{group[-1]}" in lines
    assert f"  ~ sandbox/{group[0]}" in lines
    assert "  + sandbox/20300101_000000_stage1_generated.png" in lines
    assert sum(1 for line in lines if line.startswith("  ")) == 3
    summaries = json.loads(run("index", root, "--dry-run", "--json", "--list").stdout)
    aiko_summary = next(s for s in summaries if s["project"] == "aiko")
    assert aiko_summary["paths"]["sandbox"] == {"added": ["20300101_000000_stage1_generated.png"],
                                                 "changed": [group[0]], "removed": [group[-1]]}
    for key in ("groups", "decisions", "anomalies", "orphans"):
        assert key not in aiko_summary  # a dry run does not derive them: no zeros posing as facts
    assert aiko_summary["groups_removed"] >= 1  # the group that lost its top stage is replaced
    assert snapshot(run.db) == before
    assert run("index", root, "--list").exit_code == 2


def test_progress_names_each_phase_with_its_total(sample, backend):
    """The library reports phase, done and total; the CLI shows them as a bar."""
    from catalog.database import open_catalog
    from catalog.index import index_project
    from catalog.projects import find_projects

    root, expected = sample
    engine = open_catalog(str(backend.new("p")), write=True)
    aiko = next(p for p in find_projects(root) if p.name == "aiko")
    seen: list[tuple] = []
    index_project(engine, aiko, progress=lambda phase, done, total: seen.append((phase, done, total)))
    phases = list(dict.fromkeys(phase for phase, _, _ in seen))
    assert phases == ["scanning sandbox", "reading sandbox names and headers", "scanning final",
                      "reading final names and headers", "matching winners", "grouping",
                      "writing sandbox images", "writing final images", "writing groups and matches"]
    exp = expected.projects["aiko"]
    last = {phase: (done, total) for phase, done, total in seen}
    assert last["reading sandbox names and headers"] == (exp.sandbox_images, exp.sandbox_images)
    assert last["writing final images"] == (exp.final_images, exp.final_images)
    assert last["scanning sandbox"] == (exp.sandbox_images, None)
    engine.dispose()


def test_a_terminal_sees_the_progress_bar(sample, backend):
    """On a real (pseudo-)terminal `catalog index` draws project i/n and the phase."""
    import pty
    import subprocess

    from proc import CATALOG

    root, _ = sample
    primary, secondary = pty.openpty()
    proc = subprocess.Popen([*CATALOG, "--db", str(backend.new("t")), "index", str(root)],
                            stdin=secondary, stdout=secondary, stderr=secondary, close_fds=True,
                            env={**os.environ, "TERM": "xterm", "COLUMNS": "120"})
    os.close(secondary)
    chunks = []
    while True:
        try:
            data = os.read(primary, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        chunks.append(data)
    os.close(primary)
    assert proc.wait() == 0
    screen = b"".join(chunks).decode("utf-8", "replace")
    assert "mojo-1 (2/3)" in screen
    for phase in ("scanning sandbox", "reading sandbox names and headers", "grouping", "writing groups and matches"):
        assert f"mojo-1 (2/3): {phase}" in screen, phase
    assert "3 projects indexed" in screen


def test_changing_a_file_keeps_every_group_row(sample, run):
    """A file whose content changed (same name) leaves membership alone: every
    group is recognised as stored, none is deleted and re-inserted."""
    root, expected = sample
    assert run("index", root).exit_code == 0
    before = query(run.db, "SELECT id, set_id, size, stages FROM image_groups ORDER BY id")
    path = root / "sandbox" / "aiko" / expected.projects["aiko"].groups[3][1]
    path.write_bytes(path.read_bytes() + b"\x00")
    summary = json.loads(run("index", root, "--json").stdout)
    aiko = next(s for s in summary if s["project"] == "aiko")
    assert (aiko["changed"], aiko["groups_added"], aiko["groups_removed"]) == (1, 0, 0)
    assert query(run.db, "SELECT id, set_id, size, stages FROM image_groups ORDER BY id") == before
