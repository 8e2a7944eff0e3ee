"""The records stages hand each other: speech spans, words, segments, transcripts.

They are small frozen dataclasses that round-trip through JSON in the job directory.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from voxflow.atomic import write_json


@dataclass(frozen=True)
class SpeechSpan:
    """A stretch of audio that holds speech, in seconds from the start."""

    start: float
    end: float

    @staticmethod
    def load(path: str | Path) -> list[SpeechSpan]:
        """The spans the vad stage wrote to ``speech.json``."""
        return [SpeechSpan(**s) for s in json.loads(Path(path).read_text())]


@dataclass(frozen=True)
class Word:
    """One recognised word with its timing (seconds), the model's confidence and, once
    diarized, its speaker."""

    start: float
    end: float
    text: str
    probability: float = 1.0
    speaker: str | None = None


@dataclass(frozen=True)
class Segment:
    """A run of words the recogniser emitted together.

    Attributes:
        avg_logprob: The decoder's mean token log-probability, where the backend gives it.
        no_speech_prob: The decoder's probability that the window held no speech, likewise.
        flag: Why the hallucination guard took this segment for made-up text (None: it did
            not); a flagged segment stays in the JSON and leaves the subtitles and text.
        language: The spoken language of this segment (ISO 639-1), as the model detected it
            for the window it was decoded in (or as the run forced it).
        language_probability: The model's probability for that language (None: forced, or a
            model that cannot detect).
        repair: How the guard's repair decoded this segment again, when it did.
    """

    start: float
    end: float
    text: str
    words: tuple[Word, ...] = ()
    speaker: str | None = None
    avg_logprob: float | None = None
    no_speech_prob: float | None = None
    flag: str | None = None
    language: str | None = None
    language_probability: float | None = None
    repair: str | None = None


@dataclass(frozen=True)
class Transcript:
    """What ASR produced for one media file.

    Attributes:
        language: ISO 639-1 code of the spoken language.
        duration: Length of the audio in seconds.
        segments: Recognised segments in time order.
        model: Which model made it: name, revision, backend, options.
    """

    language: str
    duration: float
    segments: tuple[Segment, ...] = ()
    model: dict[str, Any] = field(default_factory=dict)

    @property
    def text(self) -> str:
        """The whole transcript as one string (what the guard flagged left out)."""
        return " ".join(s.text.strip() for s in self.shown() if s.text.strip())

    def shown(self) -> tuple[Segment, ...]:
        """The segments subtitles and plain text show: all but those the hallucination guard
        flagged, unless the run chose to keep them (``model["guard"]["keep_flagged"]``)."""
        if self.model.get("guard", {}).get("keep_flagged"):
            return self.segments
        return tuple(s for s in self.segments if s.flag is None)

    def languages(self) -> dict[str, float]:
        """Seconds of shown speech per language, most first (segments without one count as
        the transcript's)."""
        seconds: dict[str, float] = {}
        for s in self.shown():
            code = s.language or self.language
            seconds[code] = seconds.get(code, 0.0) + max(0.0, s.end - s.start)
        return {k: round(v, 3) for k, v in sorted(seconds.items(), key=lambda kv: -kv[1])}

    def to_dict(self) -> dict[str, Any]:
        """Plain data for JSON."""
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transcript:
        """Inverse of :meth:`to_dict`."""
        segments = tuple(
            Segment(
                start=s["start"],
                end=s["end"],
                text=s["text"],
                words=tuple(Word(**w) for w in s.get("words", ())),
                speaker=s.get("speaker"),
                avg_logprob=s.get("avg_logprob"),
                no_speech_prob=s.get("no_speech_prob"),
                flag=s.get("flag"),
                language=s.get("language"),
                language_probability=s.get("language_probability"),
                repair=s.get("repair"),
            )
            for s in data.get("segments", ())
        )
        return cls(
            language=data["language"],
            duration=data["duration"],
            segments=segments,
            model=dict(data.get("model", {})),
        )

    def save(self, path: Path) -> Path:
        """Write as JSON, atomically (:mod:`voxflow.atomic`)."""
        return write_json(path, self.to_dict(), ensure_ascii=False, indent=1)

    @classmethod
    def load(cls, path: Path) -> Transcript:
        """Read what :meth:`save` wrote."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))
