"""The naming rule: which files are images, and what their names say."""

from datetime import datetime

import pytest

from catalog.names import format_name, format_stage, is_image, parse_name


@pytest.mark.parametrize("name, ts, stage, label", [
    ("20250708_060711_stage2_upscaled.png", datetime(2025, 7, 8, 6, 7, 11), 2.0, "upscaled"),
    ("20250708_060711_stage2.png", datetime(2025, 7, 8, 6, 7, 11), 2.0, None),
    ("20250905_215848_stage1.5_face_swapped.png", datetime(2025, 9, 5, 21, 58, 48), 1.5, "face_swapped"),
    ("20250708_060711_stage2_upscaled_cropped.jpg", datetime(2025, 7, 8, 6, 7, 11), 2.0, "upscaled_cropped"),
    ("20250708_060711_STAGE3_Enhanced.PNG", datetime(2025, 7, 8, 6, 7, 11), 3.0, "Enhanced"),
    ("20250708_060711_stage01.png", datetime(2025, 7, 8, 6, 7, 11), 1.0, None),
    ("20250708_060711_stage1.50.webp", datetime(2025, 7, 8, 6, 7, 11), 1.5, None),
])
def test_names_that_parse(name, ts, stage, label):
    assert parse_name(name) == (ts, stage, label)


@pytest.mark.parametrize("name, ts, stage", [
    ("IMG_0001.png", None, None),
    ("20250708_070000.png", datetime(2025, 7, 8, 7, 0, 0), None),
    ("20251399_250000_stage1.png", None, 1.0),   # impossible date: no time, stage kept
    ("stage2_20250708_060711.png", None, None),  # the time must come first
    ("", None, None),
])
def test_names_that_do_not_fully_parse(name, ts, stage):
    parsed = parse_name(name)
    assert (parsed.timestamp, parsed.stage) == (ts, stage)


@pytest.mark.parametrize("name, image", [
    ("a.png", True), ("a.JPG", True), ("a.jpeg", True), ("a.WebP", True),
    ("a.yaml", False), ("a.caption", False), ("20250705_215218.decision", False),
    (".DS_Store", False), (".png", False), ("a.png.txt", False), ("noext", False),
])
def test_which_files_are_images(name, image, tmp_path):
    assert is_image(name) is image
    # The walk inlines the same rule for speed: it must pick the same files.
    from catalog.scan import scan_images

    (tmp_path / name).write_bytes(b"x")
    assert [e.filename for e in scan_images(str(tmp_path))] == ([name] if image else [])


def test_format_name_reads_back():
    when = datetime(2025, 7, 5, 21, 58, 48)
    name = format_name(when, 1.5, "face_swapped")
    assert name == "20250705_215848_stage1.5_face_swapped.png"
    assert parse_name(name) == (when, 1.5, "face_swapped")
    assert format_stage(2.0) == "2" and format_stage(1.5) == "1.5"
