"""Silero VAD v6 on ONNX Runtime, loaded from the model volume.

faster-whisper's own helper always loads the copy inside its package; here the ONNX file comes
from the warmed volume, and the speech-span logic (hysteresis on the frame probabilities) is ours.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.transcript import SpeechSpan
from tasks.vad import VadBackend
from voxflow.errors import ProfileError

WINDOW = 512  # samples per Silero frame at 16 kHz (32 ms)
MODEL_FILE = "silero_vad_v6.onnx"


@dataclass(frozen=True)
class SileroOptions:
    """Silero VAD options.

    Attributes:
        threshold: Frame probability at or above which speech starts.
        min_speech_ms: Spans shorter than this are dropped.
        min_silence_ms: Silence this long ends a span.
        speech_pad_ms: Padding added on each side of a span.
        max_speech_s: Longer spans are cut at their least speech-like frame.
    """

    threshold: float = 0.5
    min_speech_ms: int = 250
    min_silence_ms: int = 500
    speech_pad_ms: int = 200
    max_speech_s: float = 30.0

    def __post_init__(self) -> None:
        if not 0.0 < self.threshold < 1.0:
            raise ProfileError(
                f"expected a probability in (0, 1), found {self.threshold}",
                key_path="stages.vad.options.threshold",
            )
        if self.max_speech_s * 1000 <= 2 * self.speech_pad_ms + self.min_speech_ms:
            raise ProfileError(
                f"max_speech_s ({self.max_speech_s} s) must exceed twice speech_pad_ms "
                f"({self.speech_pad_ms} ms) plus min_speech_ms ({self.min_speech_ms} ms)",
                key_path="stages.vad.options.max_speech_s",
            )


class SileroVad(VadBackend):
    """Silero VAD through onnxruntime."""

    name = "silero"
    Options = SileroOptions
    requires = (("onnxruntime", "onnxruntime"), ("faster_whisper", "faster-whisper"))

    def __init__(self, model_path: Path | None, options: SileroOptions) -> None:
        super().__init__(model_path, options)
        from faster_whisper.vad import SileroVADModel  # loads an ONNX file from a given path

        self._model = SileroVADModel(str(Path(model_path) / MODEL_FILE))

    def probabilities(self, audio: np.ndarray) -> np.ndarray:
        """Speech probability of each 32 ms frame."""
        padded = np.pad(audio, (0, (-len(audio)) % WINDOW or WINDOW))
        return np.asarray(self._model(padded)).reshape(-1)

    def speech_spans(self, audio: np.ndarray, sample_rate: int) -> list[SpeechSpan]:
        """Speech spans of 16 kHz audio, in seconds."""
        if sample_rate != 16_000:
            raise ValueError(f"Silero VAD expects 16 kHz audio, found {sample_rate} Hz")
        if len(audio) == 0:
            return []
        audio = np.asarray(audio, dtype=np.float32)
        frames = spans_from_probabilities(self.probabilities(audio), self.options)
        duration = len(audio) / sample_rate
        frame_s = WINDOW / sample_rate
        return [
            SpeechSpan(round(start * frame_s, 3), round(min(end * frame_s, duration), 3))
            for start, end in frames
        ]


def spans_from_probabilities(probs: np.ndarray, options: SileroOptions) -> list[tuple[int, int]]:
    """Hysteresis over frame probabilities: frame-index spans [start, end), padded and merged.

    A span opens at the first frame >= threshold and closes once probabilities stay below
    threshold - 0.15 for min_silence_ms; spans longer than max_speech_s are cut at their least
    speech-like frame, short ones dropped, then each is padded and overlapping ones merged.
    """
    frame_ms = 1000 * WINDOW / 16_000
    off = max(options.threshold - 0.15, 0.01)
    min_silence = max(1, round(options.min_silence_ms / frame_ms))
    spans: list[tuple[int, int]] = []
    start: int | None = None
    silent_since: int | None = None
    for i, p in enumerate(probs):
        if start is None:
            if p >= options.threshold:
                start, silent_since = i, None
            continue
        if p >= options.threshold:
            silent_since = None
        elif p < off:
            silent_since = i if silent_since is None else silent_since
            if i - silent_since >= min_silence:
                spans.append((start, silent_since))
                start, silent_since = None, None
    if start is not None:
        spans.append((start, silent_since if silent_since is not None else len(probs)))

    pad = round(options.speech_pad_ms / frame_ms)
    max_len = max(1, int(options.max_speech_s * 1000 / frame_ms) - 2 * pad)
    cut: list[tuple[int, int]] = []
    for s, e in spans:
        while e - s > max_len:
            lo = s + max_len // 2
            split = max(s + 1, lo + int(np.argmin(probs[lo : s + max_len])))
            cut.append((s, split))
            s = split
        cut.append((s, e))
    min_len = options.min_speech_ms / frame_ms
    kept = [(s, e) for s, e in cut if e - s >= min_len]

    merged: list[tuple[int, int]] = []
    for s, e in kept:
        s, e = max(0, s - pad), min(len(probs), e + pad)
        if merged and s <= merged[-1][1]:
            # Split pieces of one long span must stay under max_speech_s, so meet halfway.
            mid = (merged[-1][1] - pad + s + pad) // 2
            merged[-1] = (merged[-1][0], mid)
            s = mid
        merged.append((s, e))
    return merged
