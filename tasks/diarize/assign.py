"""Put speaker labels on a transcript: each word gets the speaker it overlaps most.

Words are matched against speaker turns by temporal overlap (a word in a gap between turns takes
the nearest turn's speaker). A segment whose words all belong to one speaker takes that speaker;
a segment whose words change speaker is split at each change, so a subtitle never puts two voices
under one label. A lone word between two runs of the same other speaker is taken as boundary
noise and joins them.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np

from tasks.transcript import Segment, Transcript, Word

if TYPE_CHECKING:
    from tasks.diarize import Diarization, SpeakerTurn


class _Turns:
    """Speaker turns as arrays, for overlap queries."""

    def __init__(self, turns: Sequence[SpeakerTurn]) -> None:
        self.starts = np.array([t.start for t in turns], dtype=np.float64)
        self.ends = np.array([t.end for t in turns], dtype=np.float64)
        self.labels = sorted({t.speaker for t in turns})
        index = {label: i for i, label in enumerate(self.labels)}
        self.ids = np.array([index[t.speaker] for t in turns], dtype=np.int64)

    def speaker(self, start: float, end: float) -> str | None:
        """The speaker overlapping [start, end] most; the nearest one when none overlaps."""
        if not self.labels:
            return None
        overlap = np.clip(np.minimum(self.ends, end) - np.maximum(self.starts, start), 0.0, None)
        if overlap.max() > 0.0:
            per_speaker = np.bincount(self.ids, weights=overlap, minlength=len(self.labels))
            return self.labels[int(np.argmax(per_speaker))]
        gap = np.maximum(self.starts - end, start - self.ends)
        return self.labels[int(self.ids[int(np.argmin(gap))])]


def assign_speakers(transcript: Transcript, diarization: Diarization) -> Transcript:
    """The transcript with a speaker on every word and segment (segments split where it changes).

    Args:
        transcript: What ASR produced.
        diarization: Speaker turns; the exclusive ones (one speaker at a time) when present.

    Returns:
        A new transcript; unchanged (speakers None) when the diarization found no one.
    """
    turns = _Turns(diarization.exclusive or diarization.turns)
    if not turns.labels:
        return transcript
    segments: list[Segment] = []
    for segment in transcript.segments:
        if not segment.words:
            segments.append(
                dataclasses.replace(segment, speaker=turns.speaker(segment.start, segment.end))
            )
            continue
        words = [
            dataclasses.replace(w, speaker=turns.speaker(w.start, w.end)) for w in segment.words
        ]
        segments.extend(_split(segment, _smooth(words)))
    return dataclasses.replace(transcript, segments=tuple(segments))


def _runs(words: Sequence[Word]) -> list[list[Word]]:
    runs: list[list[Word]] = []
    for word in words:
        if runs and runs[-1][-1].speaker == word.speaker:
            runs[-1].append(word)
        else:
            runs.append([word])
    return runs


def _smooth(words: list[Word]) -> list[Word]:
    """Give a one-word run between two runs of the same other speaker to that speaker."""
    runs = _runs(words)
    for i in range(1, len(runs) - 1):
        before, lone, after = runs[i - 1], runs[i], runs[i + 1]
        if len(lone) == 1 and before[-1].speaker == after[0].speaker:
            runs[i] = [dataclasses.replace(lone[0], speaker=before[-1].speaker)]
    return [w for run in runs for w in run]


def _split(segment: Segment, words: list[Word]) -> list[Segment]:
    runs = _runs(words)
    if len(runs) == 1:
        return [dataclasses.replace(segment, words=tuple(words), speaker=words[0].speaker)]
    pieces = []
    for i, run in enumerate(runs):
        pieces.append(
            Segment(
                start=segment.start if i == 0 else run[0].start,
                end=segment.end if i == len(runs) - 1 else run[-1].end,
                text="".join(w.text for w in run),
                words=tuple(run),
                speaker=run[0].speaker,
            )
        )
    return pieces
