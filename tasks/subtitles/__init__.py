"""Subtitles and transcript files from a :class:`~tasks.transcript.Transcript`.

Cues come from the subtitle compiler (:mod:`tasks.subtitles.layout`) under a named rule set
(:mod:`tasks.subtitles.rules`, ``netflix-en`` by default); :mod:`tasks.subtitles.check` lints
any subtitle file against the same rules. The renderers (SRT, WebVTT, plain text, JSON) and
:func:`write_outputs` sit here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from tasks.subtitles.layout import Cue, compile_cues, speaker_prefix
from tasks.subtitles.rules import DEFAULT_RULES, RuleSet, rule_set
from tasks.transcript import Transcript
from voxflow.atomic import write_text
from voxflow.errors import BadInput

__all__ = [
    "FORMATS",
    "Cue",
    "RuleSet",
    "format_timestamp",
    "make_cues",
    "parse_formats",
    "rule_set",
    "to_json",
    "to_srt",
    "to_txt",
    "to_vtt",
    "write_outputs",
]

FORMATS = ("srt", "vtt", "json", "txt")

_DEFAULT_RULES = rule_set(DEFAULT_RULES)


def make_cues(transcript: Transcript, rules: RuleSet = _DEFAULT_RULES) -> list[Cue]:
    """Lay a transcript out as subtitle cues under ``rules`` (:mod:`tasks.subtitles.layout`).

    Returns:
        Cues in time order that never overlap, each with ``end > start``.
    """
    return compile_cues(transcript, rules)


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


def to_srt(
    transcript: Transcript, rules: RuleSet = _DEFAULT_RULES, cues: list[Cue] | None = None
) -> str:
    """Render SubRip: numbered cues, speaker as a ``"SPEAKER: "`` prefix on the first line.

    ``cues``, when given, are the transcript's cues under ``rules`` already laid out.
    """
    blocks = []
    for number, cue in enumerate(cues or make_cues(transcript, rules), 1):
        lines = list(cue.lines)
        lines[0] = speaker_prefix(cue.speaker) + lines[0]
        times = f"{format_timestamp(cue.start)} --> {format_timestamp(cue.end)}"
        blocks.append(f"{number}\n{times}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def to_vtt(
    transcript: Transcript, rules: RuleSet = _DEFAULT_RULES, cues: list[Cue] | None = None
) -> str:
    """Render WebVTT: a ``WEBVTT`` header, speaker as a ``<v SPEAKER>`` voice tag.

    The cues are the same as SRT's (room for the speaker prefix included), so both files agree.
    """
    blocks = ["WEBVTT\n"]
    for cue in cues or make_cues(transcript, rules):
        lines = [_vtt_escape(line) for line in cue.lines]
        if cue.speaker:
            lines[0] = f"<v {_vtt_escape(cue.speaker)}>{lines[0]}"
        times = f"{format_timestamp(cue.start, '.')} --> {format_timestamp(cue.end, '.')}"
        blocks.append(f"{times}\n" + "\n".join(lines) + "\n")
    return "\n".join(blocks)


def to_txt(transcript: Transcript) -> str:
    """Render plain text: one segment per line, with a ``"SPEAKER: "`` prefix when known."""
    lines = [
        speaker_prefix(s.speaker) + s.text.strip() for s in transcript.shown() if s.text.strip()
    ]
    return "".join(f"{line}\n" for line in lines)


def to_json(transcript: Transcript) -> str:
    """Render JSON with the transcript's language, duration, text, model and segments."""
    data = {
        "language": transcript.language,
        "languages": transcript.languages(),
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
                "language": s.language or transcript.language,
                "language_probability": s.language_probability,
                # flagged text stays here with the guard's reason, out of the subtitles
                **({"flag": s.flag} if s.flag else {}),
                **({"repair": s.repair} if s.repair else {}),
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
    rules: RuleSet = _DEFAULT_RULES,
    cues: list[Cue] | None = None,
) -> dict[str, Path]:
    """Write ``<stem>.<fmt>`` in ``directory`` for each format, each file atomically.

    Args:
        transcript: What to render.
        directory: Where the files go; created if missing.
        stem: File name without suffix.
        formats: Formats as :func:`parse_formats` accepts them.
        rules: The rule set the subtitle formats' cues keep.
        cues: The cues under ``rules``, when already laid out (else laid out once, here).

    Returns:
        The written path for each format, in the order asked.

    Raises:
        BadInput: A format is unknown, or none was given.
    """
    formats = parse_formats(formats)
    if cues is None and {"srt", "vtt"} & set(formats):
        cues = make_cues(transcript, rules)
    renderers: dict[str, Callable[[], str]] = {
        "srt": lambda: to_srt(transcript, rules, cues),
        "vtt": lambda: to_vtt(transcript, rules, cues),
        "json": lambda: to_json(transcript),
        "txt": lambda: to_txt(transcript),
    }
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    paths = {}
    for fmt in formats:
        path = directory / f"{stem}.{fmt}"
        write_text(path, renderers[fmt]())
        paths[fmt] = path
    return paths


def _vtt_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
