"""Cue edges timed to the video's shot changes, by Netflix's frame zones.

Netflix's timing guide, as Subtitle Edit's ``NetflixCheckShotChange`` counts it in frames
(half a second, ``H``: 12 at 24 fps; ``T``, three quarters of it: 9):

- an in-time 0 to H-1 frames after a cut moves onto the cut;
- an in-time 1 to T-1 frames before a cut moves onto it; T to H-1 before, back to H before;
- an out-time within H-1 frames of a cut, either side, ends 2 frames (the minimum gap) before;
- a cue whose speech ends before a cut but whose time on screen runs past it stops 2 frames
  before the cut, where it still keeps its shortest duration and its reading speed.

A move that would overlap a neighbour or leave a cue without time is not made; the layout
(:mod:`tasks.subtitles.layout`) already cut the words at the shot changes where it could, so
the cue edges this moves are the ones a viewer sees next to a cut.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from tasks.subtitles.rules import RuleSet


@dataclass(frozen=True)
class Edges:
    """One cue's times as the shot timing needs them.

    Attributes:
        start: When it appears (seconds).
        end: When it goes.
        speech_end: When its last word ends.
        needs: The least time it must stay: its shortest duration or its reading time.
    """

    start: float
    end: float
    speech_end: float
    needs: float


def frames(seconds: float, rules: RuleSet) -> int:
    """A time span in whole frames (nearest), as a timecode counts it."""
    return round(seconds * rules.fps)


def timed_to_cuts(
    cues: Sequence[Edges], cuts: Sequence[float], rules: RuleSet
) -> list[tuple[float, float]]:
    """(start, end) of each cue with its edges moved out of the shot-change zones.

    Args:
        cues: Timed cues in order, none overlapping.
        cuts: Shot-change times in seconds, ascending.
        rules: The rule set (frame rate, zones, gaps, longest duration).
    """
    starts: list[float] = []
    for cue in cues:
        start = _in_time(cue.start, cuts, rules)
        # a start pulled back must leave the cue before it time on screen; one pushed on, its own
        if (starts and start - rules.min_gap <= starts[-1]) or start >= cue.end:
            start = cue.start
        starts.append(start)
    out = []
    for i, cue in enumerate(cues):
        latest = starts[i + 1] - rules.min_gap if i + 1 < len(cues) else None
        out.append((starts[i], _out_time(cue, starts[i], latest, cuts, rules)))
    return out


def _in_time(start: float, cuts: Sequence[float], rules: RuleSet) -> float:
    """Where a cue starting at ``start`` starts, by the in-time zones."""
    zone, snap = rules.shot_zone_frames, rules.shot_snap_frames
    before = [c for c in cuts if frames(start - c, rules) >= 0]
    if before and frames(start - before[-1], rules) < zone:
        return before[-1]
    after = [c for c in cuts if frames(c - start, rules) > 0]
    if after:
        gap = frames(after[0] - start, rules)
        if gap < snap:
            return after[0]
        if gap < zone:
            return after[0] - zone / rules.fps
    return start


def _out_time(
    cue: Edges, start: float, latest: float | None, cuts: Sequence[float], rules: RuleSet
) -> float:
    """Where a cue shown from ``start`` ends, by the out-time zones, never past ``latest`` (the
    next cue's start less the minimum gap); a gap left under the chaining threshold is closed."""
    end = cue.end if latest is None else min(cue.end, latest)
    for cut in cuts:
        before_cut = cut - rules.min_gap
        if before_cut <= start or (latest is not None and before_cut > latest + 1e-9):
            continue
        near = abs(frames(end - cut, rules)) < rules.shot_zone_frames
        readable = before_cut - start + 1e-9 >= cue.needs
        if near or (cue.speech_end <= before_cut + 1e-9 < end and readable):
            return before_cut
    if latest is not None and latest - end < rules.chain_gap - rules.min_gap:
        longest = max(rules.max_duration, cue.speech_end - start)
        if latest - start <= longest and not _in_zone(latest, cuts, rules):
            return latest  # chain, as the layout does, once the next start has moved
    return end


def _in_zone(end: float, cuts: Sequence[float], rules: RuleSet) -> bool:
    """Whether an out-time falls in a cut's zone (2 frames before a cut is outside it)."""
    return any(
        abs(frames(end - c, rules)) < rules.shot_zone_frames
        and frames(c - end, rules) != rules.min_gap_frames
        for c in cuts
    )
