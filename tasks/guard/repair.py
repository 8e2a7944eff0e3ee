"""The guard's repair: a decoding window whose text failed the guard is decoded again.

faster-whisper's batched pipeline (and WhisperX's) decodes each window once, at temperature 0,
with no fallback: over babble or reversed speech the VAD let through, it loops or makes text
up, and a real sentence in the same window is lost under it. The guard flags that text; the
repair then cuts the window at its pauses (the gaps between its speech spans, and quiet
stretches inside them), decodes each piece on its own with the backend's sequential decoder
(temperature fallback, no previous text as prompt: :meth:`AsrBackend.redecode`), guards the
result, and keeps whichever of the two reads better. What stays flagged leaves the subtitles
and stays in the JSON with its reason.

A window is repaired when one of its segments was flagged (compression ratio, log-probability,
no speech, unsure words), when its text as a whole repeats itself (a loop split across
sentences), or when it has far too few words for its seconds of speech.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from tasks.asr import AsrBackend, decode_windows
from tasks.guard import GuardOptions, compression_ratio, guard
from tasks.transcript import Segment, SpeechSpan, Transcript

FRAME_S = 0.02
"""The step of the level the pause finder reads."""
MIN_PIECE_S = 0.5
"""A piece shorter than this joins its neighbour: too little for the decoder alone."""


@dataclass(frozen=True)
class RepairReport:
    """What the repair did, for ``run.json``: windows tried, repaired (the new decoding kept),
    kept as they were, by the reason they were tried, and the pieces decoded."""

    windows: int = 0
    repaired: int = 0
    kept: int = 0
    reasons: dict[str, int] | None = None
    pieces: int = 0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def repair(
    transcript: Transcript,
    audio: np.ndarray,
    speech: list[SpeechSpan],
    backend: AsrBackend,
    options: GuardOptions,
    vocals: np.ndarray | None = None,
    sample_rate: int = 16_000,
) -> tuple[Transcript, RepairReport]:
    """Decode again each window of a guarded transcript whose text failed the guard.

    Args:
        transcript: The guarded transcript (flags set by :func:`tasks.guard.guard`).
        audio: The 16 kHz audio ASR decoded (a :class:`tasks.extract.Wav` reads slices).
        speech: The VAD's speech spans.
        backend: The ASR backend that made the transcript.
        options: The guard's thresholds.
        vocals: The vocals stem, when separation ran (the guard's silent-vocals check).
        sample_rate: The stem's sample rate.

    Returns:
        The transcript with repaired windows replaced, and what was done.
    """
    segments = list(transcript.segments)
    reasons: Counter[str] = Counter()
    repaired = kept = pieces_done = 0
    for window in decode_windows(audio, speech):
        inside = [s for s in segments if window.start <= (s.start + s.end) / 2 < window.end]
        why = needs_repair(inside, window, speech, options)
        if why is None:
            continue
        reasons[why] += 1
        pieces = cut_at_pauses(audio, window, speech, options, sample_rate)
        pieces_done += len(pieces)
        language = _language(inside, transcript.language)
        fresh = backend.redecode(audio, pieces, language)
        again, _ = guard(
            replace(transcript, segments=tuple(fresh)), speech, vocals, sample_rate, options
        )
        candidate = [_after_fallback(s, options) for s in again.segments]
        old = [_window_flag(s, inside, options) for s in inside]
        if _score(candidate) > _score(old):
            note = f"window {window.start:.1f}-{window.end:.1f} s ({why}) in {len(pieces)} piece(s)"
            candidate = [
                replace(s, repair=f"{note}, {s.repair or 'decoded again'}") for s in candidate
            ]
            chosen, repaired = candidate, repaired + 1
        else:
            chosen, kept = old, kept + 1
        segments = [s for s in segments if s not in inside] + chosen
    segments.sort(key=lambda s: s.start)
    report = RepairReport(sum(reasons.values()), repaired, kept, dict(reasons), pieces_done)
    model = {**transcript.model, "repair": report.to_dict()}
    return replace(transcript, segments=tuple(segments), model=model), report


def needs_repair(
    segments: list[Segment], window: SpeechSpan, speech: list[SpeechSpan], options: GuardOptions
) -> str | None:
    """Why a window's text should be decoded again, in a few words; None when it reads well."""
    for s in segments:
        if s.flag and not s.flag.startswith("outside speech"):
            return s.flag.split(" (")[0]
    text = " ".join(s.text for s in segments)
    if compression_ratio(text) > options.max_compression_ratio:
        return "repetition across segments"
    heard = sum(max(0.0, min(s.end, window.end) - max(s.start, window.start)) for s in speech)
    words = sum(_words(s) for s in segments if s.flag is None)
    if heard >= 3.0 and words < options.min_words_per_second * heard:
        return "too few words"
    return None


def cut_at_pauses(
    audio: np.ndarray,
    window: SpeechSpan,
    speech: list[SpeechSpan],
    options: GuardOptions,
    sample_rate: int = 16_000,
) -> list[SpeechSpan]:
    """The window's speech in pieces: its speech spans, each cut again in the middle of every
    quiet stretch of at least ``options.pause_s`` (``options.pause_db`` under the span's loud
    level); pieces under :data:`MIN_PIECE_S` join the one before."""
    pieces: list[SpeechSpan] = []
    for span in speech:
        start, end = max(span.start, window.start), min(span.end, window.end)
        if end <= start:
            continue
        cuts = _quiet_middles(audio, start, end, options, sample_rate)
        bounds = [start, *cuts, end]
        for a, b in zip(bounds, bounds[1:], strict=False):
            if pieces and (b - a < MIN_PIECE_S or pieces[-1].end - pieces[-1].start < MIN_PIECE_S):
                if abs(pieces[-1].end - a) < 1e-6:  # only join what touches
                    pieces[-1] = SpeechSpan(pieces[-1].start, round(b, 3))
                    continue
            pieces.append(SpeechSpan(round(a, 3), round(b, 3)))
    return pieces or [window]


def _quiet_middles(
    audio: np.ndarray, start: float, end: float, options: GuardOptions, rate: int
) -> list[float]:
    frame = int(FRAME_S * rate)
    clip = np.asarray(audio[int(start * rate) : int(end * rate)], dtype=np.float32)
    n = len(clip) // frame
    if n < 3:
        return []
    rms = np.sqrt(np.square(clip[: n * frame].reshape(n, frame), dtype=np.float64).mean(axis=1))
    db = 20 * np.log10(rms + 1e-9)
    quiet = db < np.percentile(db, 95) - options.pause_db
    need = max(1, int(round(options.pause_s / FRAME_S)))
    cuts: list[float] = []
    i = 0
    while i < n:
        if not quiet[i]:
            i += 1
            continue
        j = i
        while j < n and quiet[j]:
            j += 1
        if j - i >= need and i > 0 and j < n:  # a pause inside the span, not at its edges
            cuts.append(round(start + (i + j) / 2 * FRAME_S, 3))
        i = j
    return cuts


def _language(segments: list[Segment], default: str) -> str | None:
    """The language to decode a window again in: its segments' (None: let the model detect)."""
    found = Counter(s.language for s in segments if s.language)
    return found.most_common(1)[0][0] if found else None


def _after_fallback(segment: Segment, options: GuardOptions) -> Segment:
    """A repaired piece the decoder still scored under Whisper's threshold after every
    temperature is text it could not hear: flagged."""
    logprob = segment.avg_logprob
    if segment.flag is None and logprob is not None and logprob < options.repair_logprob:
        return replace(
            segment,
            flag=f"low log-probability after repair ({logprob:.2f}, below "
            f"{options.repair_logprob})",
        )
    return segment


def _window_flag(segment: Segment, window: list[Segment], options: GuardOptions) -> Segment:
    """An unflagged segment of a window whose text loops as a whole is flagged with it."""
    ratio = compression_ratio(" ".join(s.text for s in window))
    if segment.flag is None and ratio > options.max_compression_ratio:
        return replace(segment, flag=f"repetition across segments (ratio {ratio:.2f})")
    return segment


def _score(segments: list[Segment]) -> tuple[int, float]:
    """How well a decoding reads: its words the guard kept, then their mean log-probability."""
    shown = [s for s in segments if s.flag is None]
    words = sum(_words(s) for s in shown)
    logprobs = [s.avg_logprob for s in shown if s.avg_logprob is not None]
    return words, (sum(logprobs) / len(logprobs) if logprobs else -99.0)


def _words(segment: Segment) -> int:
    """A segment's words: its timed words, or those of its text where it has none."""
    return len(segment.words) or len(segment.text.split())
