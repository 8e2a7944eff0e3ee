"""faster-whisper (CTranslate2) ASR, batched over VAD windows, loaded from a local folder."""

from __future__ import annotations

import logging
from bisect import bisect_right
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np

from tasks import progress
from tasks.asr import (
    MIXED_LANGUAGE_PROBABILITY,
    AsrBackend,
    Detected,
    absorb_unsure,
    check_language,
    confident_switch,
    decode_windows,
    language_runs,
    main_language,
    smooth_languages,
    split_sentences,
)
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
        self.multilingual = bool(self.model.model.is_multilingual)

    def transcribe(
        self, audio: np.ndarray | Wav, spans: list[SpeechSpan], language: str | None
    ) -> Transcript:
        """Transcribe the speech windows of 16 kHz audio, a batch's worth of them (at most
        :data:`STRETCH_S`) per call, reading only the windows' audio, so a long recording is
        never read or held whole.

        Without ``language``, a multilingual model detects the language of every window
        (:meth:`_detect`) and each run of windows in one language is decoded in it, so a
        recording that changes language is transcribed in each; segments carry theirs.

        Raises:
            BadInput: A language other than English was asked of an English-only model.
        """
        duration = len(audio) / SAMPLE_RATE
        multilingual = self.model.model.is_multilingual
        check_language(self.model_path, multilingual, language)
        forced = language or (None if multilingual else "en")
        if not spans:
            return Transcript(language=forced or "en", duration=duration)
        out: list[Segment] = []
        heard: list[str] = []
        planned = decode_windows(audio, spans)
        total, done = sum(w.end - w.start for w in planned), 0.0
        most = max(self.options.batch_size, 8)
        for windows in stretches(planned, most=most):
            # Only the windows' audio, end to end: each is decoded as its own clip.
            pieces = [np.asarray(audio[_at(w.start) : _at(w.end)], np.float32) for w in windows]
            if forced:
                detected = [Detected(forced)] * len(windows)
            else:
                windows, pieces, detected = self._detect(audio, windows, pieces, spans)
            heard += [d.language for d in detected]
            for found, members in language_runs(detected):
                run = [windows[i] for i in members]
                for seg in self._decode_run(run, [pieces[i] for i in members], found):
                    out.extend(split_sentences(seg))
                done += sum(w.end - w.start for w in run)
                progress.report(done, total)  # window audio decoded, of all there is
            del pieces
        out.sort(key=lambda s: s.start)
        fallback = forced or (heard[0] if heard else "en")
        return Transcript(
            language=main_language(out, fallback), duration=duration, segments=tuple(out)
        )

    def _decode_run(
        self, windows: list[SpeechSpan], pieces: list[np.ndarray], found: Detected
    ) -> list[Segment]:
        """Decode windows of one language, their audio ``pieces`` end to end."""
        starts = [float(x) for x in np.cumsum([0, *map(len, pieces)]) / SAMPLE_RATE]
        clips = [SpeechSpan(a, b) for a, b in zip(starts, starts[1:], strict=False)]
        segments, _ = self._decode(np.concatenate(pieces), clips, found.language)
        out = []
        for seg in segments:
            # The clip a segment came from: its decoding position (``seek``, in 10 ms frames,
            # truncated), not its start, which the decoder may put a bit earlier.
            k = max(0, bisect_right(starts, seg.seek / FRAMES_PER_SECOND + 0.011) - 1)
            window = windows[min(k, len(windows) - 1)]
            shifted = _segment(seg, window.start - starts[k], window)
            out.append(
                replace(shifted, language=found.language, language_probability=found.probability)
            )
        return out

    def _detect(
        self,
        audio: np.ndarray | Wav,
        windows: list[SpeechSpan],
        pieces: list[np.ndarray],
        spans: list[SpeechSpan],
    ) -> tuple[list[SpeechSpan], list[np.ndarray], list[Detected]]:
        """The language of each window, by the model's own detection on its audio.

        A window the model is unsure of (under :data:`MIXED_LANGUAGE_PROBABILITY`) that holds
        several speech spans is detected again span by span (an encoder pass each: only
        unsure windows pay for it); the spans' languages are chosen together
        (:func:`smooth_languages`), and where they differ the window is cut into runs of one
        language, each decoded as a window of its own.
        """
        found = self._languages(pieces)
        out: tuple[list[SpeechSpan], list[np.ndarray], list[Detected]] = ([], [], [])
        for window, piece, detected in zip(windows, pieces, found, strict=True):
            inner = [
                SpeechSpan(max(s.start, window.start), min(s.end, window.end))
                for s in spans
                if s.start < window.end and s.end > window.start
            ]
            parts = [(window, piece, detected)]
            if (detected.probability or 0.0) < MIXED_LANGUAGE_PROBABILITY and len(inner) > 1:
                clips = [np.asarray(audio[_at(s.start) : _at(s.end)], np.float32) for s in inner]
                each = absorb_unsure(smooth_languages(self._languages(clips)))
                if confident_switch(each, detected):
                    parts = []
                    for lang, members in language_runs(each):
                        cut = SpeechSpan(inner[members[0]].start, inner[members[-1]].end)
                        sure = [
                            each[i].probability for i in members if each[i].probability is not None
                        ] or [0.0]
                        parts.append(
                            (
                                cut,
                                np.asarray(audio[_at(cut.start) : _at(cut.end)], np.float32),
                                Detected(lang.language, round(sum(sure) / len(sure), 4)),
                            )
                        )
                    log.info(
                        "asr: %.1f-%.1f s holds %s",
                        window.start,
                        window.end,
                        ", ".join(d.language for _, _, d in parts),
                    )
            for part in parts:
                out[0].append(part[0])
                out[1].append(part[1])
                out[2].append(part[2])
        return out

    def _languages(self, pieces: list[np.ndarray]) -> list[Detected]:
        """The model's language detection on each piece of audio (at most 30 s each), a batch
        at a time: one pass of the encoder per piece, the decoder's first step."""
        from faster_whisper.audio import pad_or_trim

        found: list[Detected] = []
        step = max(1, self.options.batch_size)
        extract = self.model.feature_extractor
        for i in range(0, len(pieces), step):
            batch = pieces[i : i + step]
            features = np.stack([pad_or_trim(extract(p)[..., :-1]) for p in batch])
            encoded = self.model.encode(features)
            for probs in self.model.model.detect_language(encoded):
                top = tuple((token[2:-2], round(float(p), 4)) for token, p in probs[:5])
                found.append(Detected(top[0][0], top[0][1], top))
        return found

    def redecode(
        self, audio: np.ndarray | Wav, pieces: list[SpeechSpan], language: str | None
    ) -> list[Segment]:
        """Each piece decoded on its own by the sequential decoder, with temperature fallback
        (:data:`REPAIR_TEMPERATURES`, on Whisper's compression-ratio and log-probability
        thresholds) and without the previous text as prompt: what the guard's repair asks
        for a window the batched decoder got wrong."""
        opts = self.options
        out: list[Segment] = []
        for piece in pieces:
            clip = np.asarray(audio[_at(piece.start) : _at(piece.end)], np.float32)
            # Speech is 2 to 4 tokens a second: a bound far above it keeps a damaged model's
            # endless ")))))" from costing 448 tokens at each of six temperatures.
            most = int(REPAIR_TOKENS_PER_S * (piece.end - piece.start)) + 16
            segments, info = self.model.transcribe(
                clip,
                language=language,
                max_new_tokens=min(most, 440),
                beam_size=opts.beam_size,
                temperature=REPAIR_TEMPERATURES,
                compression_ratio_threshold=2.4,
                log_prob_threshold=-1.0,
                no_speech_threshold=0.6,
                condition_on_previous_text=False,
                word_timestamps=opts.word_timestamps,
                vad_filter=False,
            )
            for seg in segments:
                probability = None if language else round(float(info.language_probability), 4)
                out.append(
                    replace(
                        _segment(seg, piece.start, piece),
                        language=language or info.language,
                        language_probability=probability,
                        repair=f"temperature {seg.temperature:g}",
                    )
                )
        return out

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


REPAIR_TEMPERATURES = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)
"""The sequential decoder's temperatures, tried in turn while a result fails Whisper's
thresholds (faster-whisper's and Whisper's own default)."""

REPAIR_TOKENS_PER_S = 10
"""The most tokens a second of audio may decode to in a repair (speech needs 2 to 4)."""

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
