"""Finding projects: the three layouts, and PATHs where nothing is found."""

from conftest import query

from catalog.sample import png_bytes


def img(path, w=832, h=1216):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(png_bytes(w, h))


def tiny_project(sandbox, final):
    img(sandbox / "20250708_060558_stage1_generated.png")
    img(sandbox / "20250708_060711_stage2_upscaled.png", 1664, 2432)
    img(final / "20250708_060711_stage2_upscaled.png", 1664, 2432)


def projects(db):
    return query(db, "SELECT name FROM projects ORDER BY name")


def test_single_project_layout(tmp_path, run):
    root = tmp_path / "mojo-2"
    tiny_project(root / "sandbox" / "mojo-2", root / "mojo-2")
    assert run("index", root).exit_code == 0
    assert projects(run.db) == [("mojo-2",)]
    assert query(run.db, "SELECT count(*) FROM decisions")[0][0] == 1


def test_workspace_layout(tmp_path, run):
    for name in ("A", "B"):
        tiny_project(tmp_path / "sandbox" / name, tmp_path / name)
    assert run("index", tmp_path).exit_code == 0
    assert projects(run.db) == [("A",), ("B",)]


def test_final_suffix_layout_with_plain_and_raw(tmp_path, run):
    root = tmp_path / "training data"
    tiny_project(root / "X", root / "X_final")
    tiny_project(root / "Eleni_raw", root / "Eleni_final")
    (root / "unrelated").mkdir()
    (root / "lonely_final").mkdir()  # no sibling: ignored
    result = run("index", root)
    assert result.exit_code == 0, result.output
    assert projects(run.db) == [("Eleni",), ("X",)]
    assert query(run.db, "SELECT count(*) FROM decisions")[0][0] == 2


def test_explicit_project(tmp_path, run):
    tiny_project(tmp_path / "s", tmp_path / "f")
    result = run("index", "--project", "kiara", "--sandbox", tmp_path / "s", "--final", tmp_path / "f")
    assert result.exit_code == 0, result.output
    assert projects(run.db) == [("kiara",)]
    assert query(run.db, "SELECT count(*) FROM winners")[0][0] == 1


def test_nothing_found_names_the_layouts(tmp_path, run):
    (tmp_path / "photos").mkdir()
    result = run("index", tmp_path)
    assert result.exit_code == 2
    assert "no projects found" in result.stderr and "sandbox" in result.stderr and "_final" in result.stderr
    assert not run.db.exists()


def test_subfolders_kept_apart_and_mirrored_finals(tmp_path, run):
    sandbox, final = tmp_path / "sandbox" / "t", tmp_path / "t"
    # the same filename in two character folders; the final mirrors one of them
    for who in ("tara", "south"):
        img(sandbox / who / "20250708_060558_stage1_generated.png")
        img(sandbox / who / "20250708_060711_stage2_upscaled.png", 1664, 2432)
    img(final / "south" / "20250708_060711_stage2_upscaled.png", 1664, 2432)
    assert run("index", tmp_path).exit_code == 0
    assert query(run.db, "SELECT count(*) FROM groups")[0][0] == 2
    assert query(run.db, "SELECT path FROM winners") == [("south/20250708_060711_stage2_upscaled.png",)]
