"""Review marks: a review-marks.json into the catalogue, listed and cleared;
exports leave marked decisions out, and a mark whose group changed marks
nothing. (The browser half, marking cards and downloading the file, is in
test_review.py.)"""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
from conftest import Run, query

from catalog.database import open_catalog
from catalog.export import decisions, marked_decisions

pytest_plugins = ["conftest_pg"]


def marks_file(path: Path, marks: list[dict], **top) -> Path:
    path.write_text(json.dumps({"format": "catalog-review-marks", "version": 1, "marks": marks, **top}))
    return path


def pick(db: Path) -> tuple[tuple[str, str], tuple[str, str]]:
    """An anomaly of aiko and an ordinary decision of tattersail."""
    anomaly = query(db, "SELECT project, set_id FROM decisions WHERE project = 'aiko' AND is_anomaly = 1 "
                        "ORDER BY set_id LIMIT 1")[0]
    ordinary = query(db, "SELECT project, set_id FROM decisions WHERE project = 'tattersail' AND is_anomaly = 0 "
                         "ORDER BY set_id LIMIT 1")[0]
    return anomaly, ordinary


def listed(run) -> list[dict]:
    result = run("marks", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout)


def test_import_list_and_clear(indexed, run, tmp_path):
    _, run.db, _ = indexed
    (a_project, a_set), (o_project, o_set) = pick(run.db)
    path = marks_file(tmp_path / "review-marks.json", [
        {"project": a_project, "set_id": a_set, "mark": "wrong", "note": "belly button", "marked_at":
         "2025-08-01T09:12:44.120Z", "marked_by": "eleni"},
        {"project": o_project, "set_id": o_set},
        {"project": "aiko", "set_id": "group_19990101_000000"},
        {"project": "nosuch", "set_id": a_set},
    ])
    result = run("marks", "import", path, "--by", "kiara")
    assert result.exit_code == 0, result.output
    assert "2 new, 0 updated, 0 unchanged, 2 skipped" in result.stdout
    assert "aiko group_19990101_000000: no such group" in result.stderr and "nosuch " in result.stderr
    rows = {(m["project"], m["set_id"]): m for m in listed(run)}
    assert set(rows) == {(a_project, a_set), (o_project, o_set)}
    assert rows[(a_project, a_set)]["status"] == "anomaly" and rows[(o_project, o_set)]["status"] == "decision"
    assert rows[(a_project, a_set)]["marked_by"] == "eleni" and rows[(o_project, o_set)]["marked_by"] == "kiara"
    assert rows[(a_project, a_set)]["marked_at"] == "2025-08-01T09:12:44Z"
    assert rows[(a_project, a_set)]["note"] == "belly button"

    again = run("marks", "import", path, "--by", "kiara")
    assert "0 new, 0 updated, 2 unchanged" in again.stdout
    marks_file(path, [{"project": a_project, "set_id": a_set, "note": "a weird face", "marked_by": "eleni",
                       "marked_at": "2025-08-01T09:12:44Z"}])
    assert "0 new, 1 updated, 0 unchanged" in run("marks", "import", path).stdout
    assert {m["note"] for m in listed(run)} == {"a weird face", None}

    nothing = run("marks", "clear")
    assert nothing.exit_code == 2 and "say which marks to clear" in nothing.stderr
    assert run("marks", "clear", "--all", "-p", "aiko").exit_code == 2
    assert run("marks", "clear", a_set, "-p", "nosuch").exit_code == 2  # a typo is an error, not an empty answer
    result = run("marks", "clear", a_set, "group_19990101_000000", "-p", a_project)
    assert result.exit_code == 0, result.output
    assert "cleared 1 mark" in result.stdout and "group_19990101_000000: no mark to clear" in result.stderr
    assert [(m["project"], m["set_id"]) for m in listed(run)] == [(o_project, o_set)]
    assert "cleared 1 mark" in run("marks", "clear", "--all").stdout
    assert listed(run) == []


@pytest.mark.parametrize("content, message", [
    ("{not json", "is not a readable marks file"),
    ('{"marks": []}', "not a review-marks.json written by the review page"),
    ('{"format": "catalog-review-marks", "version": 2, "marks": []}', "version 2"),
    ('{"format": "catalog-review-marks", "version": 1, "marks": {}}', '"marks" must be a list'),
    ('{"format": "catalog-review-marks", "version": 1, "marks": [{"project": "aiko"}]}', "mark 1: set_id is missing"),
    ('{"format": "catalog-review-marks", "version": 1, "marks": [{"project": "aiko", "set_id": 7}]}',
     "set_id must be text"),
    ('{"format": "catalog-review-marks", "version": 1, "marks": [{"project": "aiko", "set_id": "g", "mark": "good"}]}',
     "unknown mark 'good'"),
    ('{"format": "catalog-review-marks", "version": 1, "marks": [{"project": "aiko", "set_id": "g", '
     '"marked_at": "yesterday"}]}', "not an ISO 8601 time"),
])
def test_a_file_that_is_not_a_marks_file_is_refused_and_nothing_is_stored(indexed, run, tmp_path, content, message):
    _, run.db, _ = indexed
    path = tmp_path / "review-marks.json"
    path.write_text(content)
    result = run("marks", "import", path)
    assert result.exit_code == 2, result.output
    assert message in result.stderr and len(result.stderr.splitlines()) == 1
    assert query(run.db, "SELECT count(*) FROM review_marks") == [(0,)]


def test_missing_file_folder_or_catalogue(indexed, run, tmp_path):
    _, db, _ = indexed
    run.db = db
    assert "does not exist" in run("marks", "import", tmp_path / "nope.json").stderr
    assert "is a folder" in run("marks", "import", tmp_path).stderr
    run.db = tmp_path / "typo.db"
    path = marks_file(tmp_path / "m.json", [{"project": "aiko", "set_id": "group_20250725_233954"}])
    for args in (("import", path), ("clear", "--all"), ("list",)):
        result = run("marks", *args)
        assert result.exit_code == 2 and "no catalogue at" in result.stderr
    assert not run.db.exists()


def test_decisions_leave_out_exactly_the_marked_ones(indexed, run, tmp_path):
    _, run.db, _ = indexed
    (a_project, a_set), (o_project, o_set) = pick(run.db)
    path = marks_file(tmp_path / "m.json", [{"project": a_project, "set_id": a_set},
                                            {"project": o_project, "set_id": o_set}])
    assert run("marks", "import", path).exit_code == 0
    engine = open_catalog(str(run.db), write=False)
    with engine.connect() as conn:
        every = {(d.project, d.set_id) for d in decisions(conn)}
        kept = {(d.project, d.set_id) for d in decisions(conn, leave_out_marked=True)}
        assert every - kept == {(a_project, a_set), (o_project, o_set)}
        assert marked_decisions(conn) == {a_project: 1, o_project: 1}
        assert marked_decisions(conn, anomalies_only=True) == {a_project: 1}
        assert marked_decisions(conn, projects=["tattersail"]) == {"tattersail": 1}
        assert marked_decisions(conn, leave_out=["aiko"]) == {"tattersail": 1}
        anomalies = {(d.project, d.set_id) for d in decisions(conn, anomalies_only=True, leave_out_marked=True)}
        assert (a_project, a_set) not in anomalies and len(anomalies) == len(every & {
            (p, s) for p, s in query(run.db, "SELECT project, set_id FROM anomalies")}) - 1
    engine.dispose()


def test_a_mark_whose_group_changed_marks_nothing(sample, run):
    """A group that loses its first image is another group, named by its new
    first image: the mark says `gone` and the new group is exported."""
    root, expected = sample
    assert run("index", root).exit_code == 0
    for set_id, group_id in query(run.db, "SELECT set_id, group_id FROM decisions WHERE project = 'aiko' "
                                          "AND is_anomaly = 0 ORDER BY set_id"):
        members = query(run.db, """SELECT i.timestamp, i.rel_path, i.id = d.chosen_image_id FROM decisions d
                                   JOIN group_members gm ON gm.group_id = d.group_id JOIN images i ON i.id = gm.image_id
                                   WHERE d.group_id = ? ORDER BY i.timestamp, i.stage""", group_id)
        if len(members) == 3 and members[0][0] < members[1][0] and not members[0][2]:
            # a loser, alone in its second: the group's name changes without it
            marked, first = set_id, members[0][1]
            break
    path = marks_file(root.parent / "m.json", [{"project": "aiko", "set_id": marked}])
    assert "1 new" in run("marks", "import", path).stdout
    (root / "sandbox" / "aiko" / first).unlink()
    assert run("index", root).exit_code == 0
    assert [m["status"] for m in listed(run)] == ["gone"]
    engine = open_catalog(str(run.db), write=False)
    with engine.connect() as conn:
        assert marked_decisions(conn) == {}
    engine.dispose()


def test_forgetting_a_project_forgets_its_marks(indexed, run, tmp_path):
    _, run.db, _ = indexed
    (a_project, a_set), (o_project, o_set) = pick(run.db)
    path = marks_file(tmp_path / "m.json", [{"project": a_project, "set_id": a_set},
                                            {"project": o_project, "set_id": o_set}])
    assert run("marks", "import", path).exit_code == 0
    assert run("forget", a_project).exit_code == 0
    assert [m["project"] for m in listed(run)] == [o_project]


def test_review_and_marks_are_the_same_on_postgresql(pg_icu, sample, tmp_path):
    """The same workspace on SQLite and on PostgreSQL (with an en-US
    collation, which sorts text unlike code points): the same marks stored
    and listed, the same decisions left out, and the same review pages, byte
    for byte (apart from each site's own id)."""
    root, _ = sample
    # A third candidate for tattersail's ambiguous orphan, in a folder that
    # sorts first by code point and last in en-US.
    (root / "sandbox" / "tattersail" / "Zoo").mkdir()
    shutil.copy(root / "sandbox" / "tattersail" / "tara" / "reference.png", root / "sandbox" / "tattersail" / "Zoo")
    backends = {"sqlite": Run(tmp_path / "catalog.db"), "postgres": Run(pg_icu.owner)}  # type: ignore[arg-type]
    for run in backends.values():
        assert run("index", root, "--quiet").exit_code == 0
    (a_project, a_set), (o_project, o_set) = pick(backends["sqlite"].db)
    path = marks_file(tmp_path / "m.json", [{"project": a_project, "set_id": a_set, "note": "Zed"},
                                            {"project": o_project, "set_id": o_set, "note": "apple"},
                                            {"project": "aiko", "set_id": "group_19990101_000000"}])
    listings, left_out, pages = {}, {}, {}
    for name, run in backends.items():
        result = run("marks", "import", path, "--by", "eleni")
        assert "2 new, 0 updated, 0 unchanged, 1 skipped" in result.stdout, result.output
        listings[name] = [{k: v for k, v in m.items() if k != "imported_at"} for m in listed(run)]
        engine = open_catalog(str(run.db), write=False)
        with engine.connect() as conn:
            left_out[name] = ({(d.project, d.set_id) for d in decisions(conn)}
                              - {(d.project, d.set_id) for d in decisions(conn, leave_out_marked=True)},
                              marked_decisions(conn))
        engine.dispose()
        out = tmp_path / f"site-{name}"
        if name == "postgres":  # the same originals make the same tiles: none to make again
            (out / "thumbs").mkdir(parents=True)
            shutil.copytree(tmp_path / "site-sqlite" / "thumbs" / "tattersail", out / "thumbs" / "tattersail")
            (out / ".catalog-review").write_text((tmp_path / "site-sqlite" / ".catalog-review").read_text())
        result = run("review", out, "-p", "tattersail", "-j", "1")
        assert result.exit_code == 0, result.output
        assert name == "sqlite" or "thumbnails: 0 made" in result.stdout
        pages[name] = {p.relative_to(out): p.read_text(encoding="utf-8") for p in sorted(out.rglob("*.html"))}
        assert run("marks", "clear", "--all").exit_code == 0
        assert listed(run) == []
    assert listings["sqlite"] == listings["postgres"] and len(listings["sqlite"]) == 2
    assert left_out["sqlite"] == left_out["postgres"] == ({(a_project, a_set), (o_project, o_set)},
                                                         {a_project: 1, o_project: 1})
    assert pages["sqlite"].keys() == pages["postgres"].keys()
    for page, text in pages["sqlite"].items():
        assert text == pages["postgres"][page], f"{page} differs"
    page = pages["sqlite"][Path("tattersail/page-1.html")]
    candidates = re.search(r'data-orphan-reason="ambiguous".*?<p class="why">(.*?)</p>', page).group(1)
    assert re.findall(r'<span class="name">([^<]+)</span>', candidates) == [
        "Zoo/reference.png", "south-asian-late-30s/reference.png", "tara/reference.png"]
