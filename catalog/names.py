"""Parse names: what a sandbox or final filename says about its image.

Owns the naming rule (``YYYYMMDD_HHMMSS_stage<N>[_label].ext``), which files
count as images, and the inverse (`format_name`) used by the sample writer, so
that the rule lives in exactly one place.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import NamedTuple, Optional

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".webp"})

# The stem must *start* with the date-time; the stage, when present, follows it
# directly. Anything after the stage number is a free-form label
# ("_upscaled", "_face_swapped", "_upscaled_cropped", ...).
_NAME = re.compile(
    r"^(\d{4})(\d\d)(\d\d)_(\d\d)(\d\d)(\d\d)"
    r"(?:_stage(?P<stage>\d+(?:\.\d+)?)(?P<rest>.*))?",
    re.IGNORECASE | re.DOTALL,
)


class ParsedName(NamedTuple):
    timestamp: Optional[datetime]
    stage: Optional[float]
    stage_label: Optional[str]


UNPARSED = ParsedName(None, None, None)


def is_image(filename: str) -> bool:
    dot = filename.rfind(".")
    # ".png" alone is a hidden file, not an image with an empty stem.
    return dot > 0 and filename[dot:].lower() in IMAGE_EXTENSIONS


def parse_name(filename: str) -> ParsedName:
    """Return (timestamp, stage, label); fields the name does not carry are None.

    Never raises: real folders hold every kind of name, and an unparsed image
    is still recorded (it just takes no part in groups).
    """
    dot = filename.rfind(".")
    m = _NAME.match(filename if dot <= 0 else filename[:dot])
    if m is None:
        return UNPARSED
    try:
        # datetime() validates like strptime does, at a tenth of the cost.
        year, month, day, hour, minute, second = map(int, m.group(1, 2, 3, 4, 5, 6))
        timestamp: Optional[datetime] = datetime(year, month, day, hour, minute, second)
    except ValueError:
        # An impossible date such as 20251399_250000: keep the stage, drop the time.
        timestamp = None
    stage = label = None
    if m["stage"] is not None:
        stage = float(m["stage"])
        label = m["rest"].lstrip("_-. ") or None
    return ParsedName(timestamp, stage, label)


def format_stage(stage: Optional[float]) -> str:
    """1.0 -> '1', 1.5 -> '1.5': the way curators write stages."""
    if stage is None:
        return ""
    return str(int(stage)) if float(stage).is_integer() else repr(float(stage))


def format_name(timestamp: datetime, stage: Optional[float] = None,
                label: Optional[str] = None, ext: str = ".png") -> str:
    """Build a filename that `parse_name` reads back to the same fields."""
    name = timestamp.strftime("%Y%m%d_%H%M%S")
    if stage is not None:
        name += "_stage" + format_stage(stage)
        if label:
            name += "_" + label
    return name + ext


def timestamp_key(timestamp: datetime) -> str:
    """The YYYYMMDD_HHMMSS text the selector sorts on and set ids are named by."""
    return timestamp.strftime("%Y%m%d_%H%M%S")
