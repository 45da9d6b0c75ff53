"""Each view on the sample, where every count is known by construction."""

import pytest
from conftest import query

pytestmark = pytest.mark.usefixtures("backend")  # SQLite and PostgreSQL

VIEWS = ["groups", "winners", "losers", "decisions", "anomalies", "skipped_groups", "orphans"]


def per_project(db, sql):
    return dict(query(db, sql))


@pytest.mark.parametrize("view", VIEWS)
def test_every_view_has_a_project_column(indexed, view):
    _, db, expected = indexed
    rows = query(db, f"SELECT project, count(*) FROM {view} GROUP BY project")
    assert {p for p, _ in rows} <= set(expected.projects)


def test_groups(indexed):
    _, db, expected = indexed
    got = per_project(db, "SELECT project, count(*) FROM groups GROUP BY project")
    assert got == {n: len(p.groups) for n, p in expected.projects.items()}
    sizes = sorted(r[0] for r in query(db, "SELECT size FROM groups"))
    assert sizes == sorted(len(g) for p in expected.projects.values() for g in p.groups)
    stages = {r[0] for r in query(db, "SELECT stages FROM groups")}
    assert stages <= {"1,2,3", "1,1.5,2", "1,1.5,2,3", "1,2", "2,3"}
    assert "1,1.5,2" in stages


def test_decisions_and_anomalies(indexed):
    _, db, expected = indexed
    decisions = per_project(db, "SELECT project, count(*) FROM decisions GROUP BY project")
    assert decisions == {n: len(p.decisions) for n, p in expected.projects.items()}
    anomalies = per_project(db, "SELECT project, count(*) FROM anomalies GROUP BY project")
    assert anomalies == {n: p.anomalies for n, p in expected.projects.items() if p.anomalies}
    assert query(db, "SELECT count(*) FROM decisions WHERE is_anomaly = 1") == \
        query(db, "SELECT count(*) FROM anomalies")
    for chosen, max_rejected, higher in query(db, "SELECT chosen_stage, max_rejected_stage, rejected_higher FROM anomalies"):
        assert chosen < max_rejected and higher >= 1


def test_winners_and_losers_partition_each_decided_group(indexed):
    _, db, expected = indexed
    truth = {(n, w): sorted(losers) for n, p in expected.projects.items() for w, losers, _ in p.decisions}
    got = {}
    for project, group_id, chosen in query(db, "SELECT project, group_id, chosen_path FROM decisions"):
        losers = query(db, "SELECT path FROM losers WHERE group_id = ?", group_id)
        got[(project, chosen)] = sorted(p for (p,) in losers)
    assert got == truth


def test_skipped_and_kept_twice(indexed):
    _, db, expected = indexed
    skipped = per_project(db, "SELECT project, count(*) FROM skipped_groups GROUP BY project")
    assert skipped == {n: p.skipped for n, p in expected.projects.items() if p.skipped}
    twice = per_project(db, "SELECT project, count(*) FROM groups WHERE winner_count > 1 GROUP BY project")
    assert twice == {n: p.kept_twice for n, p in expected.projects.items() if p.kept_twice}
    # kept-twice groups are in winners (two rows each) but never in decisions or losers
    assert query(db, """SELECT count(*) FROM decisions d JOIN groups g ON g.group_id = d.group_id
                        WHERE g.winner_count > 1""") == [(0,)]
    assert query(db, "SELECT count(*) FROM winners w JOIN groups g ON g.group_id = w.group_id "
                     "WHERE g.winner_count = 2") == [(2 * sum(p.kept_twice for p in expected.projects.values()),)]


def test_orphans_by_reason(indexed):
    _, db, expected = indexed
    got = {}
    for project, reason, n in query(db, "SELECT project, reason, count(*) FROM orphans GROUP BY project, reason"):
        got.setdefault(project, {})[reason] = n
    want = {n: {r: c for r, c in p.orphans.items() if c} for n, p in expected.projects.items()}
    assert got == want


def test_winner_match_kind_and_cropped(indexed):
    _, db, expected = indexed
    assert query(db, "SELECT DISTINCT match FROM winners ORDER BY 1") == [("filename",), ("key",)]
    cropped = query(db, "SELECT count(*) FROM winners WHERE cropped = 1")[0][0]
    assert cropped == sum(p.cropped for p in expected.projects.values()) > 0
