"""The subtitle compiler: cues laid out from word timings under a rule set.

Cutting the words into cues is a shortest path over the gaps between words (as Knuth and Plass
break paragraphs): each candidate cue must fit the rule set's lines, hold one speaker (a new
speaker starts a new cue), and span no more speech than its longest duration; among those, the
layout with the lowest total cost wins. A cue costs little when it ends at a sentence end, a
clause mark, a pause or a change of speaker, much when it ends on a conjunction, preposition or
article, and most when it could not be read at the rule set's reading speed in the time it can
have before the next cue.

Timing then follows the rules in this order: a cue ends when its speech ends, extended into the
following silence until it reaches its shortest duration and its reading speed (never past its
longest duration nor into the next cue's gap); a gap shorter than the chaining threshold is
closed to the minimum gap. With video, a cue that would run across a shot change costs as much
as a bad break, so the words are cut there where they allow it, and the cue edges then keep out
of the frames around each cut (:mod:`tasks.subtitles.shot_timing`). Only what no extension and
no other cut could mend is left broken, and :func:`tasks.subtitles.check.lint` names each such
rule for ``run.json``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, replace

from tasks.subtitles.lines import (
    AFTER_CLAUSE,
    AFTER_SENTENCE,
    break_cost,
    break_lines,
    join,
    layout_cost,
    width,
)
from tasks.subtitles.rules import RuleSet
from tasks.subtitles.shot_timing import Edges, timed_to_cuts
from tasks.transcript import Segment, Transcript, Word

# A zero-length word (faster-whisper emits some) still needs a cue that shows for a moment.
MIN_CUE_SECONDS = 0.001
PAUSE = 0.3
"""Silence (seconds) between two words that makes a natural place to end a cue."""

_CUE, _READING, _SHORT = 1.0, 40.0, 15.0
_SEGMENT_INSIDE, _PAUSE_INSIDE = 2.0, 3.0
_CROSS = 20.0
"""What a cue whose speech runs across a shot change costs: more than any break of words."""


@dataclass(frozen=True)
class Cue:
    """One subtitle on screen: its time span (seconds) and its lines, without speaker prefix."""

    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None


@dataclass(frozen=True)
class _Token:
    text: str
    start: float
    end: float
    speaker: str | None
    segment_end: bool


def speaker_prefix(speaker: str | None) -> str:
    """What a cue's first line starts with in SRT and plain text."""
    return f"{speaker}: " if speaker else ""


def compile_cues(transcript: Transcript, rules: RuleSet, cuts: Sequence[float] = ()) -> list[Cue]:
    """Lay a transcript out as subtitle cues that keep ``rules`` wherever a layout can.

    Args:
        transcript: The words to lay out.
        rules: The rule set.
        cuts: The video's shot changes (seconds, ascending); none for audio.

    Returns:
        Cues in time order that never overlap, each with ``end > start``.
    """
    tokens = _tokens(transcript)
    if not tokens:
        return []
    spans = _cut(tokens, rules, cuts)
    cues = []
    for i, j in spans:
        group = tokens[i:j]
        speaker = group[0].speaker
        lines = break_lines([t.text for t in group], rules, len(speaker_prefix(speaker))) or [
            [t.text for t in group]
        ]
        text = tuple(join(line, rules) for line in lines)
        cues.append(Cue(group[0].start, group[-1].end, text, speaker))
    timed = _timed(cues, rules)
    return _to_cuts(timed, [c.end for c in cues], cuts, rules) if cuts else timed


def reading_chars(cue: Cue) -> int:
    """Characters a viewer reads in ``cue``: its lines and speaker label, not the line breaks."""
    return len(speaker_prefix(cue.speaker)) + sum(len(line) for line in cue.lines)


def _tokens(transcript: Transcript) -> list[_Token]:
    tokens: list[_Token] = []
    for segment in transcript.shown():
        words = segment_words(segment)
        for index, word in enumerate(words):
            speaker = segment.speaker or word.speaker
            tokens.append(_Token(word.text, word.start, word.end, speaker, index == len(words) - 1))
    return tokens


def segment_words(segment: Segment) -> list[Word]:
    """The segment's words with stripped text; spread over the segment by length if it has none
    (a translated segment keeps its source's time as the frame)."""
    words = [
        Word(w.start, w.end, w.text.strip(), w.probability, w.speaker)
        for w in segment.words
        if w.text.strip()
    ]
    if words:
        return words
    tokens = segment.text.split() or ([segment.text.strip()] if segment.text.strip() else [])
    total = sum(len(t) for t in tokens)
    span = segment.end - segment.start
    words, done = [], 0
    for token in tokens:
        start = segment.start + span * done / total
        done += len(token)
        words.append(Word(start, segment.start + span * done / total, token))
    return words


def _cut(tokens: list[_Token], rules: RuleSet, cuts: Sequence[float]) -> list[tuple[int, int]]:
    """The cheapest cut of ``tokens`` into cues, as (start, stop) index pairs."""
    n = len(tokens)
    best = [0.0] + [math.inf] * n
    back = [0] * (n + 1)
    for i in range(n):
        if best[i] == math.inf:
            continue
        prefix = len(speaker_prefix(tokens[i].speaker))
        inner = 0.0  # what the cue's own pauses and segment ends cost: a viewer reads ahead
        for j in range(i + 1, n + 1):
            group = tokens[i:j]
            if group[-1].speaker != group[0].speaker:
                break
            if j - i > 1:
                before, word = group[-2], group[-1]
                inner += _SEGMENT_INSIDE if before.segment_end else 0.0
                inner += _PAUSE_INSIDE if word.start - before.end >= rules.chain_gap else 0.0
            if j - i > 1 and group[-1].end - group[0].start > rules.max_duration:
                break
            lines = break_lines([t.text for t in group], rules, prefix)
            if lines is None:
                break
            cost = best[i] + inner + _cue_cost(tokens, i, j, lines, prefix, rules)
            cost += _CROSS if _crosses(group[0].start, group[-1].end, cuts, rules) else 0.0
            if cost < best[j]:
                best[j], back[j] = cost, i
    spans, j = [], n
    while j > 0:
        spans.append((back[j], j))
        j = back[j]
    return spans[::-1]


def _crosses(start: float, end: float, cuts: Sequence[float], rules: RuleSet) -> bool:
    """Whether speech from ``start`` to ``end`` runs across a shot change (one just after its
    start is none: the cue's in-time moves onto it)."""
    after_start = start + rules.shot_snap_frames / rules.fps
    return any(after_start < cut < end for cut in cuts)


def _to_cuts(
    cues: list[Cue], speech_ends: list[float], cuts: Sequence[float], rules: RuleSet
) -> list[Cue]:
    """The timed cues with their edges moved out of the shot changes' frame zones."""
    edges = [
        Edges(c.start, c.end, e, max(rules.min_duration, reading_chars(c) / rules.max_cps))
        for c, e in zip(cues, speech_ends, strict=True)
    ]
    moved = timed_to_cuts(edges, cuts, rules)
    return [replace(c, start=s, end=e) for c, (s, e) in zip(cues, moved, strict=True)]


def _cue_cost(
    tokens: list[_Token], i: int, j: int, lines: list[list[str]], prefix: int, rules: RuleSet
) -> float:
    cost = _CUE + 0.5 * layout_cost(lines, rules)
    last = tokens[j - 1]
    if j < len(tokens):
        after = tokens[j]
        if after.speaker != last.speaker or last.segment_end:
            cost += AFTER_SENTENCE
        elif after.start - last.end >= PAUSE:
            cost += min(AFTER_CLAUSE, break_cost(last.text, after.text, rules))
        else:
            cost += 1.5 * break_cost(last.text, after.text, rules)
    start = tokens[i].start
    room = max(rules.max_duration, last.end - start)
    if j < len(tokens):  # the next cue starts with its first word: this one ends before it
        room = min(room, tokens[j].start - rules.min_gap - start)
    chars = prefix + sum(width(line, rules) for line in lines)
    needed = chars / rules.max_cps
    if needed > room + 1e-9:
        cost += _READING * (1 + (needed - room) / needed)
    if room + 1e-9 < rules.min_duration:
        cost += _SHORT
    return cost


def _timed(cues: list[Cue], rules: RuleSet) -> list[Cue]:
    """Extend each cue into the silence after it, then chain short gaps; never overlap."""
    out: list[Cue] = []
    for index, cue in enumerate(cues):
        start = max(cue.start, out[-1].end + rules.min_gap) if out else cue.start
        speech_end = max(cue.end, start + MIN_CUE_SECONDS)
        wanted = max(
            speech_end, start + rules.min_duration, start + reading_chars(cue) / rules.max_cps
        )
        end = max(speech_end, min(wanted, start + rules.max_duration))
        if index + 1 < len(cues):
            following = cues[index + 1].start
            latest = following - rules.min_gap
            if latest > start:
                end = min(end, latest)
                gap = following - end
                if gap < rules.chain_gap and latest - start <= max(
                    rules.max_duration, speech_end - start
                ):
                    end = latest  # chain: close a short gap to the minimum gap
                elif gap < rules.chain_gap and following - rules.chain_gap >= speech_end:
                    end = following - rules.chain_gap  # cannot chain: leave a full gap
            else:
                end = max(start + MIN_CUE_SECONDS, min(end, following))
        out.append(Cue(start, end, cue.lines, cue.speaker))
    return out
