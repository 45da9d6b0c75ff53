"""The export's row building, against the plain way of writing the same rows.

`catalog export` builds its CSV cells with shortcuts (JSON of the losers
without a JSON encoder per row, stage texts remembered, rows as lists, the
left-out counts from the groups view alone). Each is checked here against
the straightforward code it replaced, on random decisions, so the output
stays byte for byte what it was.
"""

from __future__ import annotations

import csv
import io
import json
import os

from hypothesis import given
from hypothesis import strategies as st

from catalog import export
from catalog.database import open_catalog
from catalog.names import format_stage
from catalog.views import stats


def reference_training_row(d: export.Decision, *, as_json: bool = False) -> dict:
    """The row as export.py wrote it before (a dict, json.dumps, format_stage)."""
    number = export._number
    return {
        "session_id": f"{d.project}_extraction",
        "set_id": d.set_id,
        "chosen_path": d.chosen_path,
        "neg_paths": d.loser_paths if as_json else json.dumps(d.loser_paths, ensure_ascii=False),
        "timestamp": export.iso_utc(d.timestamp),
        "project": d.project,
        "chosen_stage": number(d.chosen_stage) if as_json else format_stage(d.chosen_stage),
        "max_stage": number(d.max_stage) if as_json else format_stage(d.max_stage),
        "is_anomaly": d.is_anomaly,
    }


def reference_anomaly_row(d: export.Decision) -> dict:
    return {
        "session_id": f"{d.project}_extraction",
        "set_id": d.set_id,
        "project": d.project,
        "chosen_stage": format_stage(d.chosen_stage),
        "max_rejected_stage": format_stage(max(d.loser_stages)),
        "chosen_path": d.chosen_path,
        "rejected_paths": json.dumps(d.loser_paths, ensure_ascii=False),
        "timestamp": export.iso_utc(d.timestamp),
    }


texts = st.text(alphabet=st.characters(codec="utf-8"), max_size=24) | st.sampled_from(
    ['a "quoted" name.png', "back\\slash.png", "new\nline.png", "tab\t.png", "\x00\x1f\x7f", "é😀\u2028\u2029"])
stages = st.sampled_from([1.0, 1.5, 2.0, 3.0, 2.25, 10.0, 0.1]) | st.floats(min_value=-1e6, max_value=1e6)
timestamps = st.none() | st.sampled_from(["2025-07-08 06:07:11.000000", "2025-07-08 06:07:11"]) | st.datetimes()


@st.composite
def decisions(draw):
    losers = draw(st.lists(texts, min_size=1, max_size=5))
    return export.Decision(draw(texts), draw(texts), draw(texts), draw(stages), draw(stages),
                           draw(st.sampled_from([0, 1])), draw(timestamps), losers,
                           [draw(stages) for _ in losers])


def csv_text(rows) -> str:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerows(rows)
    return out.getvalue()


@given(st.lists(decisions(), max_size=6))
def test_training_rows_are_the_reference_rows(found):
    for as_json in (False, True):
        assert [export.training_row(d, as_json=as_json) for d in found] == \
               [reference_training_row(d, as_json=as_json) for d in found]
    mine = csv_text(export.training_values(d) for d in found)
    theirs = csv_text([r[c] for c in export.EXPORT_COLUMNS] for r in map(reference_training_row, found))
    assert mine == theirs
    mine = "".join(json.dumps(dict(zip(export.EXPORT_COLUMNS, export.training_values(d, as_json=True))),
                              ensure_ascii=False) for d in found)
    assert mine == "".join(json.dumps(reference_training_row(d, as_json=True), ensure_ascii=False) for d in found)


@given(st.lists(decisions(), max_size=6))
def test_anomaly_rows_are_the_reference_rows(found):
    assert [export.anomaly_row(d) for d in found] == [reference_anomaly_row(d) for d in found]
    assert csv_text(export.anomaly_values(d) for d in found) == \
        csv_text([r[c] for c in export.ANOMALY_COLUMNS] for r in map(reference_anomaly_row, found))


@given(st.lists(texts, max_size=8))
def test_json_list_is_json_dumps(paths):
    assert export.json_list(paths) == json.dumps(paths, ensure_ascii=False)


def test_json_list_of_other_values_falls_back_to_json_dumps():
    for value in ([1, "a", None], [None], ["a", 2.5]):
        assert export.json_list(value) == json.dumps(value, ensure_ascii=False)  # type: ignore[arg-type]


@given(stages)
def test_stage_text_is_format_stage(stage):
    assert export.stage_text(stage) == format_stage(stage)
    assert export.stage_text(stage) == format_stage(stage)  # remembered: still the same


def test_left_out_counts_are_those_of_stats(indexed_master):
    _, db, _ = indexed_master
    engine = open_catalog(str(db), write=False)
    with engine.connect() as conn:
        full = {r["project"]: (r["skipped"], r["kept_twice"]) for r in stats(conn) if r["project"] != "TOTAL"}
        assert export.left_out_groups(conn) == full  # every project of the sample has groups
        assert any(skipped or twice for skipped, twice in full.values())
        for name in full:
            assert export.left_out_groups(conn, [name]) == {name: full[name]}
    engine.dispose()


def test_decisions_stream_the_same_groups_as_a_plain_query(indexed_master, tmp_path):
    """The batched loop groups loser rows into decisions as the SQL orders them."""
    root, db, _ = indexed_master
    engine = open_catalog(str(db), write=False)
    with engine.connect() as conn:
        raw = conn.exec_driver_sql(export.DECISIONS_SQL.format(where="", byte_order="")).fetchall()
        for relative_to in (None, str(tmp_path), str(root)):
            found = list(export.decisions(conn, relative_to=relative_to))
            expected: dict = {}
            for row in raw:
                expected.setdefault(row[8], []).append(row)
            assert len(found) == len(expected)
            for d, rows in zip(found, expected.values()):
                base = rows[0][2] if relative_to is None else os.path.relpath(rows[0][2], relative_to)
                base = "" if base == "." else base.rstrip("/") + "/"
                assert (d.project, d.set_id, d.chosen_path, d.chosen_stage) == \
                       (rows[0][0], rows[0][1], base + rows[0][3], rows[0][4])
                assert d.loser_paths == [base + r[9] for r in rows]
                assert d.loser_stages == [r[10] for r in rows]
    engine.dispose()
