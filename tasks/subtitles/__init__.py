"""Subtitles and transcript files from a :class:`~tasks.transcript.Transcript`.

Cues come from the subtitle compiler (:mod:`tasks.subtitles.layout`) under a named rule set
(:mod:`tasks.subtitles.rules`, ``netflix-en`` by default); :mod:`tasks.subtitles.check` lints
any subtitle file against the same rules. The cue formats (SRT, WebVTT, TTML in the IMSC 1.1
Text profile, ASS) are rendered in :mod:`tasks.subtitles.formats`; plain text, JSON and
:func:`write_outputs` sit here.
"""

from __future__ import annotations

import json
from collections.abc import Callable, Iterable
from pathlib import Path

from tasks.subtitles import formats as render
from tasks.subtitles.formats import format_timestamp
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

FORMATS = ("srt", "vtt", "json", "txt", "ttml", "ass")

_CUE_FORMATS = frozenset({"srt", "vtt", "ttml", "ass"})

_DEFAULT_RULES = rule_set(DEFAULT_RULES)


def make_cues(transcript: Transcript, rules: RuleSet = _DEFAULT_RULES) -> list[Cue]:
    """Lay a transcript out as subtitle cues under ``rules`` (:mod:`tasks.subtitles.layout`).

    Returns:
        Cues in time order that never overlap, each with ``end > start``.
    """
    return compile_cues(transcript, rules)


def to_srt(
    transcript: Transcript, rules: RuleSet = _DEFAULT_RULES, cues: list[Cue] | None = None
) -> str:
    """Render SubRip: numbered cues, speaker as a ``"SPEAKER: "`` prefix on the first line.

    ``cues``, when given, are the transcript's cues under ``rules`` already laid out.
    """
    return render.srt(make_cues(transcript, rules) if cues is None else cues)


def to_vtt(
    transcript: Transcript, rules: RuleSet = _DEFAULT_RULES, cues: list[Cue] | None = None
) -> str:
    """Render WebVTT: a ``WEBVTT`` header, speaker as a ``<v SPEAKER>`` voice tag.

    The cues are the same as SRT's (room for the speaker prefix included), so both files agree.
    """
    return render.vtt(make_cues(transcript, rules) if cues is None else cues)


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
    if cues is None and _CUE_FORMATS & set(formats):
        cues = make_cues(transcript, rules)
    renderers: dict[str, Callable[[], str]] = {
        "srt": lambda: render.srt(cues),
        "vtt": lambda: render.vtt(cues),
        "ttml": lambda: render.ttml(cues, transcript.language, rules.fps),
        "ass": lambda: render.ass(cues),
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
