"""Winner matching rules and orphan reasons, on hand-made images."""

from datetime import datetime

from catalog.images import ImageRow
from catalog.matching import match_finals

T = datetime(2025, 7, 8, 6, 7, 11)


def s(i, folder, name, ts=T, stage=2.0, size=(1664, 2432)):
    return ImageRow(i, folder, name, ts, stage, *size)


def f(i, folder, name, ts=T, stage=2.0, size=(1664, 2432)):
    return ImageRow(i, folder, name, ts, stage, *size)


NAME = "20250708_060711_stage2_upscaled.png"


def test_same_filename():
    m = match_finals([s(1, "", NAME)], [f(10, "", NAME)])[10]
    assert (m.sandbox_image_id, m.match, m.problem, m.cropped) == (1, "filename", None, 0)


def test_same_filename_in_several_folders_uses_the_mirrored_folder():
    sandbox = [s(1, "tara", NAME), s(2, "south", NAME)]
    assert match_finals(sandbox, [f(10, "south", NAME)])[10].sandbox_image_id == 2
    assert match_finals(sandbox, [f(11, "", NAME)])[11].problem == "ambiguous"


def test_key_match_for_renamed_and_converted():
    sandbox = [s(1, "", NAME), s(2, "", "20250708_060711_stage1_generated.png", stage=1.0)]
    finals = [f(10, "", "20250708_060711_stage2_upscaled_cropped.png", size=(1500, 2000)),
              f(11, "", "20250708_060711_stage2_upscaled.jpg")]
    out = match_finals(sandbox, finals)
    assert (out[10].sandbox_image_id, out[10].match, out[10].cropped) == (1, "key", 1)
    assert (out[11].sandbox_image_id, out[11].match, out[11].cropped) == (1, "key", 0)


def test_no_match_and_unknown_sizes():
    sandbox = [s(1, "", NAME, size=(None, None))]
    out = match_finals(sandbox, [f(10, "", "edited.png", None, None), f(11, "", NAME, size=(10, 10))])
    assert out[10].problem == "no_match"
    assert out[11].cropped == 0  # a size we could not read never claims a crop
