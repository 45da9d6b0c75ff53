"""`catalog review`: an offline HTML contact sheet of the decisions, to look at instead of read.

Owns the site under OUT_DIR: `index.html` (per-project counts and an
anomaly-rate chart) and, per project, pages of at most `per_page` cards:
anomalies first, then the other decisions, skipped groups (no winner) and
orphans. A card shows its group in stage order, the winner outlined, each
image linked to its original. The data comes from the views only;
thumbnails are catalog/thumbs.py's, marks catalog/marks.py's.

What keeps it safe to open: every name and path is HTML-escaped; a
Content-Security-Policy lets the pages run only their own inline style and
script (by hash) and load only local images, so nothing is ever fetched from
the network; each page is written to a temporary file and renamed; files are
deleted only by thumbs.py, inside OUT_DIR/thumbs.
"""

from __future__ import annotations

import base64
import hashlib
import html
import json
import os
import re
import secrets
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple, Optional, TextIO
from urllib.parse import quote

from sqlalchemy import text
from sqlalchemy.engine import Connection, Engine

from . import dialects, thumbs
from .errors import UsageError
from .export import atomic_write, iso_utc
from .marks import FILE_FORMAT, FILE_NAME, FILE_VERSION, marks_by_decision
from .names import format_stage
from .projects import Project, stored_projects
from .views import stats

SECTIONS = ("anomalies", "decisions", "skipped", "orphans")
SECTION_TITLES = {
    "anomalies": "Anomalies: a lower stage won",
    "decisions": "Decisions: the highest stage won",
    "skipped": "Skipped groups: nothing was picked",
    "orphans": "Orphans: final images that are no winner",
}
SECTION_LABELS = {"anomalies": "anomalies", "decisions": "other decisions", "skipped": "skipped groups",
                  "orphans": "orphans"}
# --what: which sections the pages hold, in page order.
WHAT = {
    "all": SECTIONS,
    "anomalies": ("anomalies",),
    "decisions": ("anomalies", "decisions"),
    "skipped": ("skipped",),
    "orphans": ("orphans",),
}
ORPHAN_REASONS = {
    "no_match": "no sandbox image has this file name, or its timestamp and stage",
    "ambiguous": "several sandbox images could be its original:",
    "ungrouped": "its sandbox image is in no group:",
}
MARKER = ".catalog-review"  # in OUT_DIR: this folder is a review site, and its id
DEFAULT_PER_PAGE = 200
_PAGE = re.compile(r"^page-(\d+)\.html$")

Progress = Callable[[str, int, Optional[int]], None]


class Picture(NamedTuple):
    role: str  # winner, loser, member (of a skipped group), final (an orphan)
    base: str  # "sandbox" or "final": the folder rel_path is relative to
    rel_path: str
    filename: str
    stage: Optional[float]
    label: Optional[str]
    width: Optional[int]
    height: Optional[int]
    size_bytes: int
    mtime_ns: int


class Winner(NamedTuple):
    final_path: str
    cropped: int
    final_copies: int
    final_width: Optional[int]
    final_height: Optional[int]


@dataclass
class Card:
    section: str
    when: object  # the decision's (winner's) time, a group's first, a final image's own
    dir: str
    pictures: list[Picture]
    set_id: Optional[str] = None
    winner: Optional[Winner] = None
    reason: Optional[str] = None  # orphans
    sandbox_paths: list[str] = field(default_factory=list)  # orphans: their original, or the candidates


@dataclass
class ProjectPages:
    name: str
    slug: str
    counts: dict[str, int]
    pages: int
    first_page: dict[str, int]  # section -> page it starts on


@dataclass
class ReviewResult:
    out_dir: Path
    projects: list[ProjectPages] = field(default_factory=list)
    missing: list[Project] = field(default_factory=list)
    tiles: thumbs.TileRun = field(default_factory=thumbs.TileRun)
    jobs: int = 1
    pages_written: int = 0
    tiles_seconds: float = 0.0
    pages_seconds: float = 0.0

    @property
    def index(self) -> Path:
        return self.out_dir / "index.html"


@dataclass
class ReviewOptions:
    what: str = "all"
    per_page: int = DEFAULT_PER_PAGE
    edge: int = thumbs.DEFAULT_EDGE
    fmt: str = "jpeg"
    absolute: bool = False
    jobs: Optional[int] = None


# ---------------------------------------------------------------- reading the views

_MEMBER = "i.rel_path, i.filename, i.stage, i.stage_label, i.width, i.height, i.size_bytes, i.mtime_ns"

# One row per group member: (group_id, set_id, section, time, dir, is the
# winner, member columns), cards in page order and members in stage order.
_DECISIONS = f"""
SELECT d.group_id, d.set_id, CASE WHEN d.is_anomaly = 1 THEN 'anomalies' ELSE 'decisions' END, d.timestamp, g.dir,
       CASE WHEN i.id = d.chosen_image_id THEN 1 ELSE 0 END, {_MEMBER}
FROM decisions d
JOIN "groups" g ON g.group_id = d.group_id
JOIN group_members gm ON gm.group_id = d.group_id
JOIN images i ON i.id = gm.image_id
WHERE d.project = :project {{only_anomalies}}
ORDER BY d.is_anomaly DESC, d.set_id{{byte_order}}, i.stage, i.filename{{byte_order}}
"""

_SKIPPED = f"""
SELECT s.group_id, s.set_id, 'skipped', s.first_timestamp, s.dir, 0, {_MEMBER}
FROM skipped_groups s
JOIN group_members gm ON gm.group_id = s.group_id
JOIN images i ON i.id = gm.image_id
WHERE s.project = :project
ORDER BY s.set_id{{byte_order}}, i.stage, i.filename{{byte_order}}
"""

_WINNERS = """
SELECT w.group_id, w.final_path, w.cropped, w.final_copies, f.width, f.height
FROM winners w
JOIN projects p ON p.name = w.project
LEFT JOIN images f ON f.project_id = p.id AND f.role = 'final' AND f.rel_path = w.final_path
WHERE w.project = :project
"""

_ORPHANS = """
SELECT o.final_image_id, o.reason, o.sandbox_path, f.timestamp, f.dir,
       f.rel_path, f.filename, f.stage, f.stage_label, f.width, f.height, f.size_bytes, f.mtime_ns
FROM orphans o
JOIN images f ON f.id = o.final_image_id
WHERE o.project = :project
ORDER BY o.reason{byte_order}, f.rel_path{byte_order}
"""

# The sandbox images an ambiguous final image could be, by the matching rules
# (catalog/matching.py): those with its file name, else those with its
# timestamp and stage.
_CANDIDATES = """
SELECT f.id, s.rel_path
FROM orphans o
JOIN images f ON f.id = o.final_image_id
JOIN images s ON s.project_id = f.project_id AND s.role = 'sandbox'
WHERE o.project = :project AND o.reason = 'ambiguous'
  AND (s.filename = f.filename
       OR (s.timestamp = f.timestamp AND s.stage = f.stage
           AND NOT EXISTS (SELECT 1 FROM images n
                           WHERE n.project_id = f.project_id AND n.role = 'sandbox' AND n.filename = f.filename)))
ORDER BY s.rel_path{byte_order}
"""


def _group_cards(rows: Iterable[Sequence]) -> list[tuple[int, Card]]:
    """(group_id, card) per group, from the member rows of _DECISIONS or _SKIPPED."""
    out: list[tuple[int, Card]] = []
    for group_id, set_id, section, when, folder, is_winner, *member in rows:
        if not out or out[-1][0] != group_id:
            out.append((group_id, Card(section, when, folder or "", [], set_id=set_id)))
        role = "winner" if is_winner else ("member" if section == "skipped" else "loser")
        out[-1][1].pictures.append(Picture(role, "sandbox", *member))
    return out


def read_cards(conn: Connection, project: str, sections: Sequence[str]) -> list[Card]:
    """One project's cards, in page order (text in code point order, whatever
    the database's collation, so every backend writes the same pages)."""
    cards: list[Card] = []
    params = {"project": project}

    def rows(sql: str, **parts: str):
        return conn.execute(text(sql.format(byte_order=dialects.byte_order(conn), **parts)), params)

    if "anomalies" in sections or "decisions" in sections:
        only = "" if "decisions" in sections else "AND d.is_anomaly = 1"
        decided = _group_cards(rows(_DECISIONS, only_anomalies=only))
        winners = {r[0]: Winner(*r[1:]) for r in rows(_WINNERS)}
        for group_id, card in decided:
            card.winner = winners.get(group_id)
            cards.append(card)
    if "skipped" in sections:
        cards.extend(card for _, card in _group_cards(rows(_SKIPPED)))
    if "orphans" in sections:
        candidates: dict[int, list[str]] = {}
        for final_id, path in rows(_CANDIDATES):
            candidates.setdefault(final_id, []).append(path)
        for final_id, reason, sandbox_path, when, folder, *final in rows(_ORPHANS):
            cards.append(Card("orphans", when, folder or "", [Picture("final", "final", *final)], reason=reason,
                              sandbox_paths=[sandbox_path] if sandbox_path else candidates.get(final_id, [])))
    return cards


# ---------------------------------------------------------------- the site folder

_PLAIN = re.compile(r"^[a-z0-9][a-z0-9._-]{0,59}$")


def slug(name: str) -> str:
    """A project's folder name in the site: the name itself when it is plain
    lowercase, else a readable form plus a digest of the name, so that names
    differing only in case or in characters a URL would encode never share a
    folder (and the same name always gets the same one)."""
    if _PLAIN.match(name) and name != "thumbs":
        return name
    readable = re.sub(r"[^a-z0-9._-]+", "-", name.lower()).strip("-.")[:40] or "project"
    return f"{readable}-{hashlib.blake2b(name.encode('utf-8', 'surrogateescape'), digest_size=4).hexdigest()}"


def _inside(path: Path, folder: Optional[str]) -> bool:
    if not folder:
        return False
    top = Path(folder).resolve()
    return path == top or top in path.parents


def prepare_out_dir(out_dir: Path, catalogued: Sequence[Project]) -> str:
    """Check OUT_DIR (created when missing) and return the site's id, kept in
    its marker file: the review page keeps a curator's marks under it."""
    if out_dir.exists() and not out_dir.is_dir():
        raise UsageError(f"{out_dir} is a file; give a folder to write the review site into")
    if not out_dir.exists() and not out_dir.parent.is_dir():
        raise UsageError(f"folder of {out_dir} does not exist; create it first")
    resolved = out_dir.resolve()
    for p in catalogued:
        for folder in (p.sandbox_dir, p.final_dir):
            if _inside(resolved, folder):
                raise UsageError(f"{out_dir} is inside project {p.name}'s folder {folder}: the next index would "
                                 "catalogue the thumbnails; choose a folder outside the projects")
    marker = out_dir / MARKER
    if marker.is_file():
        try:
            site = json.loads(marker.read_text(encoding="utf-8"))["site"]
            if isinstance(site, str) and re.fullmatch(r"[0-9a-f]{16}", site):
                return site
        except (OSError, ValueError, KeyError, TypeError):
            pass  # damaged: the folder is still ours; give it a new id
    elif out_dir.is_dir() and any(out_dir.iterdir()):
        raise UsageError(f"{out_dir} is not empty and holds no review site; choose a new or empty folder "
                         "(a review site removes old thumbnails inside it)")
    out_dir.mkdir(exist_ok=True)
    site = secrets.token_hex(8)
    _write_atomic(marker, json.dumps({"written_by": "catalog review", "site": site}) + "\n")
    return site


# ---------------------------------------------------------------- writing the site

def write_review(engine: Engine, out_dir: str | os.PathLike, names: Optional[Sequence[str]] = None,
                 options: Optional[ReviewOptions] = None, progress: Optional[Progress] = None) -> ReviewResult:
    """Write (or bring up to date) the review site of `names` (all projects
    when None) in OUT_DIR. Projects whose sandbox folder is gone are left
    out and listed in the result."""
    options = options or ReviewOptions()
    sections = WHAT[options.what]
    out = Path(out_dir)
    result = ReviewResult(out_dir=out, jobs=options.jobs or thumbs.jobs_default())
    with engine.connect() as conn:
        catalogued = stored_projects(conn)
        site = prepare_out_dir(out, catalogued)
        chosen = [p for p in catalogued if names is None or p.name in names]
        result.missing = [p for p in chosen if not os.path.isdir(p.sandbox_dir)]
        shown = [p for p in chosen if p not in result.missing]
        # stats() ends with a TOTAL row, which a project may be named too
        counts = {row["project"]: row for row in stats(conn, [p.name for p in shown])[:-1]} if shown else {}
        cards = {p.name: read_cards(conn, p.name, sections) for p in shown}
        marked = marks_by_decision(conn, [p.name for p in shown])
    out = out.resolve()
    result.out_dir = out

    # Thumbnails: every picture of every card, made once, on all cores.
    started = time.perf_counter()
    wanted: dict[Path, dict[str, str]] = {}  # thumbs folder -> {tile stem: original}
    stems: dict[str, dict[tuple[str, str], str]] = {}  # project -> {(base, rel_path): tile stem}
    for p in shown:
        sources = wanted.setdefault(out / "thumbs" / slug(p.name), {})
        named = stems.setdefault(p.name, {})
        bases = {"sandbox": p.sandbox_dir.rstrip("/") + "/", "final": (p.final_dir or "").rstrip("/") + "/"}
        for card in cards[p.name]:
            for pic in card.pictures:
                source = bases[pic.base] + pic.rel_path
                stem = thumbs.tile_stem(source, pic.size_bytes, pic.mtime_ns, options.edge, options.fmt)
                named[(pic.base, pic.rel_path)] = stem
                sources[stem] = source
    result.tiles = thumbs.make_tiles(
        wanted, edge=options.edge, fmt=options.fmt, jobs=result.jobs,
        progress=(lambda done, total: progress("thumbnails", done, total)) if progress else None)
    result.tiles_seconds = time.perf_counter() - started

    started = time.perf_counter()
    page = _Page(site)
    for p in shown:
        links = _Links(p, out, options, result.tiles, stems[p.name])
        written, pages = _write_project(out, p, cards[p.name], sections, options, links, marked, page)
        result.projects.append(pages)
        result.pages_written += written
        if progress is not None:
            progress("pages", len(result.projects), len(shown))
    _write_atomic(out / "index.html", page.index(result.projects, counts, result.missing, marked))
    result.pages_written += 1
    result.pages_seconds = time.perf_counter() - started
    prune = []
    if names is None:  # a whole-catalogue run: the thumbnails of forgotten projects go too
        known = {slug(p.name) for p in catalogued}
        prune = [d for d in (out / "thumbs").iterdir() if d.is_dir() and d.name not in known]
    thumbs.remove_stale(result.tiles, prune)  # only now: no page still in place uses them
    return result


def _write_atomic(path: Path, content: str) -> None:
    def write(f: TextIO) -> None:
        f.write(content)

    atomic_write(path, write)


def _write_project(out: Path, p: Project, cards: list[Card], sections: Sequence[str], options: ReviewOptions,
                   links: _Links, marked: dict, page: _Page) -> tuple[int, ProjectPages]:
    """Write one project's pages; pages left from an earlier, longer run
    become a pointer to page 1 (pages are never deleted)."""
    name = slug(p.name)
    folder = out / name
    folder.mkdir(exist_ok=True)  # before _Links reads it
    per = options.per_page
    chunks = [cards[k:k + per] for k in range(0, len(cards), per)] or [[]]
    counts = {s: 0 for s in sections}
    first_page: dict[str, int] = {}
    for k, chunk in enumerate(chunks, start=1):
        for card in chunk:
            counts[card.section] += 1
            first_page.setdefault(card.section, k)
    info = ProjectPages(p.name, name, counts, len(chunks), first_page)
    for k, chunk in enumerate(chunks, start=1):
        _write_atomic(folder / f"page-{k}.html", page.project_page(info, k, chunk, links, marked))
    written = len(chunks)
    for old in os.listdir(folder):
        m = _PAGE.match(old)
        if m and int(m.group(1)) > len(chunks):
            _write_atomic(folder / old, page.retired(info))
            written += 1
    return written, info


class _Links:
    """Where one project page finds its thumbnails and originals."""

    def __init__(self, p: Project, out: Path, options: ReviewOptions, tiles: thumbs.TileRun,
                 stems: dict[tuple[str, str], str]):
        page_dir = out / slug(p.name)
        self.options = options
        self.tiles = tiles
        self.stems = stems
        self.thumbs_key = str(out / "thumbs" / page_dir.name)
        self.thumbs_href = "../thumbs/" + page_dir.name + "/"
        self.bases = {"sandbox": self._base(p.sandbox_dir, page_dir), "final": self._base(p.final_dir, page_dir)}

    def _base(self, folder: Optional[str], page_dir: Path) -> Optional[str]:
        if not folder:
            return None
        if self.options.absolute:
            return "file://" + quote(os.fsencode(os.path.abspath(folder))) + "/"
        return quote(os.fsencode(os.path.relpath(folder, page_dir))) + "/"

    def original(self, base: str, rel_path: str) -> Optional[str]:
        prefix = self.bases[base]
        return None if prefix is None else prefix + quote(os.fsencode(rel_path))

    def tile(self, pic: Picture) -> thumbs.Tile:
        return self.tiles.tiles[(self.thumbs_key, self.stems[(pic.base, pic.rel_path)])]


# ---------------------------------------------------------------- HTML

def _e(value) -> str:
    return html.escape(str(value), quote=True)


def _breakable(name: str) -> str:
    """A file name, escaped, that may wrap after its underscores rather than anywhere."""
    return _e(name).replace("_", "_<wbr>")


def _when(value) -> str:
    return iso_utc(value) if value is not None else ""


def _hash(source: str) -> str:
    return "'sha256-" + base64.b64encode(hashlib.sha256(source.encode()).digest()).decode() + "'"


CSS = """
:root{--bg:#f4f3ef;--card:#fff;--ink:#1f2328;--muted:#656d76;--line:#dedbd2;--win:#1a7f37;--winbg:#e9f7ee;
--anom:#b35900;--anombg:#fff1e0;--bad:#cf222e;--badbg:#ffebe9;--blue:#0a58ca}
*{box-sizing:border-box}
[hidden]{display:none!important}
body{margin:0;background:var(--bg);color:var(--ink);font:14px/1.45 system-ui,-apple-system,"Segoe UI",Roboto,sans-serif}
a{color:var(--blue)}
code,.mono,.set-id,.name{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.top{position:sticky;top:0;z-index:10;display:flex;flex-wrap:wrap;align-items:center;gap:8px 14px;
padding:8px 18px;background:#24292f;color:#f6f8fa}
.top a{color:#f6f8fa;text-decoration:none}
.top .home{font-weight:700}
.top .where{font-weight:600}
.top .muted{color:#c9d1d9}
.top .spacer{flex:1}
.top input{font:inherit;border:1px solid #57606a;border-radius:6px;padding:4px 8px;background:#fff;color:var(--ink)}
#filter{width:17em}
#curator{width:9em}
button{font:inherit;border:1px solid #8c959f;border-radius:6px;padding:3px 10px;background:#f6f8fa;color:var(--ink);
cursor:pointer}
button:disabled{opacity:.5;cursor:default}
main{padding:14px 18px 40px;max-width:1800px;margin:0 auto}
nav.sections,nav.pages{display:flex;flex-wrap:wrap;gap:6px 14px;align-items:center;margin:4px 0 12px}
nav.pages a,nav.pages span{padding:1px 8px;border-radius:6px}
nav.pages .current{background:#24292f;color:#fff}
h1{font-size:22px;margin:8px 0}
h2.section{flex-basis:100%;font-size:16px;margin:14px 0 0;padding-bottom:4px;border-bottom:2px solid var(--line)}
.grid{display:flex;flex-wrap:wrap;gap:12px;align-items:flex-start}
.card{flex:0 1 auto;max-width:100%;background:var(--card);border:1px solid var(--line);border-radius:10px;
padding:8px 10px 10px}
.card.anomaly{border-left:6px solid var(--anom)}
.card.skipped{border-left:6px solid #8c959f}
.card.orphan{border-left:6px solid var(--blue)}
.card.marked,.card.stored-mark{border-color:var(--bad);box-shadow:0 0 0 2px var(--bad)}
/* the images set a card's width; its header and notes wrap within it */
.head,.why{contain:inline-size}
.head{display:flex;flex-wrap:wrap;align-items:baseline;gap:2px 10px}
.set-id{font-weight:700;font-size:13px}
.head time,.head .dir{color:var(--muted);font-size:12px}
.head .mark{margin-left:auto}
.card.marked .mark{background:var(--bad);border-color:var(--bad);color:#fff}
.badge{display:inline-block;border-radius:10px;padding:0 8px;font-size:12px;font-weight:600;white-space:nowrap}
.badge.anomaly{background:var(--anombg);color:var(--anom)}
.badge.won{background:var(--winbg);color:var(--win)}
.badge.cropped{background:#ddf4ff;color:#0550ae}
.badge.reason{background:#ddf4ff;color:#0550ae}
.badge.none{background:#eaeef2;color:#424a53}
.badge.wrong{background:var(--badbg);color:var(--bad)}
.strip{display:flex;gap:8px;overflow-x:auto;padding-top:8px}
figure{margin:0;padding:3px;border:2px solid transparent;border-radius:8px;width:min-content;flex:none}
figure.winner{border-color:var(--win);background:var(--winbg)}
figure a.open{position:relative;display:block}
figure img{display:block;height:180px;width:auto;max-width:none;border-radius:4px;background:#d0d7de}
figure .tag{position:absolute;left:5px;top:5px;background:var(--win);color:#fff;font-size:11px;font-weight:700;
letter-spacing:.04em;padding:1px 6px;border-radius:4px;text-transform:uppercase}
figcaption{font-size:12px;color:var(--muted);padding-top:4px;min-width:110px}
figcaption .stage{color:var(--ink);font-weight:700}
figure.winner figcaption .stage{color:var(--win)}
.name{display:block;color:var(--ink);font-size:11px;overflow-wrap:anywhere}
.unreadable{display:block;color:var(--bad);font-weight:600}
.why{margin:6px 0 0;font-size:12px;color:var(--muted)}
.why .name{display:inline}
input.note{width:100%;margin-top:8px;font:inherit;border:1px solid var(--bad);border-radius:6px;padding:4px 8px}
.empty{color:var(--muted);font-style:italic}
table.stats{border-collapse:collapse;background:var(--card);border:1px solid var(--line);margin:8px 0 18px}
table.stats th,table.stats td{padding:5px 12px;border-bottom:1px solid var(--line);text-align:right}
table.stats th:first-child,table.stats td:first-child{text-align:left}
table.stats tr.total td{font-weight:700}
.chart text{font:12px system-ui,sans-serif;fill:#1f2328}
.chart .axis{fill:#656d76}
.chart .value{paint-order:stroke;stroke:#f4f3ef;stroke-width:3px}
.lead{max-width:62em;color:#30363d}
.note-box{background:var(--badbg);border:1px solid var(--bad);border-radius:8px;padding:6px 12px;max-width:62em}
""".strip()

JS = """
(() => {
  "use strict";
  const store = (() => { try { return window.localStorage; } catch (e) { return null; } })();
  const KEY = "catalog-review-marks:" + (document.documentElement.dataset.site || "");
  const WHO = "catalog-review-curator";
  const get = (k) => { try { return store ? store.getItem(k) : null; } catch (e) { return null; } };
  const put = (k, v) => { try { if (store) store.setItem(k, v); } catch (e) { /* full or private: kept for this tab */ } };
  const read = () => { try { return JSON.parse(get(KEY) || "{}") || {}; } catch (e) { return {}; } };
  let marks = read();
  const save = () => put(KEY, JSON.stringify(marks));
  const keyOf = (c) => c.dataset.project + "\\n" + c.dataset.setId;
  const cards = Array.from(document.querySelectorAll("article.card"));
  const decisions = cards.filter((c) => c.dataset.kind === "decision");
  const countEl = document.getElementById("marked-count");
  const download = document.getElementById("download");

  const paint = (c) => {
    const m = marks[keyOf(c)];
    c.classList.toggle("marked", Boolean(m));
    const button = c.querySelector("button.mark");
    button.setAttribute("aria-pressed", m ? "true" : "false");
    button.textContent = m ? "Marked wrong" : "Mark wrong";
    const note = c.querySelector("input.note");
    note.hidden = !m;
    if (m && document.activeElement !== note) note.value = m.note || "";
  };
  const count = () => {
    const n = Object.keys(marks).length;
    if (countEl) countEl.textContent = n + " marked wrong";
    if (download) download.disabled = n === 0;
  };
  for (const c of decisions) {
    const button = c.querySelector("button.mark");
    button.hidden = false;
    button.addEventListener("click", () => {
      const k = keyOf(c);
      if (marks[k]) delete marks[k];
      else marks[k] = {project: c.dataset.project, set_id: c.dataset.setId, mark: "wrong", note: "",
                       marked_at: new Date().toISOString()};
      save(); paint(c); count();
    });
    c.querySelector("input.note").addEventListener("input", (e) => {
      const m = marks[keyOf(c)];
      if (m) { m.note = e.target.value; save(); }
    });
    paint(c);
  }
  window.addEventListener("storage", (e) => {
    if (e.key === KEY) { marks = read(); decisions.forEach(paint); count(); }
  });

  const bar = document.getElementById("marks-bar");
  if (bar) {
    bar.hidden = false;
    const who = document.getElementById("curator");
    who.value = get(WHO) || "";
    who.addEventListener("input", () => put(WHO, who.value));
    download.addEventListener("click", () => {
      const by = who.value.trim() || null;
      const list = Object.keys(marks).sort().map((k) => {
        const m = marks[k];
        return {project: m.project, set_id: m.set_id, mark: m.mark || "wrong", note: m.note || null,
                marked_by: by, marked_at: m.marked_at || null};
      });
      const body = JSON.stringify({format: "%(format)s", version: %(version)d, marks: list}, null, 1) + "\\n";
      const a = document.createElement("a");
      a.href = URL.createObjectURL(new Blob([body], {type: "application/json"}));
      a.download = "%(file)s";
      document.body.appendChild(a);
      a.click();
      a.remove();
      setTimeout(() => URL.revokeObjectURL(a.href), 60000);
    });
    document.getElementById("forget").addEventListener("click", () => {
      const n = Object.keys(marks).length;
      if (n && window.confirm("Forget the " + n + " marks kept in this browser? Download them first if they are not imported.")) {
        marks = {}; save(); decisions.forEach(paint); count();
      }
    });
    count();
  }

  const filter = document.getElementById("filter");
  const shown = document.getElementById("shown");
  if (filter && cards.length) {
    filter.hidden = false;
    shown.hidden = false;
    const words = new Map(cards.map((c) => [c, [c.dataset.project || "", c.dataset.setId || "",
      ...Array.from(c.querySelectorAll(".set-id, .name, .dir, .badge"), (el) => el.textContent)].join(" ").toLowerCase()]));
    const stages = (c, role) => Array.from(c.querySelectorAll('figure[data-role="' + role + '"]'),
                                           (f) => parseFloat(f.dataset.stage));
    // "2<3": stage 2 won although a stage 3 was in its group; "3>2": stage 3 won over a stage 2;
    // either number may be left out ("<" alone: every anomaly).
    const STAGES = /^(\\d+(?:\\.\\d+)?)?([<>])(\\d+(?:\\.\\d+)?)?$/;
    const matches = (c, term) => {
      const p = STAGES.exec(term);
      if (!p) return words.get(c).includes(term);
      const won = stages(c, "winner");
      if (won.length !== 1 || (p[1] !== undefined && won[0] !== parseFloat(p[1]))) return false;
      return stages(c, "loser").some((s) => (p[2] === "<" ? s > won[0] : s < won[0])
                                            && (p[3] === undefined || s === parseFloat(p[3])));
    };
    const apply = () => {
      const terms = filter.value.toLowerCase().split(/\\s+/).filter(Boolean);
      let n = 0;
      for (const c of cards) {
        const keep = terms.every((t) => matches(c, t));
        c.hidden = !keep;
        n += keep ? 1 : 0;
      }
      shown.textContent = terms.length ? n + " of " + cards.length + " cards" : cards.length + " cards";
    };
    filter.addEventListener("input", apply);
    apply();
  }
})();
""".strip() % {"format": FILE_FORMAT, "version": FILE_VERSION, "file": FILE_NAME}

# Only this page's own style and script run; images load from the disk (or
# are inline data); nothing else may be fetched, posted or framed.
CSP = (f"default-src 'none'; img-src 'self' file: data:; style-src {_hash(CSS)}; script-src {_hash(JS)}; "
       "base-uri 'none'; form-action 'none'")


class _Page:
    """The HTML of every page; knows nothing of files."""

    def __init__(self, site: str):
        self.site = site

    def _document(self, title: str, top: str, body: str) -> str:
        return (
            '<!DOCTYPE html>\n<html lang="en" data-site="' + _e(self.site) + '"><head><meta charset="utf-8">'
            f'<meta http-equiv="Content-Security-Policy" content="{_e(CSP)}">'
            '<meta name="referrer" content="no-referrer">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            '<link rel="icon" href="data:,">'
            f"<title>{_e(title)}</title><style>{CSS}</style></head>\n<body>"
            f'<header class="top">{top}</header>\n{body}\n<script>{JS}</script></body></html>\n'
        )

    @staticmethod
    def _marks_bar() -> str:
        return ('<span id="marks-bar" hidden><span id="marked-count" class="muted"></span> '
                '<input id="curator" type="text" placeholder="your name" aria-label="your name, saved with marks"> '
                f'<button type="button" id="download">Download {FILE_NAME}</button> '
                '<button type="button" id="forget">Forget marks</button></span>')

    # ------------------------------------------------------------ a project page

    def project_page(self, info: ProjectPages, k: int, cards: list[Card], links: _Links, marked: dict) -> str:
        title = f"{info.name}: page {k} of {info.pages}"
        top = (f'<a class="home" href="../index.html">catalog review</a><span class="where">{_e(info.name)}</span>'
               f'<span class="muted">page {k} of {info.pages}</span>'
               '<input id="filter" type="search" hidden placeholder="filter: set id, file name, 1&lt;2 …" '
               'aria-label="filter the cards on this page">'
               '<span id="shown" class="muted" hidden></span><span class="spacer"></span>' + self._marks_bar())
        body = ["<main>", self._sections_nav(info, k), self._pages_nav(info, k), '<div class="grid">']
        section = None
        for card in cards:
            if card.section != section:
                section = card.section
                first = info.first_page.get(section) == k
                anchor = f' id="{section}"' if first else ""
                body.append(f'<h2 class="section"{anchor} data-section="{section}">'
                            f"{_e(SECTION_TITLES[section])}{'' if first else ' (continued)'}</h2>")
            body.append(self._card(info, card, links, marked))
        if not cards:
            body.append('<p class="empty">Nothing to review in this project.</p>')
        body += ["</div>", self._pages_nav(info, k), "</main>"]
        return self._document(title, top, "\n".join(body))

    @staticmethod
    def _sections_nav(info: ProjectPages, k: int) -> str:
        parts = []
        for section, n in info.counts.items():
            label = f"{SECTION_LABELS[section].capitalize()} ({n})"
            if n:
                page = info.first_page[section]
                href = ("" if page == k else f"page-{page}.html") + f"#{section}"
                parts.append(f'<a href="{href}">{_e(label)}</a>')
            else:
                parts.append(f"<span>{_e(label)}</span>")
        return '<nav class="sections">' + " ".join(parts) + "</nav>"

    @staticmethod
    def _pages_nav(info: ProjectPages, k: int) -> str:
        if info.pages == 1:
            return ""
        shown = sorted({1, info.pages, *range(max(1, k - 3), min(info.pages, k + 3) + 1)})
        parts = [f'<a href="page-{k - 1}.html" rel="prev">‹ previous</a>' if k > 1 else ""]
        last = 0
        for n in shown:
            if n > last + 1:
                parts.append("<span>…</span>")
            parts.append(f'<span class="current">{n}</span>' if n == k else f'<a href="page-{n}.html">{n}</a>')
            last = n
        parts.append(f'<a href="page-{k + 1}.html" rel="next">next ›</a>' if k < info.pages else "")
        return '<nav class="pages">' + " ".join(p for p in parts if p) + "</nav>"

    def _card(self, info: ProjectPages, card: Card, links: _Links, marked: dict) -> str:
        if card.section == "orphans":
            return self._orphan(info, card, links)
        decision = card.section in ("anomalies", "decisions")
        kind = "decision" if decision else "skipped"
        classes = ["card", kind] + (["anomaly"] if card.section == "anomalies" else [])
        stored = marked.get((info.name, card.set_id)) if decision else None
        if stored:
            classes.append("stored-mark")
        winner = next((p for p in card.pictures if p.role == "winner"), None)
        attrs = [f'class="{" ".join(classes)}"', f'id="{_e(card.set_id)}"', f'data-kind="{kind}"',
                 f'data-project="{_e(info.name)}"', f'data-set-id="{_e(card.set_id)}"',
                 f'data-anomaly="{1 if card.section == "anomalies" else 0}"']
        if stored:
            attrs.append('data-marked="1"')
        head = [f'<span class="set-id">{_e(card.set_id)}</span>']
        if card.when is not None:
            head.append(f'<time datetime="{_e(_when(card.when))}">{_e(_when(card.when)[:19].replace("T", " "))}'
                        "</time>")
        if card.dir:
            head.append(f'<span class="dir">{_e(card.dir)}/</span>')
        if card.section == "anomalies" and winner is not None:
            higher = sorted({p.stage for p in card.pictures
                             if p.role == "loser" and p.stage is not None and p.stage > (winner.stage or 0)})
            head.append(f'<span class="badge anomaly">stage {format_stage(winner.stage)} beat '
                        f'{", ".join(format_stage(s) for s in higher)}</span>')
        elif winner is not None:
            head.append(f'<span class="badge won">stage {format_stage(winner.stage)} won</span>')
        else:
            head.append('<span class="badge none">no winner</span>')
        if stored:
            mark, note, by = stored
            text_ = f"marked {mark} in the catalogue" + (f" by {by}" if by else "") + (f": {note}" if note else "")
            head.append(f'<span class="badge wrong">{_e(text_)}</span>')
        if decision:
            head.append('<button type="button" class="mark" aria-pressed="false" hidden>Mark wrong</button>')
        pictures = "".join(self._figure(p, links, card.winner if p.role == "winner" else None) for p in card.pictures)
        note = ('<input class="note" type="text" maxlength="500" hidden placeholder="why is it wrong? (optional)" '
                'aria-label="why this decision is wrong">') if decision else ""
        return (f"<article {' '.join(attrs)}><div class=\"head\">{''.join(head)}</div>"
                f'<div class="strip">{pictures}</div>{note}</article>')

    def _orphan(self, info: ProjectPages, card: Card, links: _Links) -> str:
        pic = card.pictures[0]
        reason = card.reason or ""
        why = _e(ORPHAN_REASONS.get(reason, reason))
        paths = []
        for path in card.sandbox_paths:
            href = links.original("sandbox", path)
            name = f'<span class="name">{_e(path)}</span>'
            paths.append(f'<a href="{_e(href)}" target="_blank" rel="noopener">{name}</a>' if href else name)
        head = [f'<span class="set-id">{_e(pic.rel_path)}</span>', f'<span class="badge reason">{_e(reason)}</span>']
        return (f'<article class="card orphan" data-kind="orphan" data-project="{_e(info.name)}" '
                f'data-orphan-reason="{_e(reason)}"><div class="head">{"".join(head)}</div>'
                f'<div class="strip">{self._figure(pic, links, None)}</div>'
                f'<p class="why">{why} {" ".join(paths)}</p></article>')

    @staticmethod
    def _figure(pic: Picture, links: _Links, winner: Optional[Winner]) -> str:
        tile = links.tile(pic)
        size = _tile_size(pic, tile, links.options.edge)
        dims = f' width="{size[0]}" height="{size[1]}"' if size else ""
        stage = format_stage(pic.stage)
        what = {"winner": "winner", "loser": "loser", "member": "group image", "final": "final image"}[pic.role]
        alt = f"{what}, stage {stage}" if stage else what
        # tile names are hex digests; stages are digits: nothing in them to escape
        img = f'<img src="{links.thumbs_href}{tile.name}"{dims} alt="{alt}" loading="lazy" decoding="async">'
        tag = '<span class="tag">winner</span>' if pic.role == "winner" else ""
        href = links.original(pic.base, pic.rel_path)
        opened = (f'<a class="open" href="{_e(href)}" target="_blank" rel="noopener" title="open the full image">'
                  f"{img}{tag}</a>") if href else img
        what_it_is = (f'<span class="stage">stage {stage}</span>' if stage else "") + \
            (f' <span class="label">{_e(pic.label)}</span>' if pic.label else "")
        size_ = f"{pic.width}×{pic.height}" if pic.width and pic.height else "size unknown"
        caption = [f"{what_it_is} · {size_}" if what_it_is else size_]
        if winner is not None and winner.cropped:
            final = (f"final copy {winner.final_width}×{winner.final_height}"
                     if winner.final_width and winner.final_height else "final copy differs in size")
            caption.append(f' <span class="badge cropped" title="{_e(final)}">cropped</span>')
        caption.append(f'<span class="name">{_breakable(pic.filename)}</span>')
        if tile.reason:
            caption.append(f'<span class="unreadable">unreadable: {_e(tile.reason)}</span>')
        attrs = f'class="{pic.role}" data-role="{pic.role}" data-path="{_e(pic.rel_path)}"'
        if stage:
            attrs += f' data-stage="{stage}"'
        return f"<figure {attrs}>{opened}<figcaption>{''.join(caption)}</figcaption></figure>"

    def retired(self, info: ProjectPages) -> str:
        body = (f'<main><p class="empty">This page is left from an earlier run; {_e(info.name)} now has '
                f'{info.pages} page{"s" if info.pages != 1 else ""}: <a href="page-1.html">go to page 1</a>.</p></main>')
        return self._document(f"{info.name}: page retired", '<a class="home" href="../index.html">catalog review</a>',
                              body)

    # ------------------------------------------------------------ index.html

    def index(self, projects: list[ProjectPages], counts: dict, missing: list[Project], marked: dict) -> str:
        top = ('<span class="home">catalog review</span>'
               f'<span class="muted">{len(projects)} project{"s" if len(projects) != 1 else ""}</span>'
               '<span class="spacer"></span>' + self._marks_bar())
        stored: dict[str, int] = {}
        for project, _ in marked:
            stored[project] = stored.get(project, 0) + 1
        rows = []
        columns = ("sandbox_images", "final_images", "groups", "decisions", "anomalies")
        tail = ("orphans", "skipped", "kept_twice")
        total = dict.fromkeys(columns + tail, 0)
        for info in projects:
            c = counts.get(info.name)
            if c is None:
                continue
            for key in total:
                total[key] += c[key]
            anomalies = (f'<a href="{_e(info.slug)}/page-{info.first_page["anomalies"]}.html#anomalies">'
                         f'{c["anomalies"]}</a>') if "anomalies" in info.first_page else str(c["anomalies"])
            cells = [f'<a href="{_e(info.slug)}/page-1.html">{_e(info.name)}</a>']
            cells += [str(c[k]) for k in columns[:-1]] + [anomalies, f"{100 * c['anomaly_rate']:.1f}%"]
            cells += [str(c[k]) for k in tail] + [str(stored.get(info.name, 0)), str(info.pages)]
            rows.append("<tr>" + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
        rate = total["anomalies"] / total["decisions"] if total["decisions"] else 0.0
        cells = ["all projects"] + [str(total[k]) for k in columns] + [f"{100 * rate:.1f}%"]
        cells += [str(total[k]) for k in tail] + [str(sum(stored.values())), ""]
        rows.append('<tr class="total">' + "".join(f"<td>{cell}</td>" for cell in cells) + "</tr>")
        header = ("project", "sandbox images", "final images", "groups", "decisions", "anomalies", "anomaly rate",
                  "orphans", "skipped", "kept twice", "marked wrong", "pages")
        table = ('<table class="stats"><thead><tr>' + "".join(f"<th>{h}</th>" for h in header) + "</tr></thead><tbody>"
                 + "".join(rows) + "</tbody></table>")
        body = ["<main>", "<h1>Decisions to review</h1>",
                '<p class="lead">Each project\'s pages show every group as a row of its images in stage order, '
                "the winner outlined. <b>Anomalies</b> (a lower stage won) come first: they are the rarest and most "
                "valuable training rows, and a wrong one poisons training. Click an image to open the original. "
                "<b>Mark wrong</b> a decision you do not trust, then download "
                f"<code>{FILE_NAME}</code> and run <code>catalog marks import {FILE_NAME}</code>: "
                "<code>catalog export</code> then leaves it out.</p>",
                table, "<h2>Anomaly rate</h2>", _rate_chart(projects, counts, rate)]
        if missing:
            gone = ", ".join(f"{_e(p.name)} ({_e(p.sandbox_dir)})" for p in missing)
            body.append(f'<p class="note-box">Not shown, their sandbox folder is gone: {gone}.</p>')
        body.append("</main>")
        return self._document("catalog review", top, "\n".join(body))


def _tile_size(pic: Picture, tile: thumbs.Tile, edge: int) -> Optional[tuple[int, int]]:
    """The tile's pixel size, so the page keeps its layout while tiles load."""
    if tile.reason is not None:
        return thumbs.placeholder_size(edge)
    if not (pic.width and pic.height):
        return None
    scale = min(1.0, edge / max(pic.width, pic.height))
    return max(1, round(pic.width * scale)), max(1, round(pic.height * scale))


def _rate_chart(projects: list[ProjectPages], counts: dict, overall: float) -> str:
    """Anomaly rate per project as horizontal bars, inline SVG (no script, no fetch)."""
    rates = [(p.name, counts[p.name]["anomaly_rate"], counts[p.name]["decisions"]) for p in projects
             if p.name in counts]
    if not rates:
        return '<p class="empty">No project to chart.</p>'
    top = max([r for _, r, _ in rates] + [overall, 0.01])
    # the axis ends at a round rate, with gridlines at round rates
    scale, ticks = next((s, t) for s, t in ((0.02, 4), (0.05, 5), (0.1, 5), (0.2, 4), (0.3, 3), (0.5, 5), (1.0, 5))
                        if top <= s)
    label_w, bar_w, row_h = 190, 460, 24
    height = 30 + row_h * len(rates) + 24
    parts = [f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{label_w + bar_w + 70}" '
             f'height="{height}" role="img" aria-label="anomaly rate per project">']
    for k in range(ticks + 1):
        x = label_w + bar_w * k / ticks
        parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 22}" stroke="#dedbd2"/>'
                     f'<text class="axis" x="{x:.1f}" y="14" text-anchor="middle">{100 * scale * k / ticks:g}%</text>')
    x = label_w + bar_w * overall / scale
    parts.append(f'<line x1="{x:.1f}" y1="20" x2="{x:.1f}" y2="{height - 22}" stroke="#24292f" '
                 f'stroke-dasharray="4 3"/><text class="axis" x="{x:.1f}" y="{height - 6}" text-anchor="middle">'
                 f"all projects {100 * overall:.1f}%</text>")
    for k, (name, rate, decisions) in enumerate(rates):
        y = 24 + k * row_h
        w = bar_w * rate / scale
        label = name if len(name) <= 26 else name[:25] + "…"
        parts.append(f'<text x="{label_w - 8}" y="{y + 14}" text-anchor="end">{_e(label)}<title>{_e(name)}</title>'
                     f'</text><rect x="{label_w}" y="{y + 2}" width="{w:.1f}" height="16" rx="3" fill="#b35900"/>'
                     f'<text class="value" x="{label_w + w + 6:.1f}" y="{y + 14}">{100 * rate:.1f}% of {decisions}'
                     "</text>")
    parts.append("</svg>")
    return "".join(parts)
