"""`catalog review`: the offline contact sheet, checked in a real browser.

The sample workspace, plus a group whose file names are markup, an image cut
short, and drawn pictures in place of aiko's blank ones (same pixel sizes, so
the catalogue's truth is unchanged), is indexed and reviewed once per module.
Chromium comes from the operating system (Debian's `chromium`): Playwright's
own browser download needs the internet. Without it the browser tests fail,
saying how to install it; they never skip.
"""

from __future__ import annotations

import html
import json
import math
import os
import re
import shutil
import sqlite3
import struct
import zlib
from pathlib import Path
from types import SimpleNamespace
from urllib.parse import unquote, urlparse

import pytest
from conftest import Run, query
from PIL import Image, ImageDraw, ImageFont

from catalog.sample import png_bytes

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
REPO = Path(__file__).resolve().parent.parent
HOSTILE_DIR = "<script>alert(1)<"  # with the file `script>.png` in it: <script>alert(1)</script>.png
HOSTILE_WINNER = "20250901_120000_stage1_<img src=x onerror=alert(1)>.png"
HOSTILE_LOSER = "20250901_120130_stage2_\"><svg onload=alert(2)>&amp;.png"
CUT_SHORT = "tara/20250902_090100_stage2_upscaled.png"


# ---------------------------------------------------------------- the workspace


def draw_picture(path: Path, stage: float, seed: str) -> None:
    """Overwrite a PNG with a drawn portrait of the same pixel size: a
    background per group, a figure that gains detail with the stage, and the
    stage written on it. Drawn at 1/8 scale and enlarged, so it costs little."""
    with Image.open(path) as im:
        w, h = im.size
    sw, sh = max(16, w // 8), max(16, h // 8)
    rnd = zlib.crc32(seed.encode())
    hue = (rnd % 360) / 360
    top, bottom = _hsv(hue, 0.35, 0.95), _hsv(hue, 0.55, 0.55)
    im = Image.new("RGB", (sw, sh))
    draw = ImageDraw.Draw(im)
    for y in range(sh):
        t = y / sh
        draw.line([(0, y), (sw, y)], fill=tuple(int(a + (b - a) * t) for a, b in zip(top, bottom)))
    cx, r = sw // 2, sw // 6
    skin = (236, 200, 170) if stage != 1.5 else (226, 186, 150)
    cloth = _hsv((hue + 0.5) % 1, 0.6, 0.6)
    draw.rounded_rectangle((cx - 2.2 * r, sh * 0.52, cx + 2.2 * r, sh * 1.05), radius=r, fill=cloth)
    draw.ellipse((cx - r * 0.55, sh * 0.38, cx + r * 0.55, sh * 0.56), fill=skin)
    draw.ellipse((cx - r, sh * 0.2, cx + r, sh * 0.2 + 2.4 * r), fill=skin)
    draw.pieslice((cx - 1.15 * r, sh * 0.16, cx + 1.15 * r, sh * 0.16 + 2.2 * r), 180, 360, fill=(70, 45, 30))
    if stage >= 1.5:
        for dx in (-0.4, 0.4):
            draw.ellipse((cx + dx * r - 2, sh * 0.2 + r - 2, cx + dx * r + 2, sh * 0.2 + r + 2), fill=(40, 40, 60))
    if stage >= 2:
        draw.arc((cx - 0.4 * r, sh * 0.2 + 1.2 * r, cx + 0.4 * r, sh * 0.2 + 1.7 * r), 20, 160, fill=(150, 60, 60))
    if stage >= 3:
        draw.ellipse((cx - 1.9 * r, sh * 0.1, cx + 1.9 * r, sh * 0.1 + 3.2 * r), outline=(255, 250, 210), width=2)
    font = ImageFont.load_default(size=max(10, sw // 8))
    draw.text((sw // 2, sh - 4), f"stage {stage:g}", fill=(255, 255, 255), font=font, anchor="mb",
              stroke_width=1, stroke_fill=(0, 0, 0))
    im.quantize(colors=64).resize((w, h), Image.Resampling.NEAREST).save(path, "PNG", compress_level=1)


def _hsv(h: float, s: float, v: float) -> tuple[int, int, int]:
    import colorsys

    return tuple(int(255 * c) for c in colorsys.hsv_to_rgb(h, s, v))  # type: ignore[return-value]


def cut_short(path: Path) -> None:
    """A PNG whose header is whole (so it is catalogued with its size) but
    whose pixel data stops halfway: a copy that was interrupted."""
    data = png_bytes(1664, 2432)
    idat = data.index(b"IDAT") - 4
    length = struct.unpack(">I", data[idat:idat + 4])[0]
    path.write_bytes(data[:idat + 8 + length // 2])


def build_workspace(root: Path) -> None:
    """The sample plus what a review must survive (see the module docstring)."""
    hostile_sandbox = root / "sandbox" / "tattersail" / HOSTILE_DIR
    hostile_final = root / "tattersail" / HOSTILE_DIR
    hostile_sandbox.mkdir()
    hostile_final.mkdir()
    # An anomaly whose names are markup; its winner copied to the final folder.
    (hostile_sandbox / HOSTILE_WINNER).write_bytes(png_bytes(832, 1216))
    (hostile_sandbox / HOSTILE_LOSER).write_bytes(png_bytes(1664, 2432))
    shutil.copy(hostile_sandbox / HOSTILE_WINNER, hostile_final / HOSTILE_WINNER)
    # <script>alert(1)</script>.png: no parsable name, picked anyway, so an orphan (ungrouped).
    (hostile_sandbox / "script>.png").write_bytes(png_bytes(640, 640))
    shutil.copy(hostile_sandbox / "script>.png", hostile_final / "script>.png")
    # An anomaly with a loser cut short, after every other tara image.
    tara = root / "sandbox" / "tattersail" / "tara"
    (tara / "20250902_090000_stage1_generated.png").write_bytes(png_bytes(832, 1216))
    cut_short(root / "sandbox" / "tattersail" / CUT_SHORT)
    (tara / "20250902_090200_stage3_enhanced.png").write_bytes(png_bytes(1664, 2432))
    shutil.copy(tara / "20250902_090000_stage1_generated.png", root / "tattersail" / "tara")


def draw_aiko(root: Path, db: Path) -> None:
    """Pictures worth looking at in aiko, the project of the screenshot: one
    scene per group (so a group's stages look alike), drawn over the blank
    images of its groups and orphans."""
    for set_id, path, stage in query(db, """SELECT g.set_id, i.rel_path, i.stage FROM "groups" g
                                            JOIN group_members gm ON gm.group_id = g.group_id
                                            JOIN images i ON i.id = gm.image_id WHERE g.project = 'aiko'"""):
        draw_picture(root / "sandbox" / "aiko" / path, stage, set_id)
    for (path,) in query(db, "SELECT final_path FROM orphans WHERE project = 'aiko'"):
        draw_picture(root / "aiko" / path, 2, path)


@pytest.fixture(scope="module")
def site(sample_master, tmp_path_factory) -> SimpleNamespace:
    """The workspace indexed and reviewed: root, db, out (the site) and run."""
    base = tmp_path_factory.mktemp("review")
    root = base / "workspace"
    shutil.copytree(sample_master[0], root, symlinks=True)
    build_workspace(root)
    run = Run(base / "catalog.db")
    assert run("index", root).exit_code == 0
    draw_aiko(root, run.db)
    result = run("index", root)  # the drawn files are read again; the truth is unchanged
    assert result.exit_code == 0, result.output
    groups = len(sample_master[1].projects["aiko"].groups)
    assert f"{groups} groups" in next(line for line in result.stdout.splitlines() if line.startswith("aiko:"))
    out = base / "site"
    result = run("review", out)
    assert result.exit_code == 0, result.output
    return SimpleNamespace(root=root, db=run.db, out=out, run=run, output=result.stdout)


def copy_db(db: Path, target: Path) -> Path:
    src, dst = sqlite3.connect(db), sqlite3.connect(target)
    src.backup(dst)
    src.close()
    dst.close()
    return target


# ---------------------------------------------------------------- the browser


@pytest.fixture(scope="module")
def browser():
    if not os.path.exists(CHROMIUM):
        pytest.fail(f"the browser tests need Chromium at {CHROMIUM}: run `apt-get install chromium` "
                    "(`make test` installs it when run as root)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        # A new browser has a fresh, temporary profile; each test opens its own context.
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


class Watched:
    """A browser context and page, with everything that would be a failure
    recorded: console errors, uncaught exceptions, dialogs (alert), and any
    request that is not for a local file."""

    def __init__(self, browser, **context_options):
        self.context = browser.new_context(viewport={"width": 1400, "height": 900}, **context_options)
        self.errors: list[str] = []
        self.dialogs: list[str] = []
        self.requests: list[str] = []
        self.context.on("request", lambda r: self.requests.append(r.url))
        # Anything not on the disk is refused before it leaves, and recorded above.
        self.context.route(re.compile(r"^(?!file:|data:|blob:)"), lambda route: route.abort())
        self.page = self.context.new_page()
        self.page.on("console", lambda m: self.errors.append(m.text) if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(str(e)))
        self.page.on("dialog", self._dialog)

    def _dialog(self, dialog) -> None:
        self.dialogs.append(dialog.message)
        dialog.dismiss()

    def open(self, path: Path) -> None:
        self.page.goto(path.as_uri())
        self.page.wait_for_load_state("load")

    def broken_images(self) -> list[str]:
        """Load every image (lazy ones too) and return those that did not decode."""
        return self.page.evaluate("""async () => {
            const images = Array.from(document.images);
            for (const img of images) img.loading = "eager";
            await Promise.all(images.map((img) => img.decode().catch(() => null)));
            return images.filter((img) => !(img.complete && img.naturalWidth > 0)).map((img) => img.getAttribute("src"));
        }""")

    def clean(self) -> None:
        assert self.errors == [], self.errors
        assert self.dialogs == [], self.dialogs
        assert [u for u in self.requests if not u.startswith(("file://", "data:", "blob:"))] == []

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser):
    w = Watched(browser)
    yield w
    w.close()


def pages_of(out: Path, slug: str) -> list[Path]:
    return sorted((out / slug).glob("page-*.html"), key=lambda p: int(p.stem.split("-")[1]))


def cards_in_browser(w: Watched, out: Path, slug: str) -> list[dict]:
    """Every card of a project, page after page, with its images: what the hooks say."""
    found = []
    for page in pages_of(out, slug):
        w.open(page)
        found += w.page.evaluate("""() => Array.from(document.querySelectorAll("article.card"), (c) => ({
            kind: c.dataset.kind, project: c.dataset.project, set_id: c.dataset.setId || null,
            anomaly: c.dataset.anomaly || null, reason: c.dataset.orphanReason || null,
            images: Array.from(c.querySelectorAll("figure"), (f) => ({
                role: f.dataset.role, stage: f.dataset.stage || null, path: f.dataset.path,
                href: f.querySelector("a.open") ? f.querySelector("a.open").href : null,
                name: f.querySelector(".name").textContent})),
        }))""")
        assert w.broken_images() == []
    return found


def file_path(url: str) -> str:
    return unquote(urlparse(url).path)


# ---------------------------------------------------------------- in the browser


def test_every_card_and_thumbnail_agrees_with_the_catalogue(site, watched, tmp_path):
    """Per project: one card per anomaly, decision, skipped group and orphan
    (as the views count them), every thumbnail loads, and each card's winner
    is the image `catalog export` writes as chosen_path."""
    exported = site.run("export", "-", "--format", "jsonl")
    assert exported.exit_code == 0, exported.output
    chosen = {(r["project"], r["set_id"]): r["chosen_path"] for r in map(json.loads, exported.stdout.splitlines())}
    seen = set()
    for (project,) in query(site.db, "SELECT name FROM projects ORDER BY name"):
        cards = cards_in_browser(watched, site.out, project)
        decisions = [c for c in cards if c["kind"] == "decision"]
        assert sum(c["anomaly"] == "1" for c in decisions) == \
            query(site.db, "SELECT count(*) FROM anomalies WHERE project = ?", project)[0][0]
        assert len(decisions) == query(site.db, "SELECT count(*) FROM decisions WHERE project = ?", project)[0][0]
        assert sum(c["kind"] == "skipped" for c in cards) == \
            query(site.db, "SELECT count(*) FROM skipped_groups WHERE project = ?", project)[0][0]
        orphans = sorted(c["reason"] for c in cards if c["kind"] == "orphan")
        assert orphans == [r for (r,) in query(site.db, "SELECT reason FROM orphans WHERE project = ? ORDER BY reason",
                                               project)]
        # anomalies first, then the other decisions
        flags = [c["anomaly"] for c in decisions]
        assert flags == sorted(flags, reverse=True)
        for card in decisions:
            winners = [i for i in card["images"] if i["role"] == "winner"]
            assert len(winners) == 1
            assert file_path(winners[0]["href"]) == chosen[(project, card["set_id"])]
            stages = [float(i["stage"]) for i in card["images"]]
            assert stages == sorted(stages)  # stage order
            assert (card["anomaly"] == "1") == (float(winners[0]["stage"]) < max(stages))
            seen.add((project, card["set_id"]))
    assert seen == set(chosen)
    watched.clean()

    # The screenshot a curator sees first, kept with the test run (docs/review.png
    # in the README is one of these; a test never writes into the checkout).
    watched.open(site.out / "aiko" / "page-1.html")
    assert watched.broken_images() == []
    shot = tmp_path / "review.png"
    watched.page.screenshot(path=str(shot))
    assert shot.stat().st_size > 20_000
    watched.clean()


def test_the_index_links_every_project_and_charts_its_rate(site, watched):
    watched.open(site.out / "index.html")
    rows = watched.page.evaluate("""() => Array.from(document.querySelectorAll("table.stats tbody tr:not(.total)"),
        (tr) => [tr.cells[0].textContent, tr.cells[0].querySelector("a").href, tr.cells[5].textContent,
                 tr.cells[6].textContent])""")
    expected = query(site.db, "SELECT project, count(*), sum(is_anomaly) FROM decisions GROUP BY project ORDER BY 1")
    assert [r[0] for r in rows] == [p for p, _, _ in expected]
    for (project, href, anomalies, rate), (_, decisions, n) in zip(rows, expected):
        assert Path(file_path(href)) == site.out / project / "page-1.html"
        assert int(anomalies) == n and rate == f"{100 * n / decisions:.1f}%"
    bars = watched.page.locator("svg.chart rect")
    assert bars.count() == len(expected)
    widths = [float(bars.nth(k).get_attribute("width")) for k in range(len(expected))]
    rates = [n / d for _, d, n in expected]
    assert sorted(range(len(widths)), key=widths.__getitem__) == sorted(range(len(rates)), key=rates.__getitem__)
    watched.clean()


def test_the_filter_narrows_the_cards(site, watched):
    watched.open(site.out / "aiko" / "page-1.html")
    page = watched.page
    all_cards = page.locator("article.card").count()
    visible = page.locator("article.card:visible")
    assert visible.count() == all_cards
    page.fill("#filter", "2<3")
    expected = query(site.db, """SELECT count(*) FROM decisions d WHERE project = 'aiko' AND chosen_stage = 2
                                 AND EXISTS (SELECT 1 FROM losers l WHERE l.group_id = d.group_id AND l.stage = 3)""")
    assert 0 < visible.count() == expected[0][0] < all_cards
    for k in range(visible.count()):
        card = visible.nth(k)
        assert card.locator('figure[data-role="winner"]').get_attribute("data-stage") == "2"
        assert card.locator('figure[data-role="loser"][data-stage="3"]').count() >= 1
    set_id = query(site.db, "SELECT set_id FROM decisions WHERE project = 'aiko' ORDER BY set_id LIMIT 1")[0][0]
    page.fill("#filter", set_id)
    assert visible.count() == 1 and visible.first.get_attribute("data-set-id") == set_id
    page.fill("#filter", "<")  # every anomaly
    assert visible.count() == query(site.db, "SELECT count(*) FROM anomalies WHERE project = 'aiko'")[0][0]
    page.fill("#filter", "")
    assert visible.count() == all_cards
    watched.clean()


def test_hostile_names_render_as_text_and_run_no_script(site, watched):
    html = (site.out / "tattersail" / "page-1.html").read_text(encoding="utf-8")
    assert "<img src=x" not in html and "<svg onload" not in html and "<script>alert" not in html
    watched.open(site.out / "tattersail" / "page-1.html")
    page = watched.page
    assert page.evaluate("document.scripts.length") == 1  # the page's own
    assert page.locator("img[src=x], svg[onload], [onerror]").count() == 0
    card = page.locator("article.card", has=page.locator(".name", has_text="onerror"))
    assert card.count() == 1 and card.get_attribute("data-anomaly") == "1"
    names = card.locator(".name").all_text_contents()
    assert names == [HOSTILE_WINNER, HOSTILE_LOSER]
    assert card.locator(".dir").text_content() == HOSTILE_DIR + "/"
    winner = card.locator('figure[data-role="winner"] a.open').get_attribute("href")
    assert "%3C" in winner and "<" not in winner
    orphan = page.locator('article[data-orphan-reason="ungrouped"]', has=page.get_by_text("script>.png"))
    assert orphan.locator(".set-id").text_content() == "<script>alert(1)</script>.png"
    assert watched.broken_images() == []
    watched.clean()  # no alert() dialog, no console error (a blocked inline script would log one)


def test_an_unreadable_image_is_a_placeholder_tile_that_says_why(site, watched):
    watched.open(site.out / "tattersail" / "page-1.html")
    figure = watched.page.locator(f'figure[data-path="{CUT_SHORT}"]')
    assert "unreadable: " in figure.locator(".unreadable").text_content()
    assert figure.locator("img").get_attribute("src").endswith(".unreadable.png")
    assert figure.locator("img").evaluate("(img) => img.decode().then(() => img.naturalWidth)") > 0
    watched.clean()


def test_marks_round_trip(site, browser, tmp_path):
    """Two cards marked in the browser, downloaded, imported: export leaves
    exactly those two out and says so; --include-marked keeps them."""
    run = Run(copy_db(site.db, tmp_path / "catalog.db"))
    w = Watched(browser, accept_downloads=True)
    try:
        page_1 = site.out / "aiko" / "page-1.html"
        w.open(page_1)
        page = w.page
        marked = [page.locator('article[data-kind="decision"][data-anomaly="1"]').first,
                  page.locator('article[data-kind="decision"][data-anomaly="0"]').first]
        wanted = {("aiko", card.get_attribute("data-set-id")) for card in marked}
        for card in marked:
            card.locator("button.mark").click()
        marked[0].locator("input.note").fill("stage 2 has a missing belly button")
        assert page.locator("article.card.marked").count() == 2
        w.open(page_1)  # kept by the browser across page loads
        # Under load the browser may hand the new page its stored marks a
        # moment after "load": wait for them to be painted (fails after 10 s).
        page.wait_for_function("document.querySelectorAll('article.card.marked').length >= 2", timeout=10_000)
        assert page.locator("article.card.marked").count() == 2
        assert page.locator("#marked-count").text_content() == "2 marked wrong"
        page.fill("#curator", "eleni")
        with page.expect_download() as download:
            page.click("#download")
        assert download.value.suggested_filename == "review-marks.json"
        saved = tmp_path / "review-marks.json"
        download.value.save_as(saved)
        w.clean()
    finally:
        w.close()

    data = json.loads(saved.read_text())
    assert {(m["project"], m["set_id"]) for m in data["marks"]} == wanted
    assert {m["marked_by"] for m in data["marks"]} == {"eleni"}
    assert "stage 2 has a missing belly button" in {m["note"] for m in data["marks"]}

    result = run("marks", "import", saved)
    assert result.exit_code == 0, result.output
    assert "2 new" in result.stdout
    full = run("export", tmp_path / "all.csv", "--include-marked")
    assert full.exit_code == 0, full.output
    result = run("export", tmp_path / "kept.csv")
    assert result.exit_code == 0, result.output
    rows_all = _rows(tmp_path / "all.csv")
    rows = _rows(tmp_path / "kept.csv")
    assert {(r["project"], r["set_id"]) for r in rows_all} - {(r["project"], r["set_id"]) for r in rows} == wanted
    assert len(rows) == len(rows_all) - 2
    assert "aiko:" in result.stdout and "left out 2 marked wrong" in result.stdout
    assert "left out 2 decisions marked wrong (--include-marked keeps them)" in result.stdout
    anomalies = run("export-anomalies", tmp_path / "anomalies.csv")
    assert "left out 1 decision marked wrong" in anomalies.stdout
    listed = run("marks", "list", "--format", "json")
    assert {(m["project"], m["set_id"], m["marked_by"]) for m in json.loads(listed.stdout)} == \
        {(p, s, "eleni") for p, s in wanted}


def _rows(path: Path) -> list[dict]:
    import csv
    import io

    return list(csv.DictReader(io.StringIO(path.read_text(encoding="utf-8"), newline="")))


# ---------------------------------------------------------------- the site on disk


def cards_on_disk(page: Path) -> list[str]:
    return re.findall(r'<article class="[^"]*" (?:id="[^"]*" )?data-kind="(\w+)"', page.read_text(encoding="utf-8"))


def test_pages_are_safe_and_offline(site):
    for page in sorted(site.out.rglob("*.html")):
        text = page.read_text(encoding="utf-8")
        csp = re.search(r'<meta http-equiv="Content-Security-Policy" content="([^"]+)">', text)
        assert csp, page
        policy = html.unescape(csp.group(1))
        assert "default-src 'none'" in policy and "'unsafe-inline'" not in policy and "http" not in policy
        assert not re.search(r'(?:src|href)="(?:https?:)?//', text)
    assert not list(site.out.rglob("*.tmp"))


def site_copy(site, tmp_path) -> tuple[Run, Path]:
    """A private catalogue and site (thumbnails included) over the module's workspace."""
    out = tmp_path / "site"
    shutil.copytree(site.out, out)
    return Run(copy_db(site.db, tmp_path / "catalog.db")), out


def small_workspace(tmp_path: Path) -> tuple[Run, Path]:
    """One project, p, of four groups (stages 1, 2, 3) of small images that
    decode in no time; one anomaly. Indexed."""
    root = tmp_path / "workspace"
    sandbox, final = root / "sandbox" / "p", root / "p"
    sandbox.mkdir(parents=True)
    final.mkdir()
    for g in range(4):
        names = [f"20250801_{10 + g:02d}{k:02d}00_stage{k + 1}.png" for k in range(3)]
        for k, name in enumerate(names):
            Image.new("RGB", (96, 128), (60 * g, 80 * k, 120)).save(sandbox / name)
        shutil.copy(sandbox / names[2 if g else 0], final)
    run = Run(tmp_path / "catalog.db")
    assert run("index", root).exit_code == 0
    return run, root


def test_a_second_run_makes_no_thumbnail_and_removes_only_stale_ones(tmp_path):
    run, root = small_workspace(tmp_path)
    out = tmp_path / "site"
    first = run("review", out)
    assert first.exit_code == 0, first.output
    assert "p: 1 anomalies, 3 other decisions, 0 skipped groups, 0 orphans on 1 page" in first.stdout
    assert "thumbnails: 12 made, 0 kept, 0 removed" in first.stdout
    mine = [out / "notes.txt", out / "thumbs" / "p" / "keep-me.jpg", out / "thumbs" / "README"]
    for path in mine:
        path.write_text("the curator's own")
    again = run("review", out)
    assert "thumbnails: 0 made, 12 kept, 0 removed" in again.stdout
    # One image replaced: one new thumbnail, the old one gone; nothing else touched.
    Image.new("RGB", (96, 128), (1, 2, 3)).save(sorted((root / "sandbox" / "p").glob("*_stage2.png"))[1])
    assert run("index", root).exit_code == 0
    before = set(os.listdir(out / "thumbs" / "p"))
    third = run("review", out)
    assert "thumbnails: 1 made, 11 kept, 1 removed" in third.stdout
    after = set(os.listdir(out / "thumbs" / "p"))
    assert len(after - before) == 1 and len(before - after) == 1
    # A forgotten project's thumbnails go with the next whole run; its pages are left.
    assert run("forget", "p").exit_code == 0
    assert "thumbnails: 0 made, 0 kept, 12 removed" in run("review", out).stdout
    assert sorted(os.listdir(out / "thumbs" / "p")) == ["keep-me.jpg"] and (out / "p" / "page-1.html").is_file()
    assert all(p.read_text() == "the curator's own" for p in mine)


def test_pages_hold_at_most_per_page_cards(site, tmp_path):
    run, out = site_copy(site, tmp_path)
    assert run("review", out, "--per-page", "7", "-p", "aiko").exit_code == 0
    total = sum(query(run.db, sql, "aiko")[0][0] for sql in (
        "SELECT count(*) FROM decisions WHERE project = ?", "SELECT count(*) FROM skipped_groups WHERE project = ?",
        "SELECT count(*) FROM orphans WHERE project = ?"))
    pages = pages_of(out, "aiko")
    assert len(pages) == math.ceil(total / 7)
    assert [len(cards_on_disk(p)) for p in pages] == [7] * (len(pages) - 1) + [total - 7 * (len(pages) - 1)]
    assert cards_on_disk(pages[0])[0] == "decision"
    for k, page in enumerate(pages, start=1):
        text = page.read_text(encoding="utf-8")
        for link in re.findall(r'href="(page-\d+\.html)', text):
            assert (out / "aiko" / link).is_file()
        assert (f'href="page-{k + 1}.html" rel="next"' in text) == (k < len(pages))
    # Fewer pages next time: the extra ones are not deleted but point to page 1.
    assert run("review", out, "-p", "aiko").exit_code == 0
    assert len(cards_on_disk(out / "aiko" / "page-1.html")) == total
    for page in pages[1:]:
        assert cards_on_disk(page) == [] and 'href="page-1.html"' in page.read_text(encoding="utf-8")
    index = (out / "index.html").read_text(encoding="utf-8")
    assert 'href="aiko/page-1.html"' in index and 'href="mojo-1/page-1.html"' not in index


@pytest.mark.parametrize("what, kinds", [
    ("anomalies", {"decision"}), ("skipped", {"skipped"}), ("orphans", {"orphan"}),
    ("decisions", {"decision"}), ("all", {"decision", "skipped", "orphan"}),
])
def test_what_chooses_the_sections(site, tmp_path, what, kinds):
    run, out = site_copy(site, tmp_path)
    result = run("review", out, "--what", what, "-p", "mojo-1")
    assert result.exit_code == 0, result.output
    text = (out / "mojo-1" / "page-1.html").read_text(encoding="utf-8")
    assert set(cards_on_disk(out / "mojo-1" / "page-1.html")) == kinds
    anomalies = len(re.findall(r'data-anomaly="1"', text))
    assert anomalies == query(run.db, "SELECT count(*) FROM anomalies WHERE project = 'mojo-1'")[0][0] \
        or "decision" not in kinds
    if what == "anomalies":
        assert 'data-anomaly="0"' not in text


def test_links_are_relative_or_absolute(site, tmp_path):
    text = (site.out / "aiko" / "page-1.html").read_text(encoding="utf-8")
    href = re.search(r'<a class="open" href="([^"]+)"', text).group(1)
    assert not href.startswith(("/", "file:")) and (site.out / "aiko" / unquote(href)).resolve().is_file()
    run, out = site_copy(site, tmp_path)
    assert run("review", out, "--absolute", "-p", "aiko").exit_code == 0
    href = re.search(r'<a class="open" href="([^"]+)"', (out / "aiko" / "page-1.html").read_text()).group(1)
    assert href.startswith("file:///") and Path(file_path(href)).is_file()


def test_a_project_whose_sandbox_is_gone_is_left_out_with_a_note(site, tmp_path):
    run, out = site_copy(site, tmp_path)
    gone = str(tmp_path / "unplugged" / "mojo-1")  # as if its drive were not mounted
    con = sqlite3.connect(run.db)
    con.execute("UPDATE projects SET sandbox_dir = ? WHERE name = 'mojo-1'", (gone,))
    con.commit()
    con.close()
    result = run("review", out)
    assert result.exit_code == 0, result.output
    assert "left out mojo-1: its sandbox folder" in result.stderr
    assert "mojo-1:" not in result.stdout
    index = (out / "index.html").read_text(encoding="utf-8")
    assert "Not shown, their sandbox folder is gone: mojo-1" in index
    assert (out / "thumbs" / "mojo-1").is_dir()  # kept for when the drive is back


@pytest.mark.parametrize("make, message", [
    (lambda t: (t / "site").write_text("x"), "is a file"),
    (lambda t: ((t / "site").mkdir(), (t / "site" / "holiday.jpg").write_text("x")), "holds no review site"),
])
def test_out_dir_that_is_not_a_review_site_is_refused(site, tmp_path, make, message):
    make(tmp_path)
    before = sorted(p.name for p in tmp_path.rglob("*"))
    result = Run(copy_db(site.db, tmp_path / "catalog.db"))("review", tmp_path / "site")
    assert result.exit_code == 2, result.output
    assert message in result.stderr and "Traceback" not in result.output
    assert sorted(p.name for p in tmp_path.rglob("*") if not p.name.startswith("catalog.db")) == before


def test_out_dir_inside_a_project_is_refused(site, tmp_path):
    result = Run(copy_db(site.db, tmp_path / "catalog.db"))("review", site.root / "sandbox" / "aiko" / "review")
    assert result.exit_code == 2 and "inside project aiko" in result.stderr
    assert not (site.root / "sandbox" / "aiko" / "review").exists()


def test_an_unknown_project_is_an_error(site, tmp_path):
    result = Run(copy_db(site.db, tmp_path / "catalog.db"))("review", tmp_path / "site", "-p", "Aiko")
    assert result.exit_code == 2 and "did you mean 'aiko'?" in result.stderr
    assert not (tmp_path / "site").exists()


def test_other_thumbnail_settings_make_new_tiles(tmp_path):
    run, _ = small_workspace(tmp_path)
    out = tmp_path / "site"
    assert run("review", out).exit_code == 0
    result = run("review", out, "--thumb-format", "webp", "--thumb-size", "64", "-j", "1")
    assert result.exit_code == 0, result.output
    assert "thumbnails: 12 made, 0 kept, 12 removed" in result.stdout
    tiles = sorted((out / "thumbs" / "p").iterdir())
    assert len(tiles) == 12 and all(t.suffix == ".webp" for t in tiles)
    with Image.open(tiles[0]) as im:
        assert im.format == "WEBP" and im.size == (48, 64)
    assert ".webp" in (out / "p" / "page-1.html").read_text(encoding="utf-8")


# ---------------------------------------------------------------- thumbnails


def test_unreadable_originals_become_placeholders_that_keep_their_reason(tmp_path):
    from catalog import thumbs

    good = tmp_path / "good.png"
    Image.new("RGB", (900, 600), (200, 80, 40)).save(good)
    empty = tmp_path / "empty.png"
    empty.write_bytes(b"")
    cut = tmp_path / "cut.png"
    cut_short(cut)
    sources = {"a" * 32: str(good), "b" * 32: str(empty), "c" * 32: str(cut), "d" * 32: str(tmp_path / "gone.png")}
    folder = tmp_path / "thumbs" / "p"
    run = thumbs.make_tiles({folder: sources}, edge=120, fmt="jpeg", jobs=1)
    assert (run.made, run.kept, run.unreadable) == (4, 0, 3) and run.stale == {folder: set()}
    tiles = {stem: run.tiles[(str(folder), stem)] for stem in sources}
    assert tiles["a" * 32] == thumbs.Tile("a" * 32 + ".jpg")
    with Image.open(folder / tiles["a" * 32].name) as im:
        assert im.size == (120, 80)
    assert "empty or damaged" in tiles["b" * 32].reason
    assert "truncated" in tiles["c" * 32].reason
    assert "file not found" in tiles["d" * 32].reason
    for stem in ("b", "c", "d"):
        with Image.open(folder / tiles[stem * 32].name) as im:
            assert im.size == thumbs.placeholder_size(120)
    again = thumbs.make_tiles({folder: sources}, edge=120, fmt="jpeg", jobs=1)
    thumbs.remove_stale(again)
    assert (again.made, again.kept, again.removed) == (0, 4, 0)
    assert {stem: again.tiles[(str(folder), stem)] for stem in sources} == tiles  # reasons read back, not re-decoded
    # A file that was missing (an unmounted drive) is tried again once it is back; a damaged one is not.
    Image.new("RGB", (60, 90)).save(tmp_path / "gone.png")
    back = thumbs.make_tiles({folder: sources}, edge=120, fmt="jpeg", jobs=1)
    assert (back.made, back.kept, back.unreadable) == (1, 3, 2)
    assert back.tiles[(str(folder), "d" * 32)] == thumbs.Tile("d" * 32 + ".jpg")
    assert back.stale == {folder: {"d" * 32 + ".unreadable.png"}}
    thumbs.remove_stale(back)
    assert back.removed == 1 and sorted(os.listdir(folder)) == sorted(t.name for t in back.tiles.values())


def test_tile_names_change_with_the_file_and_the_settings():
    from catalog.thumbs import tile_stem

    base = tile_stem("/p/a.png", 10, 1, 384, "jpeg")
    assert len(base) == 32 and base == tile_stem("/p/a.png", 10, 1, 384, "jpeg")
    others = [tile_stem("/p/b.png", 10, 1, 384, "jpeg"), tile_stem("/p/a.png", 11, 1, 384, "jpeg"),
              tile_stem("/p/a.png", 10, 2, 384, "jpeg"), tile_stem("/p/a.png", 10, 1, 256, "jpeg"),
              tile_stem("/p/a.png", 10, 1, 384, "webp"), tile_stem("/p/a\udcff.png", 10, 1, 384, "jpeg")]
    assert len({base, *others}) == 7
