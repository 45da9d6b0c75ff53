"""A real PostgreSQL server for the tests, started once per test session.

Owns finding the server programs, `initdb` + `pg_ctl` in a temporary folder
on a free port (as an unprivileged user when the tests run as root, since
PostgreSQL refuses to run as root), the roles the README's PostgreSQL section
tells a team to create, one fresh database per test (optionally with an ICU
en-US collation), and stopping the server whatever happens to pytest: a
small watchdog process stops it and removes its folder as soon as pytest's
end of a pipe closes, at the session's end or when pytest dies.

Without the server programs or the psycopg driver the tests fail with how to
install them; they are never skipped.
"""

from __future__ import annotations

import glob
import itertools
import os
import pwd
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import pytest

INSTALL_SERVER = (
    "the PostgreSQL tests need a PostgreSQL server's programs (initdb, pg_ctl, postgres), version 14 or newer, "
    "and found none: install them (Debian/Ubuntu: apt-get install postgresql; Fedora: dnf install "
    "postgresql-server; macOS: brew install postgresql@15), or name their folder in CATALOG_TEST_PG_BIN"
)
INSTALL_DRIVER = "the PostgreSQL tests need psycopg: .venv/bin/python -m pip install -e '.[test,postgres]'"

SUPERUSER = ("postgres", "super-Secret-7")
# The two roles of the README: one that owns and writes the catalogue, one
# that may only read it (for catalog sql, stats and export).
OWNER = ("catalog_owner", "owner-Secret-7")
READER = ("catalog_reader", "reader-Secret-7")

# What the README tells a team to run in each catalogue database.
README_DATABASE_SETUP = [
    "ALTER DEFAULT PRIVILEGES FOR ROLE {owner} IN SCHEMA public GRANT SELECT ON TABLES TO {reader}",
    "GRANT SELECT ON ALL TABLES IN SCHEMA public TO {reader}",
]

# Stops the server when pytest's end of the pipe closes: at the session's
# end, or when pytest dies in any way (even SIGKILL).
_WATCHDOG = r"""
import shutil, subprocess, sys
root, user, *stop = sys.argv[1:]
sys.stdin.buffer.read()
subprocess.run(stop, user=user or None, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=120)
try:
    print("stopped", flush=True)  # pytest need not wait for the folder's removal
except OSError:
    pass  # pytest is gone
shutil.rmtree(root, ignore_errors=True)
"""


def _version(bindir: str) -> tuple[int, ...]:
    found = re.search(r"/(\d+)(?:\.\d+)?/bin$", bindir)
    return (int(found.group(1)),) if found else (0,)


def find_bindir() -> Optional[str]:
    """The folder holding initdb, pg_ctl and postgres, newest version first."""
    candidates = []
    if os.environ.get("CATALOG_TEST_PG_BIN"):
        candidates.append(os.environ["CATALOG_TEST_PG_BIN"])
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(os.path.dirname(os.path.realpath(on_path)))
    candidates += sorted(glob.glob("/usr/lib/postgresql/*/bin"), key=_version, reverse=True)
    candidates += sorted(glob.glob("/usr/pgsql-*/bin") + glob.glob("/opt/homebrew/opt/postgresql@*/bin")
                         + glob.glob("/usr/local/opt/postgresql@*/bin"), reverse=True)
    candidates += ["/usr/local/pgsql/bin", "/usr/bin"]
    for folder in candidates:
        if all(os.access(os.path.join(folder, p), os.X_OK) for p in ("initdb", "pg_ctl", "postgres")):
            return folder
    return None


def _unprivileged_user() -> Optional[pwd.struct_passwd]:
    """Who runs the server when we are root: PostgreSQL refuses root."""
    if os.geteuid() != 0:
        return None
    for name in ("postgres", "nobody"):
        try:
            return pwd.getpwnam(name)
        except KeyError:
            continue
    pytest.fail("the tests run as root and there is no 'postgres' or 'nobody' user to run PostgreSQL as; "
                "create one (useradd --system postgres)", pytrace=False)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass(frozen=True)
class Database:
    """A catalogue database on the test server, with a URL per role."""

    name: str
    owner: str  # the role that indexes (postgresql://catalog_owner:...@.../name)
    reader: str  # the SELECT-only role
    superuser: str


class Server:
    def __init__(self, bindir: str):
        self.bindir = bindir
        self.user = _unprivileged_user()
        self.root = Path(tempfile.mkdtemp(prefix="catalog-pg-"))
        self.data = self.root / "data"
        self.log = self.root / "server.log"
        self.port = 0
        self.options = ""
        self.host = "127.0.0.1"
        self._names = itertools.count(1)
        self._watchdog: Optional[subprocess.Popen] = None

    # ------------------------------------------------------------ life cycle

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(list(args), user=self.user.pw_uid if self.user else None,
                              group=self.user.pw_gid if self.user else None,
                              capture_output=True, text=True, check=check, timeout=120)

    def start(self) -> None:
        if self.user:
            os.chown(self.root, self.user.pw_uid, self.user.pw_gid)
        pwfile = self.root / "pw"
        pwfile.write_text(SUPERUSER[1] + "\n")
        if self.user:
            os.chown(pwfile, self.user.pw_uid, self.user.pw_gid)
        try:
            self._run(f"{self.bindir}/initdb", "-D", str(self.data), "-U", SUPERUSER[0], "--pwfile", str(pwfile),
                      "--auth-host=scram-sha-256", "--auth-local=scram-sha-256", "-E", "UTF8", "--locale=C.UTF-8",
                      "--no-sync", "--no-instructions")
        except subprocess.CalledProcessError as exc:
            pytest.fail(f"initdb failed: {exc.stderr.strip()[-2000:]}", pytrace=False)
        pwfile.unlink()
        self._start_watchdog()
        for _attempt in range(3):  # the port may be taken between finding and binding it
            self.port = _free_port()
            options = " ".join([
                "-c listen_addresses=127.0.0.1", f"-c port={self.port}",
                f"-c unix_socket_directories={self.root}",
                # Throwaway data: no durability, less disk traffic on a busy machine.
                "-c fsync=off", "-c synchronous_commit=off", "-c full_page_writes=off",
                "-c max_connections=80", "-c shared_buffers=32MB",
            ])
            self.options = options
            started = self._pg_ctl_start(check=False)
            if started.returncode == 0:
                break
        else:
            log = self.log.read_text(errors="replace")[-2000:] if self.log.exists() else ""
            pytest.fail(f"PostgreSQL did not start: {started.stderr.strip()} {log}", pytrace=False)
        self._create_roles()

    def _start_watchdog(self) -> None:
        stop = [f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "immediate", "-w", "stop"]
        self._watchdog = subprocess.Popen(
            [sys.executable, "-c", _WATCHDOG, str(self.root), self.user.pw_name if self.user else "", *stop],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, start_new_session=True)

    def stop(self) -> None:
        """Stop the server and remove its folder (through the watchdog)."""
        if self._watchdog is None:  # never started: no server either
            shutil.rmtree(self.root, ignore_errors=True)
            return
        assert self._watchdog.stdin is not None and self._watchdog.stdout is not None
        self._watchdog.stdin.close()
        self._watchdog.stdout.readline()  # the server is stopped (or the watchdog died: EOF)
        self._watchdog = None

    def _pg_ctl_start(self, check: bool = True) -> subprocess.CompletedProcess:
        return self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-l", str(self.log), "-w", "-t", "60",
                         "-o", self.options, "start", check=check)

    def halt(self) -> None:
        """Stop the server as an administrator would (fast: sessions are ended)."""
        self._run(f"{self.bindir}/pg_ctl", "-D", str(self.data), "-m", "fast", "-w", "-t", "60", "stop")

    def resume(self) -> None:
        """Start it again, on the same port, after `halt`."""
        self._pg_ctl_start()

    # ------------------------------------------------------------ sessions

    def dsn(self, db: str = "postgres", role: tuple[str, str] = SUPERUSER) -> str:
        return f"host={self.host} port={self.port} dbname={db} user={role[0]} password={role[1]}"

    def url(self, db: str, role: tuple[str, str] = OWNER, scheme: str = "postgresql", **query: str) -> str:
        from urllib.parse import quote, urlencode

        url = f"{scheme}://{role[0]}:{quote(role[1], safe='')}@{self.host}:{self.port}/{db}"
        return url + ("?" + urlencode(query) if query else "")

    def execute(self, sql: str, db: str = "postgres", role: tuple[str, str] = SUPERUSER, params=None) -> list:
        """Run one statement in its own autocommitted session; its rows, if any."""
        import psycopg

        with psycopg.connect(self.dsn(db, role), autocommit=True) as conn:
            cur = conn.execute(sql, params)
            return cur.fetchall() if cur.description else []

    def _create_roles(self) -> None:
        for name, password in (OWNER, READER):
            self.execute(f"CREATE ROLE {name} LOGIN PASSWORD '{password}'")

    def new_database(self, *, icu: bool = False, setup: bool = True) -> Database:
        """A fresh, empty database owned by the owner role; with `icu`, its
        collation is ICU's en-US (the order of an American desktop, unlike
        byte order); with `setup`, prepared as the README says."""
        name = f"catalog_{next(self._names)}{'_icu' if icu else ''}"
        if icu:
            self.execute(f"CREATE DATABASE {name} OWNER {OWNER[0]} TEMPLATE template0 LOCALE_PROVIDER icu "
                         "ICU_LOCALE 'en-US' LOCALE 'C.UTF-8'")
            order = [r[0] for r in self.execute("SELECT x FROM (VALUES ('B'), ('a')) v(x) ORDER BY x", db=name)]
            assert order == ["a", "B"], f"no en-US collation in {name}: {order}"  # byte order says B, a
        else:
            self.execute(f"CREATE DATABASE {name} OWNER {OWNER[0]}")
        if setup:
            for statement in README_DATABASE_SETUP:
                self.execute(statement.format(owner=OWNER[0], reader=READER[0]), db=name)
        return Database(name, self.url(name, OWNER), self.url(name, READER), self.url(name, SUPERUSER))

    def copy_database(self, template: str) -> Database:
        """A new database holding what `template` holds (tables, rows, grants,
        collation), made by the server from the template's files: cheaper
        than indexing again. No session may be connected to `template`."""
        name = f"catalog_{next(self._names)}{'_icu' if template.endswith('_icu') else ''}"
        self.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s "
                     "AND pid <> pg_backend_pid()", params=(template,))
        self.execute(f"CREATE DATABASE {name} OWNER {OWNER[0]} TEMPLATE {template}")
        return Database(name, self.url(name, OWNER), self.url(name, READER), self.url(name, SUPERUSER))

    def drop_database(self, name: str) -> None:
        """Drop a test's database once it is done with (ending its sessions)."""
        self.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")

    def tables(self, db: str) -> list[str]:
        return [r[0] for r in self.execute(
            "SELECT table_name FROM information_schema.tables WHERE table_schema = 'public' ORDER BY 1", db=db)]

    def backends(self, db: str, like: str = "%") -> list[tuple]:
        """(pid, state, query) of the catalog sessions on `db` whose query matches `like`."""
        return self.execute("SELECT pid, state, query FROM pg_stat_activity WHERE datname = %s "
                            "AND application_name = 'catalog' AND query LIKE %s", params=(db, like))


def start_server() -> Server:
    try:
        import psycopg  # noqa: F401
    except ImportError:
        pytest.fail(INSTALL_DRIVER, pytrace=False)
    bindir = find_bindir()
    if bindir is None:
        pytest.fail(INSTALL_SERVER, pytrace=False)
    server = Server(bindir)
    try:
        server.start()
    except BaseException:
        server.stop()
        raise
    return server


def state(server: Server, db: str) -> dict:
    """What a catalogue holds, ids and times left out: every view, every
    image, and the projects' folders: equal states mean equal catalogues."""
    from proc import VIEW_COLUMNS

    if "images" not in server.tables(db):
        return {}
    out = {view: sorted(server.execute(f'SELECT {cols} FROM "{view}"', db=db), key=repr)
           for view, cols in VIEW_COLUMNS.items()}
    out["images"] = sorted(server.execute(
        "SELECT p.name, i.role, i.rel_path, i.dir, i.filename, i.timestamp, i.stage, i.stage_label, i.width, "
        "i.height, i.size_bytes, i.mtime_ns FROM images i JOIN projects p ON p.id = i.project_id", db=db), key=repr)
    out["projects"] = sorted(server.execute(
        "SELECT name, sandbox_dir, final_dir, derived_version FROM projects", db=db))
    return out


def wait_for(condition: Callable, what: str, seconds: float = 30):
    """Poll `condition` until it holds (an event on the server or in a
    process); fail after `seconds`, a limit never reached when all is well."""
    deadline = time.monotonic() + seconds
    while True:
        value = condition()
        if value:
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
