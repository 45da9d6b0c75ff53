"""The command line: documented, and every user mistake a clear one-liner."""

import re
from pathlib import Path

import pytest
import typer.main

from catalog.cli import app

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def commands():
    group = typer.main.get_command(app)
    for name, cmd in group.commands.items():
        subs = getattr(cmd, "commands", None)
        if subs:
            for sub_name, sub in subs.items():
                yield f"{name} {sub_name}", sub
        else:
            yield name, cmd


@pytest.mark.parametrize("name, cmd", list(commands()), ids=lambda x: x if isinstance(x, str) else "")
def test_every_command_and_option_is_in_the_readme(name, cmd):
    assert f"catalog {name}" in README
    for param in cmd.params:
        for opt in param.opts:
            if opt.startswith("-"):
                assert re.search(rf"(?<![\w-]){re.escape(opt)}(?![\w-])", README), f"{name}: {opt} undocumented"


def test_global_options_documented():
    for opt in ("--db", "CATALOG_DB", "--debug"):
        assert opt in README


@pytest.mark.parametrize("make_args, code, message", [
    (lambda t: ["index", t / "missing"], 2, "does not exist"),
    (lambda t: ["index", t / "file.txt"], 2, "is a file, not a folder"),
    (lambda t: ["index"], 2, "run `catalog index PATH` first"),
    (lambda t: ["index", t, "--project", "x"], 2, "not both"),
    (lambda t: ["index", "--project", "x"], 2, "go together"),
    (lambda t: ["index", "--project", "x", "--sandbox", t / "missing"], 2, "does not exist"),
    (lambda t: ["index", "--project", "x", "--sandbox", t, "--final", t / "file.txt"], 2, "is a file"),
    (lambda t: ["sample", t / "file.txt"], 2, "not an empty folder"),
    (lambda t: ["sql", ""], 2, None),
    (lambda t: ["export", t / "nodir" / "x.csv"], 2, "does not exist"),
    (lambda t: ["export", t, "--force"], 2, "is a folder"),
    (lambda t: ["export", "-", "--merge"], 2, "--merge needs a file"),
    (lambda t: ["export", t / "file.txt", "--merge", "--force"], 2, "contradict"),
    (lambda t: ["export", t / "o.jsonl", "--merge", "--format", "jsonl"], 2, "--merge works on"),
])
def test_mistakes_get_one_clear_line(tmp_path, run, make_args, code, message):
    (tmp_path / "file.txt").write_text("x")
    result = run(*make_args(tmp_path))
    assert result.exit_code == code, result.output
    assert "Traceback" not in result.output
    if message is not None:
        assert message in result.stderr
        lines = [line for line in result.stderr.splitlines() if line.startswith("catalog: error:")]
        assert len(lines) == 1


def test_debug_shows_the_traceback(tmp_path, run):
    result = run.runner.invoke(app, ["--db", str(run.db), "--debug", "index", str(tmp_path / "missing")])
    assert result.exit_code != 0
    assert result.exception is not None and "does not exist" in str(result.exception)


def test_index_summary_line_and_quiet(sample, run):
    root, expected = sample
    result = run("index", root)
    line = next(text for text in result.stdout.splitlines() if text.startswith("aiko:"))
    p = expected.projects["aiko"]
    assert f"{p.sandbox_images + p.final_images} added" in line
    assert f"{len(p.groups)} groups" in line and f"{p.anomalies} anomalies" in line
    assert run("index", root, "--quiet").stdout == ""
