"""diarize: who spoke when, and which speaker said each word of the transcript."""

from __future__ import annotations

import json
from abc import abstractmethod
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.backend import Backend, test_audio
from voxflow.atomic import write_json
from voxflow.errors import BadInput

__all__ = ["DiarizeBackend", "Diarization", "SpeakerCount", "SpeakerTurn"]


@dataclass(frozen=True)
class SpeakerTurn:
    """One speaker talking from ``start`` to ``end`` (seconds)."""

    start: float
    end: float
    speaker: str


@dataclass(frozen=True)
class SpeakerCount:
    """How many speakers to find: exactly ``num``, or between ``min`` and ``max`` (each optional).

    Raises:
        BadInput: A count below 1, ``min`` above ``max``, or ``num`` together with a bound.
    """

    num: int | None = None
    min: int | None = None
    max: int | None = None

    def __post_init__(self) -> None:
        for key in ("num", "min", "max"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise BadInput(
                    f"the {key} number of speakers must be a whole number, not {value!r}"
                )
            if value is not None and value < 1:
                raise BadInput(f"the {key} number of speakers must be at least 1, not {value}")
        if self.num is not None and (self.min is not None or self.max is not None):
            raise BadInput("give either an exact number of speakers or a min/max, not both")
        if self.min is not None and self.max is not None and self.min > self.max:
            raise BadInput(
                f"the minimum number of speakers ({self.min}) exceeds the maximum ({self.max})"
            )

    def or_else(self, default: SpeakerCount) -> SpeakerCount:
        """This count when it says anything, else ``default``."""
        return self if (self.num, self.min, self.max) != (None, None, None) else default


@dataclass(frozen=True)
class Diarization:
    """What a diarization backend found.

    Attributes:
        turns: Speaker turns in time order; two speakers may overlap.
        exclusive: The same with at most one speaker at a time (pyannote's "exclusive"
            diarization): what words are matched against.
    """

    turns: tuple[SpeakerTurn, ...] = ()
    exclusive: tuple[SpeakerTurn, ...] = ()

    @property
    def speakers(self) -> tuple[str, ...]:
        """Distinct speaker labels, sorted."""
        return tuple(sorted({t.speaker for t in (*self.turns, *self.exclusive)}))

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``diarization.json``."""
        return {
            "speakers": list(self.speakers),
            "turns": [asdict(t) for t in self.turns],
            "exclusive": [asdict(t) for t in self.exclusive],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Diarization:
        """Inverse of :meth:`to_dict`."""
        return cls(
            turns=tuple(SpeakerTurn(**t) for t in data.get("turns", ())),
            exclusive=tuple(SpeakerTurn(**t) for t in data.get("exclusive", ())),
        )

    def save(self, path: Path) -> Path:
        """Write as JSON, atomically (:mod:`voxflow.atomic`)."""
        return write_json(path, self.to_dict(), indent=1)

    @classmethod
    def load(cls, path: Path) -> Diarization:
        """Read what :meth:`save` wrote."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))


class DiarizeBackend(Backend):
    """A speaker diarizer."""

    stage = "diarize"

    @abstractmethod
    def diarize(self, audio: np.ndarray, sample_rate: int, speakers: SpeakerCount) -> Diarization:
        """Speaker turns of 1-D float32 audio, labelled ``SPEAKER_00``, ``SPEAKER_01``, … in order
        of first appearance, within the audio's duration."""

    def self_check(self) -> str:
        diarization = self.diarize(test_audio(), 16_000, SpeakerCount())
        return f"{len(diarization.turns)} speaker turn(s) in 1 s of test audio"
