"""vad: find the stretches of audio that hold speech."""

from __future__ import annotations

from abc import abstractmethod

import numpy as np

from tasks.backend import Backend, test_audio
from tasks.transcript import SpeechSpan

__all__ = ["VadBackend", "SpeechSpan"]


class VadBackend(Backend):
    """A voice activity detector."""

    stage = "vad"

    @abstractmethod
    def speech_spans(self, audio: np.ndarray, sample_rate: int) -> list[SpeechSpan]:
        """Speech spans of 1-D float32 audio, in seconds, in time order, not overlapping."""

    def self_check(self) -> str:
        spans = self.speech_spans(test_audio(), 16_000)
        return f"{len(spans)} speech span(s) in 1 s of test audio"
