"""The selector's grouping: nearest-up runs within one folder."""

from datetime import datetime, timedelta

import pytest

from catalog.grouping import form_groups, selector_runs
from catalog.images import ImageRow


def stages_of(seq, runs):
    return [[seq[i] for i in run] for run in runs]


@pytest.mark.parametrize("seq, groups", [
    ([1, 3, 2, 3], [[1, 2, 3]]),
    ([3, 3, 2, 3], [[2, 3]]),
    ([1, 3], [[1, 3]]),
    ([2, 2, 1, 1], []),
    ([3, 2, 1], []),
    ([1, 1.5, 2, 3, 1, 2, 3], [[1, 1.5, 2, 3], [1, 2, 3]]),
    ([1, 2, 2, 3], [[1, 2], [2, 3]]),
    ([1], []),
    ([], []),
])
def test_documented_cases(seq, groups):
    assert stages_of(seq, selector_runs(seq)) == groups


def test_skipped_image_belongs_to_no_group():
    runs = selector_runs([1, 3, 2, 3])
    assert runs == [[0, 2, 3]]  # index 1, the first 3, is in no group


def test_lookahead_is_bounded_at_50():
    # After a 1, fifty 3s then a 2: the 2 is out of reach, so 1 pairs with the first 3.
    seq = [1] + [3] * 50 + [2]
    assert selector_runs(seq)[0] == [0, 1]
    seq = [1] + [3] * 49 + [2]
    assert selector_runs(seq)[0][:2] == [0, 50]


def image(i, folder, ts, stage, name=None):
    return ImageRow(i, folder, name or f"{ts:%Y%m%d_%H%M%S}_stage{stage:g}.png", ts, stage, None, None)


def test_groups_never_cross_folders():
    t = datetime(2025, 7, 5, 12, 0, 0)
    # Two character folders interleaved in time: each alone has no rising run.
    images = [
        image(1, "tara", t, 1.0),
        image(2, "south", t + timedelta(seconds=10), 2.0),
        image(3, "tara", t + timedelta(seconds=20), 1.0),
        image(4, "south", t + timedelta(seconds=30), 1.0),
    ]
    assert form_groups(images) == []


def test_shared_timestamp_sorts_by_stage():
    t = datetime(2025, 7, 5, 12, 0, 0)
    # stage 1.5 written in the same second as stage 1; ids in reverse order on purpose
    images = [
        image(3, "", t + timedelta(seconds=90), 2.0),
        image(2, "", t, 1.5),
        image(1, "", t, 1.0),
    ]
    (group,) = form_groups(images)
    assert [i.id for i in group] == [1, 2, 3]


def test_unparsed_images_take_no_part():
    t = datetime(2025, 7, 5, 12, 0, 0)
    images = [image(1, "", t, 1.0), ImageRow(2, "", "IMG_0001.png", None, None, None, None),
              ImageRow(3, "", "x.png", t, None, None, None), image(4, "", t + timedelta(seconds=5), 2.0)]
    assert [[i.id for i in g] for g in form_groups(images)] == [[1, 4]]
