"""faster-whisper (CTranslate2) ASR, batched over VAD windows, loaded from a local folder."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tasks.asr import AsrBackend, check_language, decode_windows, split_sentences
from tasks.extract import SAMPLE_RATE, Wav
from tasks.transcript import Segment, SpeechSpan, Transcript, Word

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class FasterWhisperOptions:
    """faster-whisper options.

    Attributes:
        device: ``cpu``, ``cuda`` or ``auto``.
        compute_type: CTranslate2 compute type (``int8``, ``float16``, ``int8_float16``, ...).
        batch_size: Windows decoded together; 1 runs the sequential decoder.
        beam_size: Beam width.
        cpu_threads: Threads per CTranslate2 replica; 0 lets CTranslate2 choose.
        word_timestamps: Align words (needed for exact subtitle cues).
    """

    device: str = "cpu"
    compute_type: str = "int8"
    batch_size: int = 8
    beam_size: int = 5
    cpu_threads: int = 0
    word_timestamps: bool = True


class FasterWhisperAsr(AsrBackend):
    """faster-whisper's WhisperModel (and BatchedInferencePipeline when batch_size > 1)."""

    name = "faster-whisper"
    Options = FasterWhisperOptions
    requires = (("faster_whisper", "faster-whisper"), ("ctranslate2", "ctranslate2"))

    def __init__(self, model_path: Path, options: FasterWhisperOptions) -> None:
        super().__init__(model_path, options)
        from faster_whisper import BatchedInferencePipeline, WhisperModel

        self.model = WhisperModel(
            str(model_path),
            device=options.device,
            compute_type=options.compute_type,
            cpu_threads=options.cpu_threads,
            local_files_only=True,
        )
        self.pipeline = BatchedInferencePipeline(self.model) if options.batch_size > 1 else None

    def transcribe(
        self, audio: np.ndarray | Wav, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe the speech windows of 16 kHz audio, a stretch of at most
        :data:`STRETCH_S` at a time, so a long recording is never read whole.

        The first stretch's language, when none is given, holds for the rest.

        Raises:
            BadInput: A language other than English was asked of an English-only model.
        """
        duration = len(audio) / SAMPLE_RATE
        check_language(self.model_path, self.model.model.is_multilingual, language)
        if not spans:
            return Transcript(language=language or "en", duration=duration)
        out: list[Segment] = []
        next_report = 0.0
        for windows in stretches(decode_windows(audio, spans)):
            lo = int(windows[0].start * SAMPLE_RATE)
            hi = min(len(audio), int(np.ceil(windows[-1].end * SAMPLE_RATE)))
            offset, length = lo / SAMPLE_RATE, (hi - lo) / SAMPLE_RATE
            segments, info = self._decode(
                np.asarray(audio[lo:hi], dtype=np.float32),
                [SpeechSpan(max(w.start - offset, 0.0), min(w.end - offset, length))
                 for w in windows],
                language,
            )  # fmt: skip
            for seg in segments:
                out.extend(split_sentences(_segment(seg, offset)))
                if seg.end + offset >= next_report:
                    log.info("asr: %.0f / %.0f s", min(seg.end + offset, duration), duration)
                    next_report = seg.end + offset + max(30.0, duration / 10)
            language = language or info.language
        out.sort(key=lambda s: s.start)
        return Transcript(language=language, duration=duration, segments=tuple(out))

    def _decode(self, audio: np.ndarray, windows: list[SpeechSpan], language: str | None):
        """faster-whisper's segments (a generator) and info for these windows of ``audio``."""
        opts = self.options
        if self.pipeline is not None:
            return self.pipeline.transcribe(
                audio,
                language=language,
                beam_size=opts.beam_size,
                word_timestamps=opts.word_timestamps,
                clip_timestamps=[{"start": w.start, "end": w.end} for w in windows],
                batch_size=opts.batch_size,
            )
        return self.model.transcribe(
            audio,
            language=language,
            beam_size=opts.beam_size,
            word_timestamps=opts.word_timestamps,
            clip_timestamps=[t for w in windows for t in (w.start, w.end)],
            vad_filter=False,
        )


STRETCH_S = 600.0
"""The most audio, first window's start to last window's end, decoded in one call."""


def stretches(windows: list[SpeechSpan], limit: float = STRETCH_S) -> list[list[SpeechSpan]]:
    """Consecutive windows grouped so that each group spans at most ``limit`` seconds."""
    groups: list[list[SpeechSpan]] = []
    for w in windows:
        if groups and w.end - groups[-1][0].start <= limit:
            groups[-1].append(w)
        else:
            groups.append([w])
    return groups


def _segment(seg, offset: float = 0.0) -> Segment:
    """voxflow's segment for a faster-whisper segment of audio that began ``offset`` s in."""
    words = tuple(
        Word(
            start=round(w.start + offset, 3),
            end=round(w.end + offset, 3),
            text=w.word,
            probability=round(float(w.probability), 4),
        )
        for w in (seg.words or ())
    )
    return Segment(
        start=round(seg.start + offset, 3),
        end=round(seg.end + offset, 3),
        text=seg.text.strip(),
        words=words,
        avg_logprob=round(float(seg.avg_logprob), 4),
        no_speech_prob=round(float(seg.no_speech_prob), 4),
    )
