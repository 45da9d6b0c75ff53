"""The `catalog` command line: thin Typer commands over the `catalog` package.

Each command parses options, calls one function of `catalog/`, and formats
what it returns. Imports of the database stack happen inside the commands so
that `catalog --help` stays fast.
"""


import functools
import json
import os
import sys
from enum import Enum
from typing import TYPE_CHECKING, Annotated, Optional

import typer
from typer.core import TyperGroup

from catalog.errors import QUERY_STOPPED

if TYPE_CHECKING:
    from catalog.ahead import Ahead


class CatalogGroup(TyperGroup):
    """Click's own usage errors in the tool's style: one line, `catalog: error:`,
    pointing at the command's --help; exit code 2."""

    def main(self, args=None, prog_name=None, complete_var=None, standalone_mode=True,  # type: ignore[override]
             **extra):
        # Typer 0.28 carries its own copy of Click; its exceptions all derive
        # from the public typer.TyperException (usage errors carry `ctx`).
        try:
            code = super().main(args=args, prog_name=prog_name, complete_var=complete_var,
                                standalone_mode=False, **extra)
        except typer.Abort:
            typer.echo("catalog: error: interrupted", err=True)
            code = 130
        except typer.TyperException as exc:
            ctx = getattr(exc, "ctx", None)
            if type(exc).__name__ == "NoArgsIsHelpError":
                typer.echo(exc.format_message(), err=True)  # the help text itself
            elif ctx is not None:
                typer.echo(f"catalog: error: {exc.format_message()} (see `{ctx.command_path} --help`)", err=True)
            else:
                typer.echo(f"catalog: error: {exc.format_message()}", err=True)
            code = exc.exit_code
        code = code if isinstance(code, int) else 0
        if standalone_mode:
            sys.exit(code)
        return code


app = typer.Typer(
    cls=CatalogGroup,
    context_settings={"help_option_names": ["-h", "--help"]},
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    # Plain help: Rich-rendered help costs more to import than the whole command.
    rich_markup_mode=None,
    help="Catalogue AI image-generation projects (sandbox + final folders) and export preference-training rows.",
)
db_app = typer.Typer(no_args_is_help=True, help="Schema migrations of the catalogue database.",
                     context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(db_app, name="db")


class State:
    db: str = "catalog.db"
    debug: bool = False


state = State()


class Format(str, Enum):
    table = "table"
    csv = "csv"
    tsv = "tsv"
    json = "json"
    jsonl = "jsonl"


class ExportFormat(str, Enum):
    csv = "csv"
    jsonl = "jsonl"


# Shared option declarations, defined once.
FormatOpt = Annotated[Format, typer.Option(
    "--format", "-f", help="table for people; csv, tsv, json or jsonl for scripts (they stream every row).")]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, help="Table format: show at most this many rows.")]
AllOpt = Annotated[bool, typer.Option("--all", help="Table format: show every row.")]
NoHeadersOpt = Annotated[bool, typer.Option("--no-headers", help="csv/tsv: leave out the header row.")]
ProjectsOpt = Annotated[Optional[list[str]], typer.Option("--project", "-p", help="Only this project (repeatable).")]
RelativeOpt = Annotated[Optional[str], typer.Option("--relative-to", help="Write paths relative to DIR.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Overwrite OUT if it exists.")]
IncludeMissingOpt = Annotated[bool, typer.Option(
    "--include-missing", help="Keep projects whose sandbox folder is gone (left out by default).")]
IncludeMarkedOpt = Annotated[bool, typer.Option(
    "--include-marked", help="Keep decisions marked wrong on the review site (left out by default).")]


def fail(message: str, code: int) -> None:
    typer.echo(f"catalog: error: {message}", err=True)
    reading = sys.modules.get("catalog.reading")
    if reading is not None and reading.abandoned():
        # The run's workers were killed mid-task (Ctrl-C or an error): end
        # here, without the interpreter's exit handlers, whose tidying of
        # that pool can print a stray traceback (see reading.shared_workers).
        # The catalogues are closed all the same.
        from catalog.__main__ import before_exit

        before_exit()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(code)
    raise typer.Exit(code)


class Interrupted(KeyboardInterrupt):
    """Ctrl-C, with what the command was doing when it came."""


# What Ctrl-C leaves behind, command by command (index says it per project).
INTERRUPTED = {
    "sql": QUERY_STOPPED,
    "export": "OUT was left as it was (the rows are written to a temporary file, renamed only when complete)",
    "export_anomalies": "OUT was left as it was (the rows are written to a temporary file, renamed only when complete)",
    "forget": "nothing was forgotten (one transaction)",
    "sample": "the sample folder is incomplete; delete it and run catalog sample again",
    "db_upgrade": "the schema was left as it was (an upgrade is one transaction)",
}


def handled(fn):
    """Turn expected failures into one line on stderr and an exit code."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        from catalog.errors import CatalogError

        try:
            return fn(*args, **kwargs)
        except CatalogError as exc:
            if state.debug:
                raise
            fail(str(exc), exc.exit_code)
        except KeyboardInterrupt as exc:
            fail(str(exc) if isinstance(exc, Interrupted) else
                 "interrupted; " + INTERRUPTED.get(fn.__name__, "nothing was changed"), 130)
        except BrokenPipeError:
            # `catalog sql ... | head`: the reader left; not an error worth a trace.
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
            raise typer.Exit(0) from None
        except Exception as exc:
            # Only a command that imported SQLAlchemy can raise its errors
            # (catalog sql and export on SQLite never import it).
            sa_exc = sys.modules.get("sqlalchemy.exc")
            if sa_exc is not None and isinstance(exc, sa_exc.SQLAlchemyError) and not state.debug:
                from catalog.database import describe_db_error

                fail(str(describe_db_error(exc, state.db)), 1)
            raise

    return wrapper


def _print_version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            typer.echo(f"catalog {version('catalog')}")
        except PackageNotFoundError:
            typer.echo("catalog (not installed; run from a source checkout)")
        raise typer.Exit(0)


@app.callback()
def main(
    db: Annotated[str, typer.Option("--db", envvar="CATALOG_DB",
                                    help="Catalogue: a SQLite file path or a SQLAlchemy URL.")] = "catalog.db",
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[bool, typer.Option("--version", callback=_print_version, is_eager=True,
                                          help="Print the version and exit.")] = False,
) -> None:
    state.db = db
    state.debug = debug


# ---------------------------------------------------------------- output


def print_rows(columns: list[str], rows, fmt: Format, *, limit: Optional[int] = None, show_all: bool = False,
               no_headers: bool = False) -> int:
    """Print rows in `fmt` (see catalog/output.py); returns the row count."""
    from catalog.output import DEFAULT_LIMIT, write_rows

    return write_rows(columns, rows, fmt.value, limit=None if show_all else (limit or DEFAULT_LIMIT),
                      headers=not no_headers)


# ---------------------------------------------------------------- index


@app.command()
@handled
def index(
    paths: Annotated[Optional[list[str]], typer.Argument(
        help="Workspace or project folders to index; none: re-sync every catalogued project.")] = None,
    project: Annotated[Optional[str], typer.Option("--project", help="Explicit project name.")] = None,
    sandbox: Annotated[Optional[str], typer.Option("--sandbox", help="Explicit sandbox folder.")] = None,
    final: Annotated[Optional[str], typer.Option("--final", help="Explicit final folder.")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would change; write nothing.")] = False,
    list_paths: Annotated[bool, typer.Option("--list", help="With --dry-run: list every path that would be "
                                                            "added, changed or removed.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary lines.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Machine-readable summary on stdout.")] = False,
) -> None:
    """Record every sandbox and final image of the projects under PATH..."""
    from catalog.ahead import start_early
    from catalog.errors import UsageError
    from catalog.projects import requested
    from catalog.reading import shared_workers

    if list_paths and not dry_run:
        raise UsageError("--list goes with --dry-run")
    found = requested(paths, project, sandbox, final)
    # One pool of worker processes serves the whole run (catalog/reading.py);
    # for several projects (none named: every catalogued one) in a large
    # catalogue, or a new catalogue whose first project is large, it starts
    # now, while this process gets ready (a new catalogue's workers start
    # planning at once). Projects named by PATH are never skipped as
    # missing, so the early planner's projects are those synced.
    with shared_workers():
        early = start_early(state.db, found) if not dry_run and len(found) != 1 else None
        failed = _index(found, dry_run, list_paths, quiet, as_json, early)
    # Outside the run's workers: leaving their block by an exception means
    # the run was stopped (reading.shared_workers), a failed project does not.
    if failed:
        raise typer.Exit(1)


def _index(found: list, dry_run: bool, list_paths: bool, quiet: bool, as_json: bool,
           early: Optional["Ahead"] = None) -> int:
    """Index (or check) `found`; the number of projects that failed. `early`:
    the run's planner when it started before the catalogue was opened."""
    from catalog.ahead import Ahead
    from catalog.database import open_catalog, open_existing
    from catalog.errors import UsageError
    from catalog.index import sync_or_fail, vanished
    from catalog.projects import stored_projects

    if not found:
        # No PATH: every catalogued project, from the folders it was indexed from.
        reader = open_catalog(state.db, write=False)
        with reader.connect() as conn:
            found = stored_projects(conn)
        reader.dispose()
        if not found:
            raise UsageError("the catalogue holds no project yet; give PATH... to index")
    engine = open_existing(state.db) if dry_run else open_catalog(state.db, write=True)
    summaries: list = []
    missing = []
    to_sync = []  # (place in the run, project)
    for i, p in enumerate(found, start=1):
        if p.layout == "stored" and not os.path.isdir(p.sandbox_dir):
            missing.append(p)
            typer.echo(f"catalog: warning: {p.name}: sandbox folder {p.sandbox_dir} is missing; skipped "
                       f"(left out of exports; `catalog forget {p.name}` removes it)", err=True)
        else:
            to_sync.append((i, p))
    # The next projects are planned by workers while one is written.
    ahead = None if dry_run or engine is None else early or Ahead(engine, state.db, [p for _, p in to_sync])
    if ahead is not None and engine is not None:
        ahead.open(engine)
    try:
        for i, p in to_sync:
            label = f"{p.name} ({i}/{len(found)})" if len(found) > 1 else p.name
            summary = _with_progress(
                lambda cb, p=p: sync_or_fail(engine, p, dry_run=dry_run, list_paths=list_paths, progress=cb,
                                             target=state.db, ahead=ahead),
                label)
            summaries.append(summary)
            _report(summary, quiet, as_json)
    except KeyboardInterrupt as exc:
        raise Interrupted(_interrupted_index(exc, summaries)) from None
    for p in vanished(engine, [p.name for p in found]):
        typer.echo(f"catalog: warning: {p.name}: sandbox folder {p.sandbox_dir} is gone (renamed or unmounted?); "
                   f"it is left out of exports; `catalog forget {p.name}` removes it", err=True)
    failed = sum(1 for s in summaries if s.error)
    if as_json:
        typer.echo(json.dumps([s.as_dict() for s in summaries], indent=1))
    elif not quiet and (len(found) > 1 or failed):
        done = len(summaries) - failed
        line = f"{done} project{'s' if done != 1 else ''} {'checked' if dry_run else 'indexed'}"
        if failed:
            line += f", {failed} failed"
        if missing:
            line += f", {len(missing)} missing"
        typer.echo(line)
    return failed


def _interrupted_index(exc: KeyboardInterrupt, summaries: list) -> str:
    """Which project Ctrl-C stopped, and which were synced before it."""
    from catalog.index import SyncInterrupted

    done = [s.project for s in summaries if not s.error]
    what = "interrupted"
    if isinstance(exc, SyncInterrupted):
        if exc.committed:
            done.append(exc.project)
            what = f"interrupted after {exc.project} was synced"
        else:
            what = f"interrupted while indexing {exc.project}, which was left as it was before this run"
    return f"{what}; synced in this run: {', '.join(done) or 'none'}"


def _with_progress(work, name: str):
    """Run work(progress) with a progress bar on a terminal: the project (and
    its place in the run), the phase, and done/total once the total is known."""
    if not sys.stderr.isatty():
        return work(None)
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    with Progress(SpinnerColumn(), TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task(name, total=None)
        bar.refresh()
        shown = [""]

        def update(phase: str, done: int, total: Optional[int]) -> None:
            bar.update(task, description=f"{name}: {phase}", completed=done, total=total)
            if phase != shown[0]:  # every phase is drawn at least once, however short
                shown[0] = phase
                bar.refresh()

        return work(update)


def _report(s, quiet: bool, as_json: bool) -> None:
    if s.error:
        typer.echo(f"catalog: error: {s.project}: {s.error}", err=True)
        return
    for w in s.warnings[:20]:
        typer.echo(f"catalog: warning: {w}", err=True)
    if len(s.warnings) > 20:
        typer.echo(f"catalog: warning: ... and {len(s.warnings) - 20} more", err=True)
    if quiet or as_json:
        return
    if s.moved_from:
        line = f"{s.project}: {'would move' if s.dry_run else 'moved'} from {s.moved_from} to {s.moved_to}"
        if s.moved_from_exists:
            line += (f" ({s.moved_from} still exists: to keep both in the catalogue, index one of them "
                     "with --project OTHER_NAME --sandbox DIR --final DIR)")
        typer.echo(line)
    if s.dry_run:
        typer.echo(f"{s.project}: would add {s.added}, change {s.changed}, remove {s.removed}, "
                   f"keep {s.unchanged}; groups {s.groups_added} new, {s.groups_removed} gone "
                   "(dry run, nothing written)")
        for role, lists in (s.paths or {}).items():
            for verb, sign in (("added", "+"), ("changed", "~"), ("removed", "-")):
                for path in lists[verb]:
                    typer.echo(f"  {sign} {role}/{path}")
    else:
        typer.echo(f"{s.project}: {s.added} added, {s.changed} changed, {s.removed} removed, "
                   f"{s.unchanged} unchanged; {s.groups} groups, {s.decisions} decisions, "
                   f"{s.anomalies} anomalies, {s.orphans} orphans; {s.seconds:.2f}s")


@app.command()
@handled
def forget(
    names: Annotated[list[str], typer.Argument(help="Projects to remove from the catalogue.")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Show what would be removed; write nothing.")] = False,
) -> None:
    """Remove projects and everything derived from them (their folders are not touched)."""
    from catalog.database import open_catalog
    from catalog.index import forget as forget_projects

    engine = open_catalog(state.db, write=not dry_run)
    for f in forget_projects(engine, names, dry_run=dry_run):
        verb = "would forget" if dry_run else "forgot"
        typer.echo(f"{verb} {f.project}: {f.images} images, {f.groups} groups")


# ---------------------------------------------------------------- db


@db_app.command("upgrade")
@handled
def db_upgrade() -> None:
    """Create the catalogue or bring its schema to the newest revision."""
    from catalog.database import migrate, shown

    before, after = migrate(state.db)
    where = shown(state.db)  # never the password of a URL
    typer.echo(f"{where}: already at {after}" if before == after else f"{where}: {before or '(empty)'} -> {after}")


@db_app.command("current")
@handled
def db_current() -> None:
    """Show the schema revision of the catalogue (read-only: never creates or upgrades it)."""
    from catalog.database import current

    typer.echo(current(state.db))


# ---------------------------------------------------------------- sample


@app.command()
@handled
def sample(
    directory: Annotated[str, typer.Argument(help="Folder to write the sample workspace into.")],
    groups: Annotated[int, typer.Option("--groups", min=1, help="Groups over all projects.")] = 60,
    seed: Annotated[int, typer.Option("--seed", help="Random seed.")] = 7,
    images: Annotated[Optional[int], typer.Option("--images", min=1,
                                                  help="Instead of --groups: about this many sandbox images.")] = None,
) -> None:
    """Write a small, realistic sample workspace (and SAMPLE_EXPECTED.json)."""
    from pathlib import Path

    from catalog.errors import UsageError
    from catalog.sample import EXPECTED_FILE, write_sample

    target = Path(directory)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise UsageError(f"{directory} exists and is not an empty folder; choose a new folder")
    expected = _with_progress(
        lambda update: write_sample(target, groups=groups, seed=seed, images=images,
                                    progress=(lambda done, total: update("groups written", done, total))
                                    if update else None),
        f"sample {directory}")
    n = sum(p.sandbox_images for p in expected.projects.values())
    typer.echo(f"wrote {len(expected.projects)} projects, {n} sandbox images, "
               f"{expected.anomalies} anomalies to {directory} (truth in {EXPECTED_FILE})")


# ---------------------------------------------------------------- sql


@app.command()
@handled
def sql(
    query: Annotated[str, typer.Argument(help="One SQL statement; - reads stdin, @file.sql reads a file.")],
    fmt: FormatOpt = Format.table,
    limit: LimitOpt = 1000,
    show_all: AllOpt = False,
    no_headers: NoHeadersOpt = False,
    timeout: Annotated[Optional[float], typer.Option(
        "--timeout", min=0.001, help="Stop the query after this many seconds (default: no limit).")] = None,
) -> None:
    """Run one read-only SQL statement over the catalogue and its views."""
    from catalog.query import read_query, run_sql

    with run_sql(state.db, read_query(query), timeout=timeout) as (columns, rows):
        if columns:
            print_rows(columns, rows, fmt, limit=limit, show_all=show_all, no_headers=no_headers)


# ---------------------------------------------------------------- export


@app.command()
@handled
def export(
    out: Annotated[str, typer.Argument(help="Training log to write (selection_only_log.csv); - for stdout.")],
    project: ProjectsOpt = None,
    anomalies_only: Annotated[bool, typer.Option("--anomalies-only", help="Only anomaly decisions.")] = False,
    fmt: Annotated[Optional[ExportFormat], typer.Option(
        "--format", "-f", help="csv (trainer) or jsonl; default: from OUT's extension, else csv.")] = None,
    relative_to: RelativeOpt = None,
    merge: Annotated[bool, typer.Option("--merge", help="Append only new rows to an existing log.")] = False,
    force: ForceOpt = False,
    include_missing: IncludeMissingOpt = False,
    include_marked: IncludeMarkedOpt = False,
) -> None:
    """Write one training row per decision (the trainer's selection_only_log.csv)."""
    from catalog.database import open_catalog, sqlite_path
    from catalog.errors import UsageError
    from catalog.export import (
        EXPORT_COLUMNS,
        check_out,
        check_relative_to,
        decisions,
        export_format,
        marked_decisions,
        training_values,
        write_rows,
    )

    kind = export_format(out, fmt.value if fmt else None)
    if merge and kind != "csv":
        raise UsageError("--merge works on the trainer's CSV log; drop --format jsonl")
    path = check_out(out, force=force, merge=merge, catalogue=sqlite_path(state.db))
    check_relative_to(relative_to)
    engine = open_catalog(state.db, write=False)
    with engine.connect() as conn:
        project, gone = _export_selection(conn, project, include_missing)
        found = decisions(conn, projects=project, anomalies_only=anomalies_only, relative_to=relative_to,
                          leave_out=gone, leave_out_marked=not include_marked)
        as_json = kind == "jsonl"
        rows = (training_values(d, as_json=as_json) for d in found)
        result = write_rows(path, EXPORT_COLUMNS, rows, fmt=kind, merge=merge)
        marked = {} if include_marked else marked_decisions(conn, projects=project, anomalies_only=anomalies_only,
                                                            leave_out=gone)
        _export_summary(conn, result, merge, left_out=not anomalies_only, marked=marked)


@app.command("export-anomalies")
@handled
def export_anomalies(
    out: Annotated[str, typer.Argument(help="File to write (anomaly_cases.csv); - for stdout.")],
    project: ProjectsOpt = None,
    relative_to: RelativeOpt = None,
    force: ForceOpt = False,
    include_missing: IncludeMissingOpt = False,
    include_marked: IncludeMarkedOpt = False,
) -> None:
    """Write the trainer's anomaly_cases.csv: decisions where a lower stage won."""
    from catalog.database import open_catalog, sqlite_path
    from catalog.export import (
        ANOMALY_COLUMNS,
        anomaly_values,
        check_out,
        check_relative_to,
        decisions,
        marked_decisions,
        write_rows,
    )

    path = check_out(out, force=force, merge=False, catalogue=sqlite_path(state.db))
    check_relative_to(relative_to)
    engine = open_catalog(state.db, write=False)
    with engine.connect() as conn:
        project, gone = _export_selection(conn, project, include_missing)
        found = decisions(conn, projects=project, anomalies_only=True, relative_to=relative_to, leave_out=gone,
                          leave_out_marked=not include_marked)
        result = write_rows(path, ANOMALY_COLUMNS, (anomaly_values(d) for d in found))
        marked = {} if include_marked else marked_decisions(conn, projects=project, anomalies_only=True,
                                                            leave_out=gone)
        _export_summary(conn, result, False, left_out=False, marked=marked)


def _known(conn, asked: Optional[list[str]]) -> Optional[list[str]]:
    """--project names checked against the catalogue: a typo is an error, never an empty answer."""
    from catalog.projects import resolve_names, stored_projects

    return resolve_names([p.name for p in stored_projects(conn)], asked) if asked else asked


def _export_selection(conn, asked: Optional[list[str]], include_missing: bool):
    """The projects an export asked for (typos refused), and those left out
    because their sandbox folder is gone (each named on stderr)."""
    from catalog.projects import missing_projects

    asked = _known(conn, asked)
    if include_missing:
        return asked, []
    gone = [p for p in missing_projects(conn) if not asked or p.name in asked]
    for p in gone:
        typer.echo(f"catalog: warning: left out {p.name}: its sandbox folder {p.sandbox_dir} is gone "
                   "(--include-missing keeps it; `catalog forget` removes it)", err=True)
    return asked, [p.name for p in gone]


def _export_summary(conn, result, merge: bool, *, left_out: bool, marked: Optional[dict[str, int]] = None) -> None:
    """Per project: rows written and anomalies among them, and the groups an
    export of decisions leaves out, with why (`marked`: project -> decisions
    left out because a curator marked them wrong); then the total."""
    from catalog.export import left_out_groups

    # stderr when the rows themselves go to stdout
    err = result.path == "-"
    counts = left_out_groups(conn, list(result.projects)) if left_out else {}
    marked = marked or {}
    for name in sorted(set(result.projects) | set(marked)):
        rows, anomalies = result.projects.get(name, (0, 0))
        line = f"{name}: {rows} rows, {anomalies} anomalies"
        skipped, kept_twice = counts.get(name, (0, 0))
        if skipped or kept_twice:
            line += (f"; left out {skipped} skipped groups (no winner) and "
                     f"{kept_twice} kept twice (two or more winners)")
        if marked.get(name):
            line += f"; left out {marked[name]} marked wrong"
        typer.echo(line, err=err)
    msg = f"wrote {result.written} rows to {result.path}"
    if merge:
        msg += f" ({result.already} already there)"
    if marked:
        n = sum(marked.values())
        msg += f"; left out {n} decision{'s' if n != 1 else ''} marked wrong (--include-marked keeps them)"
    typer.echo(msg, err=err)


@app.command()
@handled
def views(
    sql: Annotated[Optional[str], typer.Option("--sql", metavar="NAME", help="Print the SQL of view NAME.")] = None,
    fmt: FormatOpt = Format.table,
) -> None:
    """List the views with what each holds and its columns (--sql NAME: a view's SQL)."""
    from catalog.database import open_catalog
    from catalog.views import describe_views, view_sql

    engine = open_catalog(state.db, write=False)
    with engine.connect() as conn:
        if sql is not None:
            typer.echo(view_sql(conn, sql))
            return
        found = describe_views(conn)
    print_rows(["view", "description", "columns"], found, fmt, show_all=True)


# ---------------------------------------------------------------- stats / check


@app.command()
@handled
def stats(project: ProjectsOpt = None, fmt: FormatOpt = Format.table, no_headers: NoHeadersOpt = False) -> None:
    """Counts per project and in total: images, groups, decisions, anomalies, ..."""
    from catalog.database import open_catalog
    from catalog.views import STATS_COLUMNS
    from catalog.views import stats as project_stats

    engine = open_catalog(state.db, write=False)
    with engine.connect() as conn:
        rows = project_stats(conn, _known(conn, project))
    print_rows(STATS_COLUMNS, ([r[c] for c in STATS_COLUMNS] for r in rows), fmt, show_all=True,
               no_headers=no_headers)


@app.command()
@handled
def check(
    project: ProjectsOpt = None,
    strict: Annotated[bool, typer.Option("--strict", help="Exit 1 when any problem is listed.")] = False,
    fmt: FormatOpt = Format.table,
    limit: LimitOpt = 1000,
    show_all: AllOpt = False,
    no_headers: NoHeadersOpt = False,
) -> None:
    """List data-quality problems: orphans, groups kept twice, unparsed names, unreadable headers."""
    from catalog.database import open_catalog
    from catalog.views import CHECK_COLUMNS
    from catalog.views import check as find_problems

    engine = open_catalog(state.db, write=False)
    with engine.connect() as conn:
        problems, cropped = find_problems(conn, _known(conn, project))
    print_rows(CHECK_COLUMNS, ([p[c] for c in CHECK_COLUMNS] for p in problems), fmt, limit=limit,
               show_all=show_all, no_headers=no_headers)
    if fmt == Format.table:
        for name, n in cropped.items():
            typer.echo(f"{name}: {n} cropped winners (final pixel size differs; informational)")
        typer.echo(f"{len(problems)} problems listed")
    if strict and problems:
        raise typer.Exit(1)


# ---------------------------------------------------------------- review


class ReviewWhat(str, Enum):
    all = "all"
    anomalies = "anomalies"
    decisions = "decisions"
    skipped = "skipped"
    orphans = "orphans"


class ThumbFormat(str, Enum):
    jpeg = "jpeg"
    webp = "webp"


INTERRUPTED.update({
    "review": "the thumbnails made so far are kept and every page is whole (written to a temporary file, "
              "then renamed); run catalog review again to finish the site",
    "marks_import": "no mark was stored (one transaction)",
    "marks_clear": "no mark was removed (one transaction)",
})


@app.command()
@handled
def review(
    out_dir: Annotated[str, typer.Argument(
        help="Folder to write the site into: created, or brought up to date if a review site is there.")],
    project: ProjectsOpt = None,
    what: Annotated[ReviewWhat, typer.Option(
        "--what", help="Cards to show: anomalies, decisions (anomalies first), skipped, orphans, "
                       "or all of them in that order.")] = ReviewWhat.all,
    per_page: Annotated[int, typer.Option("--per-page", min=1, help="Cards per page.")] = 200,
    thumb_size: Annotated[int, typer.Option(
        "--thumb-size", min=64, max=2048, help="Longest side of a thumbnail, in pixels.")] = 384,
    thumb_format: Annotated[ThumbFormat, typer.Option("--thumb-format", help="Thumbnails as jpeg or webp.")]
    = ThumbFormat.jpeg,
    absolute: Annotated[bool, typer.Option(
        "--absolute", help="Link originals by absolute file:// URL instead of relative to OUT_DIR.")] = False,
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", min=1, help="Processes making thumbnails (default: one per core).")] = None,
) -> None:
    """Write an offline HTML contact sheet of the decisions, anomalies first (open OUT_DIR/index.html)."""
    from catalog.database import open_catalog
    from catalog.review import SECTION_LABELS, ReviewOptions, write_review

    engine = open_catalog(state.db, write=False)
    with engine.connect() as conn:
        names = _known(conn, project)
    options = ReviewOptions(what=what.value, per_page=per_page, edge=thumb_size, fmt=thumb_format.value,
                            absolute=absolute, jobs=jobs)
    result = _with_progress(lambda update: write_review(engine, out_dir, names, options, progress=update),
                            f"review {out_dir}")
    for p in result.missing:
        typer.echo(f"catalog: warning: left out {p.name}: its sandbox folder {p.sandbox_dir} is gone "
                   "(`catalog forget` removes it)", err=True)
    for info in result.projects:
        shown = ", ".join(f"{n} {SECTION_LABELS[s]}" for s, n in info.counts.items())
        typer.echo(f"{info.name}: {shown} on {info.pages} page{'s' if info.pages != 1 else ''}")
    t = result.tiles
    line = f"thumbnails: {t.made} made, {t.kept} kept, {t.removed} removed"
    if t.unreadable:
        line += f"; {t.unreadable} unreadable (placeholder tiles)"
    typer.echo(f"{line} in {result.tiles_seconds:.1f}s")
    typer.echo(f"wrote {result.pages_written} pages in {result.pages_seconds:.1f}s; open {result.index.as_uri()}")


# ---------------------------------------------------------------- marks

marks_app = typer.Typer(no_args_is_help=True, help="Review marks: decisions a curator marked wrong on the review site.",
                        context_settings={"help_option_names": ["-h", "--help"]})
app.add_typer(marks_app, name="marks")


@marks_app.command("import")
@handled
def marks_import(
    file: Annotated[str, typer.Argument(help="The review-marks.json the review page downloaded.")],
    by: Annotated[Optional[str], typer.Option("--by", help="Who marked them, where the file does not say.")] = None,
) -> None:
    """Store the marks of a review-marks.json; export then leaves those decisions out."""
    from catalog.database import open_catalog
    from catalog.marks import import_marks, read_marks_file

    marks = read_marks_file(file)
    open_catalog(state.db, write=False).dispose()  # no catalogue there is an error, not a new empty one
    result = import_marks(open_catalog(state.db, write=True), marks, by=by)
    for m in result.unknown[:20]:
        typer.echo(f"catalog: warning: {m.project} {m.set_id}: no such group in the catalogue (re-indexed since the "
                   "page was written, or another catalogue?); skipped", err=True)
    if len(result.unknown) > 20:
        typer.echo(f"catalog: warning: ... and {len(result.unknown) - 20} more", err=True)
    line = (f"imported {file}: {result.added} new, {result.updated} updated, {result.unchanged} unchanged")
    if result.unknown:
        line += f", {len(result.unknown)} skipped"
    typer.echo(line)


@marks_app.command("list")
@handled
def marks_list(
    project: ProjectsOpt = None,
    fmt: FormatOpt = Format.table,
    limit: LimitOpt = 1000,
    show_all: AllOpt = False,
    no_headers: NoHeadersOpt = False,
) -> None:
    """List the marks, with what each does now (status: anomaly or decision left out of exports,
    not a decision, or gone)."""
    from catalog.database import open_catalog
    from catalog.marks import LIST_COLUMNS, list_marks

    engine = open_catalog(state.db, write=False)
    with engine.connect() as conn:
        rows = list_marks(conn, _known(conn, project))
    print_rows(LIST_COLUMNS, rows, fmt, limit=limit, show_all=show_all, no_headers=no_headers)


@marks_app.command("clear")
@handled
def marks_clear(
    set_ids: Annotated[Optional[list[str]], typer.Argument(help="Set ids whose marks to remove.")] = None,
    project: ProjectsOpt = None,
    everything: Annotated[bool, typer.Option("--all", help="Remove every mark.")] = False,
) -> None:
    """Remove marks (SET_ID..., every mark of --project, or --all): export keeps those decisions again."""
    from catalog.database import open_catalog
    from catalog.marks import clear_marks

    open_catalog(state.db, write=False).dispose()  # no catalogue there is an error, not a new empty one
    engine = open_catalog(state.db, write=True)
    with engine.connect() as conn:
        names = _known(conn, project)
    cleared, unmatched = clear_marks(engine, names=names, set_ids=set_ids or [], everything=everything)
    for set_id in unmatched:
        typer.echo(f"catalog: warning: {set_id}: no mark to clear", err=True)
    typer.echo(f"cleared {cleared} mark{'s' if cleared != 1 else ''}")


# ---------------------------------------------------------------- crops

INTERRUPTED.update({
    "export_crops": "OUT was left as it was (the rows are written to a temporary file, renamed only when complete)",
})


@app.command()
@handled
def crops(
    project: ProjectsOpt = None,
    jobs: Annotated[Optional[int], typer.Option(
        "--jobs", "-j", min=1, help="Processes decoding images at once (default: one per core).")] = None,
    recheck: Annotated[bool, typer.Option(
        "--recheck", help="Look at every pair again, even those whose files did not change.")] = False,
    quiet: Annotated[bool, typer.Option("--quiet", "-q", help="No summary lines.")] = False,
) -> None:
    """Find the crop box of every cropped winner in its sandbox original (exact, approx, review, none, failed)."""
    from catalog.crops import CropsInterrupted, crop_counts, run_crops
    from catalog.database import open_catalog
    from catalog.errors import UsageError
    from catalog.projects import stored_projects

    reader = open_catalog(state.db, write=False)
    with reader.connect() as conn:
        names = _known(conn, project)
        if not stored_projects(conn):
            raise UsageError("the catalogue holds no project yet; run `catalog index PATH` first")
    reader.dispose()
    engine = open_catalog(state.db, write=True)
    try:
        run = _crops_progress(lambda update: run_crops(engine, names, jobs=jobs, recheck=recheck, progress=update))
    except CropsInterrupted as exc:
        raise Interrupted(f"interrupted; the {exc.saved} pairs looked at are saved, {exc.left} were not looked "
                          "at yet (run catalog crops again for them)") from None
    for p in run.missing:
        typer.echo(f"catalog: warning: {p.name}: its sandbox or final folder is missing; its crops were "
                   "left as they were", err=True)
    if quiet:
        return
    with engine.connect() as conn:
        counts = crop_counts(conn, names)
    for name, by_status in sorted(counts.items()):
        found = ", ".join(f"{status} {by_status.get(status, 0)}" for status in ("exact", "approx", "review",
                                                                                 "none", "failed"))
        typer.echo(f"{name}: {sum(by_status.values())} cropped winners: {found}")
    line = f"looked at {run.looked_at} pairs, {run.unchanged} unchanged"
    if run.looked_at:
        line += f"; {run.seconds:.1f}s, {run.rate:.1f} pairs/s"
    if run.removed:
        line += f"; removed {run.removed} whose pair is gone"
    if run.saved < run.looked_at:
        line += (f"; {run.looked_at - run.saved} not saved because their files changed in the catalogue "
                 "meanwhile (the next run looks at them again)")
    typer.echo(line)


def _crops_progress(work):
    """Run work(update) with a progress bar and a rate on a terminal. The bar
    is redrawn by the updates themselves, with no thread of its own: worker
    processes are forked from this one."""
    if not sys.stderr.isatty():
        return work(None)
    import time

    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn, TimeRemainingColumn

    with Progress(TextColumn("crops"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[rate]}"),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=Console(stderr=True), transient=True,
                  auto_refresh=False) as bar:
        task = bar.add_task("crops", total=None, rate="")
        started = time.perf_counter()

        def update(done: int, total: int) -> None:
            elapsed = time.perf_counter() - started
            rate = f"{done / elapsed:.1f} pairs/s" if done and elapsed > 0 else ""
            bar.update(task, completed=done, total=total, rate=rate)
            bar.refresh()

        return work(update)


@app.command("export-crops")
@handled
def export_crops(
    out: Annotated[str, typer.Argument(help="File to write (the trainer's crop rows); - for stdout.")],
    project: ProjectsOpt = None,
    fmt: Annotated[Optional[ExportFormat], typer.Option(
        "--format", "-f", help="csv (trainer) or jsonl; default: from OUT's extension, else csv.")] = None,
    include_review: Annotated[bool, typer.Option(
        "--include-review", help="Also write review, none and failed pairs, with a status column.")] = False,
    force: ForceOpt = False,
) -> None:
    """Write the trainer's crop rows: one per crop box found exact or approx by catalog crops."""
    from catalog.crops import CROP_COLUMNS, REVIEW_COLUMNS, crop_counts, crop_rows, plan_crops, write_crop_rows
    from catalog.database import open_catalog, sqlite_path
    from catalog.export import atomic_write, check_out, export_format

    kind = export_format(out, fmt.value if fmt else None)
    path = check_out(out, force=force, merge=False, catalogue=sqlite_path(state.db))
    engine = open_catalog(state.db, write=False)
    written: dict[str, int] = {}
    with engine.connect() as conn:
        names = _known(conn, project)
        columns = REVIEW_COLUMNS if include_review else CROP_COLUMNS
        rows = crop_rows(conn, names, include_review=include_review)

        def emit(f) -> None:
            written.update(write_crop_rows(f, rows, columns, kind))

        if path is None:
            emit(sys.stdout)
            sys.stdout.flush()
        else:
            atomic_write(path, emit)
        counts = crop_counts(conn, names)
        behind = plan_crops(conn, names).todo
    err = path is None  # stderr when the rows themselves go to stdout
    for name in sorted(set(written) | set(counts)):
        line = f"{name}: {written.get(name, 0)} rows"
        unproven = sum(counts[name][s] for s in ("review", "none", "failed")) if name in counts else 0
        if unproven and not include_review:
            line += f"; left out {unproven} review, none or failed (--include-review writes them)"
        typer.echo(line, err=err)
    if behind:
        typer.echo(f"catalog: warning: {behind} cropped winners have no up-to-date box; run catalog crops first",
                   err=True)
    typer.echo(f"wrote {sum(written.values())} rows to {path or '-'}", err=err)


if __name__ == "__main__":
    app()
