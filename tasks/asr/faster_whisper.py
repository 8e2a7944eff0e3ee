"""faster-whisper (CTranslate2) ASR, batched over VAD windows, loaded from a local folder."""

from __future__ import annotations

import logging
from bisect import bisect_right
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
        """Transcribe the speech windows of 16 kHz audio, a batch's worth of them (at most
        :data:`STRETCH_S`) per call, reading only the windows' audio, so a long recording is
        never read or held whole.

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
        most = max(self.options.batch_size, 8)
        for windows in stretches(decode_windows(audio, spans), most=most):
            # Only the windows' audio, end to end: each is decoded as its own clip.
            pieces = [np.asarray(audio[_at(w.start) : _at(w.end)], np.float32) for w in windows]
            starts = [float(x) for x in np.cumsum([0, *map(len, pieces)]) / SAMPLE_RATE]
            clips = [SpeechSpan(a, b) for a, b in zip(starts, starts[1:], strict=False)]
            segments, info = self._decode(np.concatenate(pieces), clips, language)
            del pieces
            for seg in segments:
                # The clip a segment came from: its decoding position (``seek``, in 10 ms
                # frames, truncated), not its start, which the decoder may put a bit earlier.
                k = max(0, bisect_right(starts, seg.seek / FRAMES_PER_SECOND + 0.011) - 1)
                window = windows[min(k, len(windows) - 1)]
                shift = window.start - starts[k]
                out.extend(split_sentences(_segment(seg, shift, window)))
                if seg.end + shift >= next_report:
                    log.info("asr: %.0f / %.0f s", min(seg.end + shift, duration), duration)
                    next_report = seg.end + shift + max(30.0, duration / 10)
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
"""The most window audio decoded in one call (read, and held, at once)."""


def stretches(
    windows: list[SpeechSpan], limit: float = STRETCH_S, most: int = 8
) -> list[list[SpeechSpan]]:
    """Consecutive windows grouped so that each group holds at most ``limit`` seconds of
    audio and at most ``most`` windows (faster-whisper's memory grows with the windows of a
    call; one call of a batch's worth of windows loses no batching)."""
    groups: list[list[SpeechSpan]] = []
    held = 0.0
    for w in windows:
        if groups and held + (w.end - w.start) <= limit and len(groups[-1]) < most:
            groups[-1].append(w)
            held += w.end - w.start
        else:
            groups.append([w])
            held = w.end - w.start
    return groups


FRAMES_PER_SECOND = 100
"""faster-whisper's feature frames per second, the unit of a segment's ``seek``."""


def _at(seconds: float) -> int:
    """The sample at ``seconds``."""
    return int(round(seconds * SAMPLE_RATE))


def _segment(seg, offset: float = 0.0, window: SpeechSpan | None = None) -> Segment:
    """voxflow's segment for a faster-whisper segment of audio that began ``offset`` s in.

    With ``window``, the clip it was decoded from, times are kept inside that window (the
    decoder's 20 ms timestamps may put a first word a little before its clip began).
    """
    lo, hi = (window.start, window.end) if window else (-np.inf, np.inf)

    def at(t: float) -> float:
        return round(float(min(max(t + offset, lo), hi)), 3)

    words = tuple(
        Word(
            start=at(w.start),
            end=at(w.end),
            text=w.word,
            probability=round(float(w.probability), 4),
        )
        for w in (seg.words or ())
    )
    return Segment(
        start=at(seg.start),
        end=at(seg.end),
        text=seg.text.strip(),
        words=words,
        avg_logprob=round(float(seg.avg_logprob), 4),
        no_speech_prob=round(float(seg.no_speech_prob), 4),
    )
