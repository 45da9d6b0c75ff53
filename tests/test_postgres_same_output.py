"""The same tree gives the same answers on SQLite and on PostgreSQL, byte for
byte: every view (ids left out), `stats`, `check`, `views` and every export,
before and after a re-index of a changed tree.

The PostgreSQL database has an ICU en-US collation, under which text sorts
unlike byte order ('a_b' < 'B' < 'Zed', where bytes say 'B' < 'Zed' <
'a_b'), and the tree holds names that tell the two apart: project names, and
a winner with two final copies whose folders sort differently. Every order
the tool gives must therefore be its own (byte order), not the database's.
"""

from __future__ import annotations

import csv
import io
import re
import shutil
from pathlib import Path

from conftest import Run
from proc import VIEW_COLUMNS, mutate

pytest_plugins = ["conftest_pg"]


def add_collation_traps(workspace: Path) -> None:
    """Projects named to sort differently by byte and by en-US, and a winner
    whose two final copies are in folders `B/` and `a/`."""
    for name in ("Zed", "a_b"):
        shutil.copytree(workspace / "sandbox" / "mojo-1", workspace / "sandbox" / name)
        shutil.copytree(workspace / "mojo-1", workspace / name)
    final = sorted((workspace / "a_b").glob("2025*_stage*.png"))[0]
    for folder in ("a", "B"):
        (final.parent / folder).mkdir()
        shutil.copy2(final, final.parent / folder / final.name)
    final.unlink()


def outputs(run: Run) -> dict[str, str]:
    """Everything a user can read out of the catalogue, as the CLI prints it."""
    out = {}
    for view, columns in VIEW_COLUMNS.items():
        result = run("sql", f'SELECT {columns} FROM "{view}"', "-f", "csv")
        assert result.exit_code == 0, result.output
        header, *rows = result.stdout.splitlines()
        out[view] = "\n".join([header, *sorted(rows)])  # a query without ORDER BY has no order to compare
    commands = {
        "stats": ("stats", "-f", "json"),
        "stats_table": ("stats",),
        "check": ("check", "-f", "json"),
        "check_table": ("check",),
        "views": ("views", "-f", "json"),
        "export": ("export", "-"),
        "export_jsonl": ("export", "-", "-f", "jsonl"),
        "export_anomalies_only": ("export", "-", "--anomalies-only", "--project", "a_b", "--project", "Zed"),
        "export_anomalies": ("export-anomalies", "-"),
    }
    for key, args in commands.items():
        result = run(*args)
        assert result.exit_code == 0, (args, result.output)
        out[key] = result.stdout
    # The time of the last index is the one thing that differs.
    out["stats"] = re.sub(r'"last_indexed": "[^"]*"', '"last_indexed": "-"', out["stats"])
    out["stats_table"] = re.sub(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", "-", out["stats_table"])
    return out


def test_sqlite_and_postgres_give_the_same_bytes(pg_icu, sample, tmp_path):
    root, _ = sample
    add_collation_traps(root)
    sqlite, postgres = Run(tmp_path / "catalog.db"), Run(pg_icu.owner)  # type: ignore[arg-type]
    for round_ in ("fresh", "re-index"):
        for run in (sqlite, postgres):
            result = run("index", root, "--quiet")
            assert result.exit_code == 0, result.output
        first, second = outputs(sqlite), outputs(postgres)
        assert first.keys() == second.keys()
        for key in first:
            assert first[key] == second[key], f"{round_}: {key} differs"
        # The traps are there: byte order, where en-US would say otherwise.
        projects = [row["project"] for row in csv.DictReader(io.StringIO(first["export"]))]
        assert sorted(set(projects)) == ["Zed", "a_b", "aiko", "mojo-1", "tattersail"]
        assert projects == sorted(projects)
        copies = [row for row in csv.DictReader(io.StringIO(first["winners"])) if row["final_copies"] == "2"]
        assert [(row["project"], row["final_path"].split("/")[0]) for row in copies] == [("a_b", "B")]
        if round_ == "re-index":
            break
        mutate(root)
        (root / "sandbox" / "Zed" / "Zoo").mkdir()
        (root / "sandbox" / "Zed" / "apple").mkdir()
        for folder in ("Zoo", "apple"):
            for name in sorted((root / "sandbox" / "Zed").glob("2025*.png"))[:6]:
                shutil.copy2(name, root / "sandbox" / "Zed" / folder / name.name)
