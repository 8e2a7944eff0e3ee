"""mlx-whisper ASR on Apple silicon, over the VAD windows, from a local MLX snapshot.

The snapshot is an mlx-community folder (``config.json`` and ``weights.npz`` or
``weights.safetensors``). ``mlx_whisper.transcribe`` only downloads when its
``path_or_hf_repo`` is not an existing folder, and we always hand it the warmed folder.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tasks.asr import AsrBackend, decode_windows, split_sentences
from tasks.extract import SAMPLE_RATE
from tasks.transcript import Segment, SpeechSpan, Transcript, Word
from voxflow.errors import BackendUnavailable, ModelNotWarmed, ProfileError

log = logging.getLogger(__name__)

DTYPES = ("float16", "float32")
WEIGHT_FILES = ("weights.npz", "weights.safetensors")


@dataclass(frozen=True)
class MlxWhisperOptions:
    """mlx-whisper options.

    Attributes:
        dtype: ``float16`` (the GPU's fast path) or ``float32``.
        word_timestamps: Time each word (needed for exact subtitle cues).
        condition_on_previous_text: Feed each window's text to the next (more fluent, but a
            hallucination can then repeat).
    """

    dtype: str = "float16"
    word_timestamps: bool = True
    condition_on_previous_text: bool = False

    def __post_init__(self) -> None:
        if self.dtype not in DTYPES:
            raise ProfileError(
                f"unknown dtype {self.dtype!r}", key_path="stages.asr.options.dtype", allowed=DTYPES
            )


class MlxWhisperAsr(AsrBackend):
    """``mlx_whisper.transcribe`` with the VAD windows as its clip timestamps.

    mlx-whisper has no beam search (its decoder refuses ``beam_size``), so this backend decodes
    greedily and offers no ``beam_size`` option. It detects the language once, on the first
    window, and decodes the whole recording in it (``detects_language`` is False: ``voxflow
    profiles`` says so); pass ``--language`` for a recording in another.
    """

    name = "mlx-whisper"
    detects_language = False
    Options = MlxWhisperOptions
    requires = (("mlx_whisper", "mlx-whisper"),)

    def __init__(self, model_path: Path, options: MlxWhisperOptions) -> None:
        super().__init__(model_path, options)
        try:
            import mlx_whisper
        except ImportError as e:
            raise BackendUnavailable(
                "asr",
                self.name,
                "mlx-whisper",
                "install it with `pip install mlx-whisper` (Apple silicon only)",
            ) from e
        folder = Path(str(model_path))
        if not (folder / "config.json").is_file() or not any(
            (folder / f).is_file() for f in WEIGHT_FILES
        ):
            raise ModelNotWarmed(
                folder.name,
                str(folder),
                f"an MLX Whisper folder needs config.json and one of {', '.join(WEIGHT_FILES)}",
                "voxflow warm --profile mlx",
            )
        self._transcribe = mlx_whisper.transcribe

    def transcribe(
        self, audio: np.ndarray, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe the speech windows of 16 kHz audio."""
        duration = len(audio) / SAMPLE_RATE
        windows = decode_windows(audio, spans)
        if not windows:
            return Transcript(language=language or "en", duration=duration)
        opts = self.options
        result = self._transcribe(
            np.asarray(audio, dtype=np.float32),
            path_or_hf_repo=str(self.model_path),
            word_timestamps=opts.word_timestamps,
            clip_timestamps=[t for w in windows for t in (w.start, min(w.end, duration))],
            condition_on_previous_text=opts.condition_on_previous_text,
            fp16=opts.dtype == "float16",
            language=language,
            task="transcribe",
            verbose=None,
        )
        segments = [
            piece for seg in result.get("segments", ()) for piece in split_sentences(_segment(seg))
        ]
        segments.sort(key=lambda s: s.start)
        return Transcript(
            language=result.get("language") or language or "en",
            duration=duration,
            segments=tuple(segments),
        )


def _segment(seg: dict[str, Any]) -> Segment:
    words = tuple(
        Word(
            start=round(float(w["start"]), 3),
            end=round(float(w["end"]), 3),
            text=w["word"],
            probability=round(float(w.get("probability", 1.0)), 4),
        )
        for w in seg.get("words") or ()
    )
    return Segment(
        start=round(float(seg["start"]), 3),
        end=round(float(seg["end"]), 3),
        text=str(seg["text"]).strip(),
        words=words,
    )
