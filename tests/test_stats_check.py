"""`catalog stats` and `catalog check` on the sample."""

import json

import pytest
from conftest import query

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL


def test_stats_per_project_and_total(indexed, run):
    _, run.db, expected = indexed
    result = run("stats", "--format", "json")
    assert result.exit_code == 0, result.output
    rows = {r["project"]: r for r in json.loads(result.stdout)}
    assert set(rows) == set(expected.projects) | {"TOTAL"}
    for name, p in expected.projects.items():
        r = rows[name]
        assert (r["sandbox_images"], r["final_images"], r["groups"], r["decisions"]) == \
            (p.sandbox_images, p.final_images, len(p.groups), len(p.decisions))
        assert (r["skipped"], r["kept_twice"], r["orphans"], r["anomalies"]) == \
            (p.skipped, p.kept_twice, sum(p.orphans.values()), p.anomalies)
        assert r["unparsed_names"] == p.unparsed_names
        assert r["anomaly_rate"] == round(p.anomalies / len(p.decisions), 4)
        assert r["last_indexed"]
    total = rows["TOTAL"]
    assert total["anomalies"] == expected.anomalies
    assert total["decisions"] == sum(len(p.decisions) for p in expected.projects.values())


def test_stats_one_project_csv(indexed, run):
    _, run.db, expected = indexed
    out = run("stats", "--project", "aiko", "-f", "csv").stdout.splitlines()
    assert out[0].startswith("project,sandbox_images,")
    assert [line.split(",")[0] for line in out[1:]] == ["aiko", "TOTAL"]


def test_check_lists_problems_and_strict_fails(indexed, run):
    _, run.db, expected = indexed
    result = run("check", "-f", "json")
    assert result.exit_code == 0, result.output
    problems = json.loads(result.stdout)
    kinds = {}
    for p in problems:
        kinds[p["problem"]] = kinds.get(p["problem"], 0) + 1
    assert kinds["orphan"] == sum(sum(p.orphans.values()) for p in expected.projects.values())
    assert kinds["kept_twice"] == sum(p.kept_twice for p in expected.projects.values())
    assert kinds["unparsed_name"] == sum(p.unparsed_names for p in expected.projects.values())
    assert kinds["unreadable_header"] == sum(p.unreadable_headers for p in expected.projects.values())
    table = run("check").stdout
    assert "cropped winners" in table
    assert run("check", "--strict").exit_code == 1


def test_check_strict_passes_on_a_clean_project(tmp_path, run):
    from test_layouts import tiny_project

    tiny_project(tmp_path / "sandbox" / "clean", tmp_path / "clean")
    assert run("index", tmp_path).exit_code == 0
    result = run("check", "--strict")
    assert result.exit_code == 0, result.output
    assert "0 problems listed" in result.stdout
    assert query(run.db, "SELECT count(*) FROM decisions") == [(1,)]
