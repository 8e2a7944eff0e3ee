"""Reading SRT and WebVTT for the subtitle check, strictly, with the line of every cue.

The libraries read leniently, which is right for a player and wrong for a check: pysubs2 and
ttconv both take ``99:99:99,999`` as a time (27 hours on), pysubs2 reads ``100:00:00,000`` as
zero and a WebVTT cue identifier as the previous cue's text, and neither says on which line a
cue sits. So the check reads these two small formats itself: every field in range, every cue
with text, each fault at its real line.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from tasks.subtitles.layout import Cue
from voxflow.errors import BadInput

_TIMING = re.compile(r"^\s*(\S+)\s+-->\s+(\S+)")
_STAMP = re.compile(r"^(?:(\d+):)?(\d{2}):(\d{2})[,.](\d{3})$")
_TAG = re.compile(r"<[^>]*>|\{\\[^}]*\}")
_VOICE = re.compile(r"^<v(?:\.[^ >]*)?\s+([^>]*)>")
_ENTITIES = {"&lt;": "<", "&gt;": ">", "&nbsp;": "\u00a0", "&amp;": "&"}
_EXPECTED = "expected an .srt or .vtt file"


@dataclass(frozen=True)
class FileFault:
    """What makes a cue unreadable: ``cue`` counts every timing line from 1, ``line`` from 1."""

    cue: int
    line: int
    rule: str
    detail: str


@dataclass(frozen=True)
class SubtitleFile:
    """A subtitle file as the check sees it.

    Attributes:
        cues: The cues that have valid times and text, in file order.
        numbers: Each of those cues' number in the file (every cue counted, from 1).
        lines: The line each of those cues' timing is on.
        faults: The cues that could not be read: a time out of range, an end not after its
            start, no text.
    """

    cues: tuple[Cue, ...]
    numbers: tuple[int, ...]
    lines: tuple[int, ...]
    faults: tuple[FileFault, ...]


def read_file(path: str | Path) -> SubtitleFile:
    """Read an SRT or WebVTT file (tags removed; a WebVTT voice is the cue's speaker).

    Raises:
        BadInput: No such file, not UTF-8, or not SRT or WebVTT (naming the line).
    """
    file = Path(path)
    if not file.is_file():
        raise BadInput(f"{file} does not exist or is not a file; {_EXPECTED}")
    try:
        text = file.read_text(encoding="utf-8-sig")
    except UnicodeDecodeError as e:
        raise BadInput(f"{file} is not UTF-8 text ({e.reason}); {_EXPECTED}") from e
    cues, numbers, lines, faults = [], [], [], []
    for number, (at, block) in enumerate(_cue_blocks(file, text), 1):
        cue, fault = _cue(block, number, at)
        if fault:
            faults.append(fault)
        else:
            cues.append(cue)
            numbers.append(number)
            lines.append(at)
    if not cues and not faults:
        raise BadInput(f"{file} has no cues; {_EXPECTED} with at least one")
    return SubtitleFile(tuple(cues), tuple(numbers), tuple(lines), tuple(faults))


def _cue_blocks(file: Path, text: str) -> list[tuple[int, list[str]]]:
    """Each cue's timing line number and its lines from the timing on; headers skipped."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    blocks: list[tuple[int, list[str]]] = []
    start = 0
    while start < len(lines):
        if not lines[start].strip():
            start += 1
            continue
        end = next((k for k in range(start, len(lines)) if not lines[k].strip()), len(lines))
        block = lines[start:end]
        if not block[0].startswith(("WEBVTT", "NOTE", "STYLE", "REGION")):
            at = next((k for k, line in enumerate(block[:3]) if "-->" in line), None)
            if at is None:
                raise BadInput(
                    f"{file} is not an SRT or WebVTT file: line {start + 1} has no cue timing "
                    f"in {block[0][:60]!r} (expected e.g. 00:00:01,000 --> 00:00:02,500)"
                )
            blocks.append((start + at + 1, block[at:]))
        start = end
    return blocks


def _cue(block: list[str], number: int, line: int) -> tuple[Cue | None, FileFault | None]:
    """One cue from its timing line and text, or the fault that keeps it from being one."""
    timing = _TIMING.match(block[0])
    stamps = (timing[1], timing[2]) if timing else (block[0].strip(), "")
    times = [_seconds(stamp) for stamp in stamps]
    bad = [stamp for stamp, seconds in zip(stamps, times, strict=True) if seconds is None]
    if bad:
        detail = f"{bad[0]!r} is not a time: expected HH:MM:SS,mmm, minutes and seconds under 60"
        return None, FileFault(number, line, "timestamp", detail)
    start, end = times
    if end <= start:
        detail = f"ends at {stamps[1]}, not after it starts at {stamps[0]}"
        return None, FileFault(number, line, "timestamp", detail)
    speaker = None
    body = []
    for text in block[1:]:
        voice = _VOICE.match(text)
        if voice and speaker is None:
            speaker = voice.group(1).strip() or None
        clean = _unescape(_TAG.sub("", text)).strip()
        if clean:
            body.append(clean)
    if not body:
        return None, FileFault(number, line, "empty", "no text: the cue shows nothing")
    return Cue(start, end, tuple(body), speaker), None


def _seconds(stamp: str) -> float | None:
    """``HH:MM:SS,mmm`` (or WebVTT's ``MM:SS.mmm``) in seconds; None when a field is out of
    range or the stamp is not a time."""
    found = _STAMP.match(stamp)
    if not found:
        return None
    hours, minutes, seconds, millis = (int(field or 0) for field in found.groups())
    if minutes >= 60 or seconds >= 60:
        return None
    return hours * 3600 + minutes * 60 + seconds + millis / 1000


def _unescape(text: str) -> str:
    for entity, char in _ENTITIES.items():
        text = text.replace(entity, char)
    return text
