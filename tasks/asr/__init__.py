"""asr: speech to text with word timestamps, over the speech spans VAD found."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from tasks.backend import Backend
from tasks.transcript import SpeechSpan, Transcript

__all__ = ["AsrBackend", "group_spans"]


class AsrBackend(Backend):
    """A speech recogniser."""

    stage = "asr"

    @abstractmethod
    def transcribe(
        self, audio: np.ndarray, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe 16 kHz float32 audio, looking only at the given speech spans."""


def group_spans(spans: list[SpeechSpan], window: float = 30.0) -> list[SpeechSpan]:
    """Merge neighbouring speech spans into windows of at most ``window`` seconds.

    Whisper decodes 30 s at a time; giving it whole windows of contiguous audio (short pauses
    included) instead of one window per VAD span keeps batches full and context intact. A span
    longer than the window is kept as it is.
    """
    groups: list[SpeechSpan] = []
    for span in spans:
        if groups and span.end - groups[-1].start <= window:
            groups[-1] = SpeechSpan(groups[-1].start, span.end)
        else:
            groups.append(span)
    return groups
