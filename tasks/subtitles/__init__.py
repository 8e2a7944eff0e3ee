"""Subtitles and transcript files from a :class:`~tasks.transcript.Transcript`.

Cues are laid out from word timestamps: each segment is cut into cues of at most
``max_lines`` lines of at most ``max_line_chars`` characters, breaking only between words,
preferring sentence ends and punctuation when a cue overflows, and balancing its lines.
The renderers (SRT, WebVTT, plain text, JSON) and :func:`write_outputs` sit on top.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from tasks.transcript import Segment, Transcript, Word
from voxflow.atomic import write_text
from voxflow.errors import BadInput

__all__ = [
    "FORMATS",
    "Cue",
    "CueOptions",
    "format_timestamp",
    "make_cues",
    "parse_formats",
    "to_json",
    "to_srt",
    "to_txt",
    "to_vtt",
    "write_outputs",
]

FORMATS = ("srt", "vtt", "json", "txt")

_SENTENCE_END = ".?!…"
_CLAUSE_END = ",;:–—"
_CLOSERS = "\"')]}»”’"
# A zero-length word (faster-whisper emits some) still needs a cue that shows for a moment.
_MIN_CUE_SECONDS = 0.001


@dataclass(frozen=True)
class CueOptions:
    """How transcript text is cut into subtitle cues.

    Attributes:
        max_line_chars: Longest line, in characters, speaker prefix included.
        max_lines: Most lines in one cue.
        max_cue_seconds: Longest time one cue stays on screen (a single long word may exceed it).
        min_gap: Least time between the end of one cue and the start of the next.
    """

    max_line_chars: int = 42
    max_lines: int = 2
    max_cue_seconds: float = 7.0
    min_gap: float = 0.0

    def __post_init__(self) -> None:
        if self.max_line_chars < 1 or self.max_lines < 1:
            raise BadInput(
                f"max_line_chars and max_lines must be at least 1, got {self.max_line_chars} "
                f"and {self.max_lines}"
            )
        if self.max_cue_seconds <= 0 or self.min_gap < 0:
            raise BadInput(
                f"max_cue_seconds must be positive and min_gap not negative, got "
                f"{self.max_cue_seconds} and {self.min_gap}"
            )


_DEFAULT_OPTIONS = CueOptions()


@dataclass(frozen=True)
class Cue:
    """One subtitle on screen: its time span (seconds) and its lines, without speaker prefix."""

    start: float
    end: float
    lines: tuple[str, ...]
    speaker: str | None = None


def make_cues(transcript: Transcript, options: CueOptions = _DEFAULT_OPTIONS) -> list[Cue]:
    """Lay a transcript out as subtitle cues.

    Args:
        transcript: What ASR produced.
        options: Line, cue and timing limits.

    Returns:
        Cues in time order that never overlap, each with ``end > start``.
    """
    cues: list[Cue] = []
    for segment in transcript.segments:
        words = _segment_words(segment)
        prefix = len(_speaker_prefix(segment.speaker))
        start = 0
        while start < len(words):
            stop = start + 1
            while stop < len(words) and _fits(words[start : stop + 1], prefix, options):
                stop += 1
            if stop < len(words):
                stop = _punctuation_break(words, start, stop)
            group = words[start:stop]
            lines = _balanced_lines([w.text for w in group], prefix, options)
            cues.append(Cue(group[0].start, group[-1].end, lines, segment.speaker))
            start = stop
    return _without_overlaps(cues, options.min_gap)


def format_timestamp(seconds: float, sep: str = ",") -> str:
    """Format seconds as ``HH:MM:SS,mmm`` (nearest millisecond; hours grow past two digits).

    Args:
        seconds: Time from the start of the media; negative values count as zero.
        sep: Separator before the milliseconds: ``","`` for SRT, ``"."`` for WebVTT.
    """
    total_ms = max(0, round(seconds * 1000))
    hours, rest = divmod(total_ms, 3_600_000)
    minutes, rest = divmod(rest, 60_000)
    secs, millis = divmod(rest, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{sep}{millis:03d}"


def to_srt(transcript: Transcript, options: CueOptions = _DEFAULT_OPTIONS) -> str:
    """Render SubRip: numbered cues, speaker as a ``"SPEAKER: "`` prefix on the first line."""
    blocks = []
    for number, cue in enumerate(make_cues(transcript, options), 1):
        lines = list(cue.lines)
        lines[0] = _speaker_prefix(cue.speaker) + lines[0]
        times = f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}"
        blocks.append(f"{number}\n{times}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def to_vtt(transcript: Transcript, options: CueOptions = _DEFAULT_OPTIONS) -> str:
    """Render WebVTT: a ``WEBVTT`` header, speaker as a ``<v SPEAKER>`` voice tag.

    The cues are the same as SRT's (room for the speaker prefix included), so both files agree.
    """
    blocks = ["WEBVTT\n"]
    for cue in make_cues(transcript, options):
        lines = [_vtt_escape(line) for line in cue.lines]
        if cue.speaker:
            lines[0] = f"<v {_vtt_escape(cue.speaker)}>{lines[0]}"
        times = f"{format_timestamp(cue.start, '.')} --> {format_timestamp(cue.end, '.')}"
        blocks.append(f"{times}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def to_txt(transcript: Transcript) -> str:
    """Render plain text: one segment per line, with a ``"SPEAKER: "`` prefix when known."""
    lines = [
        _speaker_prefix(s.speaker) + s.text.strip() for s in transcript.segments if s.text.strip()
    ]
    return "".join(f"{line}\n" for line in lines)


def to_json(transcript: Transcript) -> str:
    """Render JSON with the transcript's language, duration, text, model and segments."""
    data = {
        "language": transcript.language,
        "duration": transcript.duration,
        "text": transcript.text,
        "model": transcript.model,
        "segments": [
            {
                "start": s.start,
                "end": s.end,
                "text": s.text.strip(),
                "speaker": s.speaker,
                "words": [
                    {
                        "start": w.start,
                        "end": w.end,
                        "text": w.text.strip(),
                        "probability": w.probability,
                        # only diarized words carry one: undiarized JSON keeps its shape
                        **({"speaker": w.speaker} if w.speaker else {}),
                    }
                    for w in s.words
                ],
            }
            for s in transcript.segments
        ],
    }
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


def parse_formats(value: str | Iterable[str]) -> tuple[str, ...]:
    """Read output formats from ``"srt,vtt"`` or a list, dropping duplicates in order.

    Raises:
        BadInput: A format is unknown, or none was given.
    """
    items = value.split(",") if isinstance(value, str) else [p for v in value for p in v.split(",")]
    names = [item.strip().lower() for item in items if item.strip()]
    allowed = f'choose from {", ".join(FORMATS)}, e.g. "srt,vtt"'
    if not names:
        raise BadInput(f"no output format given; {allowed}")
    unknown = [name for name in names if name not in FORMATS]
    if unknown:
        raise BadInput(f"unknown output format {', '.join(map(repr, unknown))}; {allowed}")
    return tuple(dict.fromkeys(names))


def write_outputs(
    transcript: Transcript,
    directory: Path,
    stem: str,
    formats: str | Iterable[str],
    options: CueOptions = _DEFAULT_OPTIONS,
) -> dict[str, Path]:
    """Write ``<stem>.<fmt>`` in ``directory`` for each format, each file atomically.

    Args:
        transcript: What to render.
        directory: Where the files go; created if missing.
        stem: File name without suffix.
        formats: Formats as :func:`parse_formats` accepts them.
        options: Cue layout for the subtitle formats.

    Returns:
        The written path for each format, in the order asked.

    Raises:
        BadInput: A format is unknown, or none was given.
    """
    renderers: dict[str, Callable[[], str]] = {
        "srt": lambda: to_srt(transcript, options),
        "vtt": lambda: to_vtt(transcript, options),
        "json": lambda: to_json(transcript),
        "txt": lambda: to_txt(transcript),
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in parse_formats(formats):
        path = directory / f"{stem}.{fmt}"
        write_text(path, renderers[fmt]())
        paths[fmt] = path
    return paths


def _segment_words(segment: Segment) -> list[Word]:
    """The segment's words with stripped text; spread over the segment by length if it has none."""
    words = [
        Word(w.start, w.end, w.text.strip(), w.probability) for w in segment.words if w.text.strip()
    ]
    if words:
        return words
    tokens = segment.text.split()
    total = sum(len(t) for t in tokens)
    span = segment.end - segment.start
    words, done = [], 0
    for token in tokens:
        start = segment.start + span * done / total
        done += len(token)
        words.append(Word(start, segment.start + span * done / total, token))
    return words


def _speaker_prefix(speaker: str | None) -> str:
    return f"{speaker}: " if speaker else ""


def _wrap(texts: Sequence[str], width: int, prefix: int) -> list[str]:
    """Greedy wrap at ``width``; the first line has ``prefix`` fewer characters of room."""
    lines: list[str] = []
    line = ""
    for text in texts:
        room = width - (prefix if not lines else 0)
        if line and len(line) + 1 + len(text) > room:
            lines.append(line)
            line = text
        else:
            line = f"{line} {text}" if line else text  # an overlong word still gets a line
    return [*lines, line]


def _fits(words: Sequence[Word], prefix: int, options: CueOptions) -> bool:
    if words[-1].end - words[0].start > options.max_cue_seconds:
        return False
    return len(_wrap([w.text for w in words], options.max_line_chars, prefix)) <= options.max_lines


def _punctuation_break(words: Sequence[Word], start: int, stop: int) -> int:
    """Move an overflowing cue's end back to a sentence end, else a clause end, if one is late.

    "Late" means the cue keeps at least half its characters, so a break never leaves a stub.
    """
    lengths = [len(w.text) + 1 for w in words[start:stop]]
    total = sum(lengths)
    for marks in (_SENTENCE_END, _CLAUSE_END):
        for end in range(stop, start, -1):
            if sum(lengths[: end - start]) * 2 < total:
                break
            last = words[end - 1].text.rstrip(_CLOSERS)
            if last and last[-1] in marks:
                return end
    return stop


def _balanced_lines(texts: Sequence[str], prefix: int, options: CueOptions) -> tuple[str, ...]:
    """Wrap at the narrowest width that needs no more lines than the widest allowed one."""
    width = options.max_line_chars
    needed = len(_wrap(texts, width, prefix))
    for narrower in range(1, width):
        lines = _wrap(texts, narrower, prefix)
        if len(lines) <= needed:
            return tuple(lines)
    return tuple(_wrap(texts, width, prefix))


def _without_overlaps(cues: list[Cue], gap: float) -> list[Cue]:
    """Clamp each cue's end to the next start (less ``gap``); push a start that is still early."""
    out: list[Cue] = []
    for index, cue in enumerate(cues):
        start = max(cue.start, out[-1].end + gap) if out else cue.start
        end = max(cue.end, start + _MIN_CUE_SECONDS)
        if index + 1 < len(cues) and cues[index + 1].start - gap > start:
            end = min(end, cues[index + 1].start - gap)
        out.append(Cue(start, end, cue.lines, cue.speaker))
    return out


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
