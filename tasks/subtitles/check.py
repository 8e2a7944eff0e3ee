"""The subtitle check: every cue of a subtitle file against a rule set, violations by rule.

It reads SRT and WebVTT from any tool (``voxflow check FILE``, strictly, through
:mod:`tasks.subtitles.reading`) and is what every voxflow run records of its own subtitles in
``run.json``. A cue whose times are out of range or out of order, or that has no text, is a
fault at its line; the others are linted. Line breaks are judged with the compiler's own
scoring (:mod:`tasks.subtitles.lines`): a break is reported only when the same words have a
better one that fits.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from tasks.subtitles.layout import Cue, reading_chars, speaker_prefix
from tasks.subtitles.lines import break_lines, join, layout_cost
from tasks.subtitles.reading import read_file
from tasks.subtitles.rules import RuleSet

RULES = (
    "timestamp",
    "empty",
    "line-length",
    "lines",
    "reading-speed",
    "min-duration",
    "max-duration",
    "overlap",
    "min-gap",
    "chaining",
    "line-break",
)
"""The rules the check reports, in the order it prints them."""

_TOLERANCE = 0.0015  # SRT and VTT keep milliseconds: 2 frames at 24 fps is 83.3 ms, written 083


@dataclass(frozen=True)
class Violation:
    """One rule one cue breaks. ``cue`` counts from 1, as SRT numbers cues; ``line`` is where
    its timing is in a file that was read (None for cues laid out by a run)."""

    cue: int
    rule: str
    detail: str
    line: int | None = None


def read_subtitles(path: str | Path) -> list[Cue]:
    """The readable cues of an SRT or WebVTT file (:func:`tasks.subtitles.reading.read_file`).

    Raises:
        BadInput: No such file, or not SRT or WebVTT (naming the line).
    """
    return list(read_file(path).cues)


def check_file(path: str | Path, rules: RuleSet) -> tuple[int, list[Violation]]:
    """Every fault of a subtitle file: its unreadable cues and the rules its cues break, each
    with the cue's number and line in the file, in cue order.

    Returns:
        The number of cues in the file and the violations.

    Raises:
        BadInput: No such file, or not SRT or WebVTT (naming the line).
    """
    file = read_file(path)
    found = [Violation(f.cue, f.rule, f.detail, f.line) for f in file.faults]
    for v in lint(file.cues, rules):
        found.append(replace(v, cue=file.numbers[v.cue - 1], line=file.lines[v.cue - 1]))
    count = len(file.cues) + len(file.faults)
    return count, sorted(found, key=lambda v: (v.cue, RULES.index(v.rule)))


def lint(cues: Sequence[Cue], rules: RuleSet) -> list[Violation]:
    """Every rule of ``rules`` each cue breaks, in cue order."""
    found: list[Violation] = []
    for number, cue in enumerate(cues, 1):
        found += [Violation(number, rule, detail) for rule, detail in _cue_faults(cue, rules)]
        if number < len(cues):
            fault = _gap_fault(cue, cues[number], rules)
            if fault:
                found.append(Violation(number, *fault))
    return found


def summary(
    cues: Sequence[Cue] | int, violations: Sequence[Violation], rules: RuleSet
) -> dict[str, Any]:
    """The figures a run records: cues, violations per rule (with cue numbers), per 100 cues.

    ``cues`` is the cues or their number."""
    count = cues if isinstance(cues, int) else len(cues)
    by_rule: dict[str, list[int]] = {}
    for v in violations:
        by_rule.setdefault(v.rule, []).append(v.cue)
    return {
        "rules": rules.name,
        "cues": count,
        "violations": len(violations),
        "per_100_cues": round(100 * len(violations) / count, 2) if count else 0.0,
        "by_rule": {rule: by_rule[rule] for rule in RULES if rule in by_rule},
        "details": [
            {"cue": v.cue, "rule": v.rule, "detail": v.detail}
            | ({"line": v.line} if v.line else {})
            for v in violations
        ],
    }


def report(
    name: str, cues: Sequence[Cue] | int, violations: Sequence[Violation], rules: RuleSet
) -> str:
    """What ``voxflow check`` prints: a line for the file, then one per broken rule."""
    count = cues if isinstance(cues, int) else len(cues)
    head = f"{name}: {count} cues, rules {rules.name}: "
    if not violations:
        return head + "no violations"
    lines = [head + f"{len(violations)} violation{'s' if len(violations) != 1 else ''}"]
    for rule in RULES:
        hits = [v for v in violations if v.rule == rule]
        if hits:
            numbers = ", ".join(str(v.cue) for v in hits[:20]) + (" ..." if len(hits) > 20 else "")
            lines.append(f"  {rule} ({len(hits)}): cues {numbers}")
            lines += [f"    cue {v.cue}{_at(v)}: {v.detail}" for v in hits[:3]]
    return "\n".join(lines)


def _at(violation: Violation) -> str:
    return f" (line {violation.line})" if violation.line else ""


def _cue_faults(cue: Cue, rules: RuleSet) -> list[tuple[str, str]]:
    faults: list[tuple[str, str]] = []
    shown = [speaker_prefix(cue.speaker) + cue.lines[0], *cue.lines[1:]] if cue.lines else []
    for index, line in enumerate(shown, 1):
        if len(line) > rules.max_line_chars:
            faults.append(
                (
                    "line-length",
                    f"line {index} has {len(line)} characters (max {rules.max_line_chars})",
                )
            )
    if len(shown) > rules.max_lines:
        faults.append(("lines", f"{len(shown)} lines (max {rules.max_lines})"))
    duration = cue.end - cue.start
    if duration > 0:
        cps = reading_chars(cue) / duration
        if (
            cps > rules.max_cps * (1 + 1e-6)
            and reading_chars(cue) / (duration + _TOLERANCE) > rules.max_cps
        ):
            faults.append(
                ("reading-speed", f"{cps:.1f} characters a second (max {rules.max_cps:g})")
            )
    if duration < rules.min_duration - _TOLERANCE:
        faults.append(
            ("min-duration", f"{duration:.3f} s on screen (min {rules.min_duration:.3f})")
        )
    if duration > rules.max_duration + _TOLERANCE:
        faults.append(("max-duration", f"{duration:.3f} s on screen (max {rules.max_duration:g})"))
    better = _better_break(cue, rules)
    if better:
        faults.append(("line-break", better))
    return faults


def _gap_fault(cue: Cue, following: Cue, rules: RuleSet) -> tuple[str, str] | None:
    gap = following.start - cue.end
    frames = gap * rules.fps
    if gap < -_TOLERANCE:
        return "overlap", f"overlaps the next cue by {-gap:.3f} s"
    if gap < rules.min_gap - _TOLERANCE:
        return "min-gap", f"{frames:.1f} frames before the next cue (min {rules.min_gap_frames})"
    if rules.min_gap + _TOLERANCE < gap < rules.chain_gap - _TOLERANCE:
        return (
            "chaining",
            f"{frames:.1f} frames before the next cue: under {rules.chain_frames}, close it to "
            f"{rules.min_gap_frames}",
        )
    return None


def _better_break(cue: Cue, rules: RuleSet) -> str | None:
    """Say how to break the cue's lines better, when the same words allow it."""
    given = [_words(line, rules) for line in cue.lines]
    words = [w for line in given for w in line]
    if not words:
        return None
    prefix = len(speaker_prefix(cue.speaker))
    best = break_lines(words, rules, prefix)
    too_long = any(
        len(line) > 1 and len(join(line, rules)) + (prefix if k == 0 else 0) > rules.max_line_chars
        for k, line in enumerate(given)
    )
    if best is None or too_long or len(given) > rules.max_lines:
        return None  # line-length and lines say what is wrong
    if len(best) < len(given) or layout_cost(best, rules) + 0.5 < layout_cost(given, rules):
        return "better: " + " | ".join(join(line, rules) for line in best)
    return None


def _words(line: str, rules: RuleSet) -> list[str]:
    return line.split() if rules.joiner else [c for c in line if not c.isspace()]
