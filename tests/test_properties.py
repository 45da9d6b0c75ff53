"""Property tests: the parser, the selector rule against a brute-force model,
and the whole pipeline on random small trees."""

from __future__ import annotations

import shutil
import sqlite3
import tempfile
from datetime import datetime, timedelta
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from catalog.grouping import LOOKAHEAD, selector_runs
from catalog.names import format_name, parse_name
from catalog.sample import png_bytes

STAGES = [1.0, 1.5, 2.0, 3.0]


@given(st.text(max_size=80))
def test_parser_never_raises(name):
    parsed = parse_name(name)
    assert parsed.stage is None or parsed.stage >= 0


@given(
    st.datetimes(min_value=datetime(1970, 1, 1), max_value=datetime(9999, 12, 31)).map(lambda d: d.replace(microsecond=0)),
    st.one_of(st.none(), st.sampled_from(STAGES + [4.0, 12.0, 2.25])),
    st.one_of(st.none(), st.from_regex(r"[a-z][a-z0-9_]{0,20}", fullmatch=True)),
    st.sampled_from([".png", ".jpg", ".JPEG", ".webp"]),
)
def test_parser_round_trips_what_it_produces(when, stage, label, ext):
    parsed = parse_name(format_name(when, stage, label, ext))
    assert parsed.timestamp == when
    assert parsed.stage == stage
    assert parsed.stage_label == (label if stage is not None else None)


def model_runs(stages: list[float]) -> list[list[int]]:
    """The rule written out as plainly as possible, for comparison."""
    groups, i = [], 0
    while i < len(stages):
        taken = [i]
        while True:
            current = stages[taken[-1]]
            window = stages[taken[-1] + 1: taken[-1] + 1 + LOOKAHEAD]
            seen = []
            for offset, stage in enumerate(window):
                if stage <= current:
                    break
                seen.append((stage, offset))
            if not seen:
                break
            stage, offset = min(seen)  # smallest stage, then earliest
            taken.append(taken[-1] + 1 + offset)
        if len(taken) > 1:
            groups.append(taken)
            i = taken[-1] + 1
        else:
            i += 1
    return groups


@given(st.lists(st.sampled_from(STAGES), max_size=120))
def test_selector_matches_the_brute_force_model(stages):
    assert selector_runs(stages) == model_runs(stages)


@given(st.lists(st.sampled_from(STAGES), max_size=120))
def test_groups_rise_and_never_share_an_image(stages):
    runs = selector_runs(stages)
    used = [i for run in runs for i in run]
    assert len(used) == len(set(used))
    for run in runs:
        assert len(run) >= 2
        assert all(stages[a] < stages[b] and a < b for a, b in zip(run, run[1:]))


tree = st.lists(
    st.tuples(st.sampled_from(["", "tara", "kim"]),  # folder
              st.integers(0, 40),                     # seconds after the previous image
              st.sampled_from(STAGES),
              st.sampled_from(["keep", "drop", "drop", "copy_elsewhere"])),
    min_size=1, max_size=40,
)


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(tree)
def test_pipeline_invariants_on_random_trees(images):
    from typer.testing import CliRunner

    from catalog.cli import app

    base = Path(tempfile.mkdtemp())
    try:
        sandbox, final = base / "ws" / "sandbox" / "p", base / "ws" / "p"
        when = datetime(2025, 7, 1)
        for folder, gap, stage, fate in images:
            when += timedelta(seconds=gap)
            name = format_name(when, stage, "x")
            (sandbox / folder).mkdir(parents=True, exist_ok=True)
            (sandbox / folder / name).write_bytes(png_bytes(8, 8))
            if fate == "keep":
                (final / folder).mkdir(parents=True, exist_ok=True)
                (final / folder / name).write_bytes(png_bytes(8, 8))
            elif fate == "copy_elsewhere":
                (final / "other").mkdir(parents=True, exist_ok=True)
                (final / "other" / name).write_bytes(png_bytes(8, 8))
        final.mkdir(parents=True, exist_ok=True)
        db = base / "c.db"
        result = CliRunner().invoke(app, ["--db", str(db), "index", str(base / "ws")])
        assert result.exit_code == 0, result.output
        con = sqlite3.connect(db)
        members = con.execute("SELECT image_id, count(*) FROM group_members GROUP BY image_id").fetchall()
        assert all(n == 1 for _, n in members)  # every grouped image is in exactly one group
        for (gid,) in con.execute("SELECT group_id FROM decisions").fetchall():
            winners = con.execute("SELECT image_id FROM winners WHERE group_id = ?", (gid,)).fetchall()
            assert len(winners) == 1
            losers = {r[0] for r in con.execute("SELECT image_id FROM losers WHERE group_id = ?", (gid,))}
            group = {r[0] for r in con.execute("SELECT image_id FROM group_members WHERE group_id = ?", (gid,))}
            assert losers | {winners[0][0]} == group and winners[0][0] not in losers
        # groups never cross folders
        assert con.execute("""SELECT count(*) FROM group_members gm JOIN images i ON i.id = gm.image_id
                              JOIN image_groups g ON g.id = gm.group_id WHERE i.dir <> g.dir""").fetchone() == (0,)
        # every final image is a winner or an orphan, never both
        finals = con.execute("SELECT count(*) FROM images WHERE role = 'final'").fetchone()[0]
        orphans = con.execute("SELECT count(*) FROM orphans").fetchone()[0]
        matched = con.execute("""SELECT count(*) FROM matches m JOIN group_members gm ON gm.image_id = m.sandbox_image_id
                                 WHERE m.problem IS NULL""").fetchone()[0]
        assert orphans + matched == finals
        con.close()
    finally:
        shutil.rmtree(base)
