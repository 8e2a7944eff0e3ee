"""pyannote segmentation (3.0) as a voice activity detector, loaded from the model volume.

The segmentation model scores every frame for up to three local speakers; pyannote's
``VoiceActivityDetection`` pipeline keeps, per frame, the most active one, and hysteresis
thresholding plus the duration rules turn that into speech regions.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.diarize.pyannote_local import REQUIRES, import_pyannote, load_model, waveform_input
from tasks.transcript import SpeechSpan
from tasks.vad import VadBackend
from voxflow.errors import ProfileError

_WHERE = "stages.vad.options"


@dataclass(frozen=True)
class PyannoteVadOptions:
    """pyannote segmentation VAD options.

    Attributes:
        device: Torch device the model runs on (``cpu``, ``cuda``, ``mps``).
        batch_size: Sliding-window chunks scored per forward pass.
        min_duration_on: Speech regions shorter than this (seconds) are dropped.
        min_duration_off: Gaps shorter than this (seconds) are filled.
        onset: Score at which speech starts. Only models with independent per-speaker scores
            use it; a powerset model (segmentation-3.0) already decides each frame, so
            pyannote fixes its thresholds at 0.5.
        offset: Score below which speech ends (same caveat as ``onset``).
    """

    device: str = "cpu"
    batch_size: int = 32
    min_duration_on: float = 0.0
    min_duration_off: float = 0.0
    onset: float = 0.5
    offset: float = 0.5

    def __post_init__(self) -> None:
        for key in ("onset", "offset"):
            value = getattr(self, key)
            if not 0.0 <= value <= 1.0:
                raise ProfileError(
                    f"expected a score in [0, 1], found {value}", key_path=f"{_WHERE}.{key}"
                )
        if self.offset > self.onset:
            raise ProfileError(
                f"offset ({self.offset}) must not exceed onset ({self.onset})",
                key_path=f"{_WHERE}.offset",
            )
        for key in ("min_duration_on", "min_duration_off"):
            if getattr(self, key) < 0:
                raise ProfileError(
                    f"expected seconds >= 0, found {getattr(self, key)}",
                    key_path=f"{_WHERE}.{key}",
                )
        if self.batch_size < 1:
            raise ProfileError(
                f"expected a batch size >= 1, found {self.batch_size}",
                key_path=f"{_WHERE}.batch_size",
            )


class PyannoteVad(VadBackend):
    """pyannote's voice activity detection pipeline over a local segmentation model."""

    name = "pyannote"
    Options = PyannoteVadOptions
    requires = REQUIRES

    def __init__(self, model_path: Path, options: PyannoteVadOptions) -> None:
        super().__init__(model_path, options)
        import_pyannote("vad")
        import torch
        from pyannote.audio.pipelines import VoiceActivityDetection

        model = load_model(str(model_path), "pyannote segmentation", options.device, "vad")
        self._pipeline = VoiceActivityDetection(
            segmentation=model, batch_size=options.batch_size, device=torch.device(options.device)
        )
        params = {
            "min_duration_on": options.min_duration_on,
            "min_duration_off": options.min_duration_off,
        }
        if not model.specifications.powerset:
            params.update(onset=options.onset, offset=options.offset)
        self._pipeline.instantiate(params)

    def speech_spans(self, audio: np.ndarray, sample_rate: int) -> list[SpeechSpan]:
        """Speech spans of 16 kHz audio, in seconds, sorted and within the audio."""
        if sample_rate != 16_000:
            raise ValueError(f"pyannote VAD expects 16 kHz audio, found {sample_rate} Hz")
        if len(audio) == 0:
            return []
        # rounded down, so a rounded end never passes the audio's last sample
        duration = math.floor(1000 * len(audio) / sample_rate) / 1000
        speech = self._pipeline(waveform_input(audio, sample_rate))
        spans = []
        for region in speech.get_timeline().support():
            start, end = round(max(region.start, 0.0), 3), min(round(region.end, 3), duration)
            if end > start:
                spans.append(SpeechSpan(start, end))
        return spans
