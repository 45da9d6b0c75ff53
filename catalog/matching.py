"""Match winners: which sandbox image each final image is, within one project.

Owns the matching rules, the `matches` table (read, planned, written), and
what each group's winners are (winner_count, chosen_image_id, chosen_stage: stored with the group, and
what the views build decisions and anomalies on):

1. same filename; if several sandbox images carry it, keep those whose folder
   (relative to the sandbox) equals the final image's folder (relative to the
   final folder);
2. otherwise the same (timestamp, stage) key, same tie-break: this catches
   winners renamed on crop (`..._stage2_upscaled_cropped.png`) or converted
   (`.jpg`);
3. otherwise, or if still ambiguous, the final image is an orphan
   (`no_match` / `ambiguous`; `ungrouped` is derived in SQL from groups).

A winner is flagged cropped when both pixel sizes are known and differ.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import NamedTuple, Optional

from sqlalchemy import bindparam, select
from sqlalchemy.engine import Connection

from .bulk import executemany, fetch_tuples
from .images import ImageRow, RealId, keep_id
from .schema import images, matches


class Match(NamedTuple):
    sandbox_image_id: Optional[int]
    match: Optional[str]
    problem: Optional[str]
    cropped: int


def _pick(candidates: list[ImageRow], final: ImageRow) -> Optional[ImageRow]:
    if len(candidates) == 1:
        return candidates[0]
    same_folder = [c for c in candidates if c.dir == final.dir]
    return same_folder[0] if len(same_folder) == 1 else None


def match_finals(sandbox: Sequence[ImageRow], finals: Sequence[ImageRow]) -> dict[int, Match]:
    """final image id -> its Match."""
    # Index only the names and keys some final image asks for: finals are a
    # fraction of the sandbox, and this runs over every sandbox image.
    by_name: dict[str, list[ImageRow]] = {f.filename: [] for f in finals}
    by_key: dict[tuple, list[ImageRow]] = {
        (f.timestamp, f.stage): [] for f in finals if f.timestamp is not None and f.stage is not None
    }
    for image in sandbox:
        same_name = by_name.get(image.filename)
        if same_name is not None:
            same_name.append(image)
        same_key = by_key.get((image.timestamp, image.stage))
        if same_key is not None:
            same_key.append(image)

    result = {}
    for final in finals:
        kind = "filename"
        candidates = by_name.get(final.filename)
        if not candidates and final.timestamp is not None and final.stage is not None:
            kind = "key"
            candidates = by_key.get((final.timestamp, final.stage))
        if not candidates:
            result[final.id] = Match(None, None, "no_match", 0)
            continue
        chosen = _pick(candidates, final)
        if chosen is None:
            result[final.id] = Match(None, None, "ambiguous", 0)
            continue
        cropped = int(
            None not in (chosen.width, chosen.height, final.width, final.height)
            and (chosen.width, chosen.height) != (final.width, final.height)
        )
        result[final.id] = Match(chosen.id, kind, None, cropped)
    return result


def read_matches(conn: Optional[Connection], project_id: Optional[int]) -> dict[int, Match]:
    """final image id -> its stored Match, read before the sync writes."""
    if conn is None or project_id is None:
        return {}
    rows = fetch_tuples(
        conn,
        select(matches.c.final_image_id, matches.c.sandbox_image_id, matches.c.match,
               matches.c.problem, matches.c.cropped)
        .join(images, images.c.id == matches.c.final_image_id)
        .where(images.c.project_id == project_id),
    )
    return {row[0]: Match(*row[1:]) for row in rows}


@dataclass
class MatchPlan:
    deletes: list[int] = field(default_factory=list)  # final image ids whose stored match goes
    inserts: list[dict] = field(default_factory=list)  # matches rows to write

    @property
    def any(self) -> bool:
        return bool(self.deletes or self.inserts)


def plan_matches(stored: dict[int, Match], desired: dict[int, Match]) -> MatchPlan:
    """Rows that differ are replaced; the ids compared are those of images
    whose relative path did not change, so equal ids mean equal images."""
    return MatchPlan(
        deletes=[fid for fid, m in stored.items() if desired.get(fid) != m],
        inserts=[{"final_image_id": fid, **m._asdict()} for fid, m in desired.items() if stored.get(fid) != m],
    )


def delete_matches(conn: Connection, plan: MatchPlan) -> None:
    executemany(conn, matches.delete().where(matches.c.final_image_id == bindparam("fid")),
                [(fid,) for fid in plan.deletes], ("fid",))


def write_matches(conn: Connection, plan: MatchPlan,
                  real_id: RealId = keep_id) -> None:
    """`real_id` maps the provisional ids of new images (catalog/sync.py)."""
    executemany(conn, matches.insert(),
                [(real_id(m["final_image_id"]), real_id(m["sandbox_image_id"]), m["match"], m["problem"], m["cropped"])
                 for m in plan.inserts], _MATCH_COLUMNS)


_MATCH_COLUMNS = ("final_image_id", "sandbox_image_id", "match", "problem", "cropped")


def picked_images(found: dict[int, Match]) -> set[int]:
    """Sandbox image ids some final image was matched to."""
    return {m.sandbox_image_id for m in found.values() if m.problem is None and m.sandbox_image_id is not None}


def winner_of(members: Sequence[tuple[int, Optional[float]]], picked: set[int]) -> tuple:
    """(winner_count, chosen_image_id, chosen_stage) of a group whose members
    are (image id, stage) pairs. Several final copies of one sandbox image
    are one winner. Whether a decision is an anomaly, and which final images
    are orphans, is decided by the views alone."""
    chosen = [(image_id, stage) for image_id, stage in members if image_id in picked]
    if len(chosen) == 1:
        return (1, *chosen[0])
    return (len(chosen), None, None)


def group_winners(groups: Sequence[Sequence[ImageRow]], picked: set[int]) -> list[tuple]:
    """Per group, in order: its winner columns (see `winner_of`), the
    `image_groups` columns the views build decisions on."""
    return [winner_of([(image.id, image.stage) for image in group], picked) for group in groups]
