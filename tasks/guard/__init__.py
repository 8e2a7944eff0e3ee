"""The hallucination guard: text Whisper wrote where nobody spoke, found after ASR.

Whisper writes text over music, noise and silence ("Thank you for watching"), and loops on one
phrase; faster-whisper's batched pipeline, which voxflow uses, has no silence guard and no
previous-text conditioning to stop it. The guard reads what ASR made, segment by segment:

1. words outside the VAD's speech are dropped, a segment mostly outside it is flagged, and a
   word whose times stretch over a pause is trimmed to the speech it was heard in (the decode
   windows join nearby speech spans, so the decoder hears the gaps between them);
2. a phrase repeated three or more times in a row (four for one word) is collapsed to one;
3. a segment whose text compresses too well (zlib ratio above 2.4, Whisper's own threshold),
   that the decoder itself scored as no speech (``no_speech_prob`` above 0.6 with a mean
   log-probability below -1) or as very unlikely text (below -1.5), or whose words it was
   unsure of (three or more words, mean word probability under 0.4: what it writes over
   babble and noise the VAD let through) is flagged;
4. where separation ran, a segment over a silent vocals stem (20 dB under the speech's level)
   is flagged.

A flagged segment keeps its text and gets the reason (:attr:`Segment.flag`): the JSON keeps
it, the subtitles and the plain text leave it out unless the run keeps flagged text.
"""

from __future__ import annotations

import zlib
from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from tasks.transcript import Segment, SpeechSpan, Transcript, Word


@dataclass(frozen=True)
class GuardOptions:
    """The guard's thresholds.

    Attributes:
        max_compression_ratio: Flag text whose zlib ratio is above this (Whisper: 2.4).
        no_speech_prob: With ``silence_logprob``: flag what the decoder took for silence.
        silence_logprob: See ``no_speech_prob`` (Whisper: -1.0).
        min_avg_logprob: Flag text scored below this mean log-probability, whatever else.
        min_word_probability: Flag a segment of 3+ words whose mean word probability is
            below this.
        min_speech_share: Flag a segment with less than this share of its words (or time)
            inside the VAD's speech.
        speech_pad: Seconds around each speech span that still count as speech.
        silent_vocals_db: Flag a segment whose vocals are this many dB under the speech's.
        keep_flagged: Keep flagged text in subtitles and plain text (it is always in the JSON).
        repair: Decode again the windows whose text failed (:mod:`tasks.guard.repair`).
        repair_logprob: A repaired piece still scored below this mean log-probability after
            every temperature is flagged (Whisper's own fallback threshold).
        min_words_per_second: A window of 3 s or more of speech with fewer shown words per
            second of speech than this is repaired too (speech runs at 2 to 3 words a second).
        pause_s: The shortest quiet stretch a repair cuts a window at.
        pause_db: How far under the window's loud level (dB) counts as quiet.
    """

    max_compression_ratio: float = 2.4
    no_speech_prob: float = 0.6
    silence_logprob: float = -1.0
    min_avg_logprob: float = -1.5
    min_word_probability: float = 0.4
    min_speech_share: float = 0.5
    speech_pad: float = 0.2
    silent_vocals_db: float = -20.0
    keep_flagged: bool = False
    repair: bool = True
    repair_logprob: float = -1.0
    min_words_per_second: float = 0.5
    pause_s: float = 0.1
    pause_db: float = 30.0


@dataclass(frozen=True)
class GuardReport:
    """What the guard did: flagged segments by reason, loops collapsed, words dropped."""

    segments: int
    flagged: dict[str, int]
    collapsed_loops: int
    dropped_words: int
    keep_flagged: bool

    def to_dict(self) -> dict[str, Any]:
        """Plain data for ``run.json`` and the transcript's model record."""
        return asdict(self)


def guard(
    transcript: Transcript,
    speech: list[SpeechSpan],
    vocals: np.ndarray | None = None,
    sample_rate: int = 16_000,
    options: GuardOptions | None = None,
) -> tuple[Transcript, GuardReport]:
    """Flag and mend what ASR made up.

    Args:
        transcript: What ASR produced.
        speech: The VAD's speech spans.
        vocals: The separated vocals stem, mono, when separation ran.
        sample_rate: The stem's sample rate.
        options: Thresholds; the defaults above when None.

    Returns:
        The guarded transcript (flagged segments carry their reason) and what was done.
    """
    options = options or GuardOptions()
    level = _speech_level(vocals, speech, sample_rate) if vocals is not None else None
    reasons: Counter[str] = Counter()
    loops = dropped = 0
    out: list[Segment] = []
    for segment in transcript.segments:
        kept, share = _inside_speech(segment, speech, options.speech_pad)
        dropped += len(segment.words) - len(kept)
        if kept and share >= options.min_speech_share and kept != list(segment.words):
            segment = _with_words(segment, kept)
        collapsed, n = collapse_loops(segment)
        loops += n
        flag = _flag(collapsed, share, options)
        if flag is None and level is not None:
            db = _level(vocals, collapsed.start, collapsed.end, sample_rate) - level
            if db < options.silent_vocals_db:
                flag = f"silent vocals ({db:.0f} dB under the speech)"
        if flag:
            reasons[flag.split(" (")[0]] += 1
        out.append(replace(collapsed, flag=flag))
    report = GuardReport(len(out), dict(reasons), loops, dropped, options.keep_flagged)
    model = {
        **transcript.model,
        "guard": {**report.to_dict(), "keep_flagged": options.keep_flagged},
    }
    return replace(transcript, segments=tuple(out), model=model), report


def compression_ratio(text: str) -> float:
    """Bytes of ``text`` over bytes of its zlib compression (as Whisper computes it)."""
    data = text.encode("utf-8")
    return len(data) / len(zlib.compress(data)) if data else 0.0


def collapse_loops(segment: Segment) -> tuple[Segment, int]:
    """``segment`` with each phrase repeated 3+ times in a row (1 word: 4+) kept once.

    Returns:
        The segment (its words and text rebuilt when a loop was found) and how many loops.
    """
    tokens = [w.text.strip() for w in segment.words] if segment.words else segment.text.split()
    keep, loops = _loop_free(tokens)
    if not loops:
        return segment, 0
    if segment.words:
        return _with_words(segment, [segment.words[i] for i in keep]), loops
    return replace(segment, text=" ".join(tokens[i] for i in keep)), loops


def _loop_free(tokens: list[str]) -> tuple[list[int], int]:
    """Indices of ``tokens`` to keep so no phrase repeats in a loop, and the loops removed."""
    keys = [t.lower().strip(".,!?;:…\"'") for t in tokens]
    keep: list[int] = []
    loops = 0
    i = 0
    while i < len(tokens):
        found = None
        for size in range(1, min(8, (len(tokens) - i) // 3) + 1):
            phrase = keys[i : i + size]
            repeats = 1
            while keys[i + repeats * size : i + (repeats + 1) * size] == phrase:
                repeats += 1
            if repeats >= (4 if size == 1 else 3):
                found = (size, repeats)
                break
        if found:
            size, repeats = found
            keep.extend(range(i, i + size))
            loops += 1
            i += size * repeats
        else:
            keep.append(i)
            i += 1
    return keep, loops


def _flag(segment: Segment, share: float, options: GuardOptions) -> str | None:
    if share < options.min_speech_share:
        return f"outside speech ({share:.0%} inside the VAD's speech)"
    ratio = compression_ratio(segment.text.strip())
    if ratio > options.max_compression_ratio:
        return f"compression ratio ({ratio:.2f}, above {options.max_compression_ratio})"
    logprob, silence = segment.avg_logprob, segment.no_speech_prob
    if logprob is not None and silence is not None:
        if silence > options.no_speech_prob and logprob < options.silence_logprob:
            return f"no speech (no_speech_prob {silence:.2f}, avg_logprob {logprob:.2f})"
    if logprob is not None and logprob < options.min_avg_logprob:
        return f"low log-probability ({logprob:.2f}, below {options.min_avg_logprob})"
    if len(segment.words) >= 3:
        mean = sum(w.probability for w in segment.words) / len(segment.words)
        if mean < options.min_word_probability:
            return f"unsure words (mean word probability {mean:.2f})"
    return None


def _inside_speech(
    segment: Segment, speech: list[SpeechSpan], pad: float
) -> tuple[list[Word], float]:
    """The segment's words that overlap speech, and its share inside speech (by words, or by
    time for a segment without word timings)."""
    spans = [(s.start - pad, s.end + pad) for s in speech]

    def overlaps(start: float, end: float) -> bool:
        end = max(end, start + 1e-3)
        return any(a < end and start < b for a, b in spans)

    if segment.words:
        kept = [_trimmed(w, spans) for w in segment.words if overlaps(w.start, w.end)]
        return kept, len(kept) / len(segment.words)
    length = max(segment.end - segment.start, 1e-3)
    inside = sum(max(0.0, min(b, segment.end) - max(a, segment.start)) for a, b in spans)
    return [], min(1.0, inside / length)


def _trimmed(word: Word, spans: list[tuple[float, float]]) -> Word:
    """``word`` within the (padded) speech span it overlaps most."""
    a, b = max(spans, key=lambda s: min(s[1], word.end) - max(s[0], word.start))
    start, end = max(word.start, a), min(word.end, b)
    if (start, end) == (word.start, word.end) or end <= start:
        return word
    return replace(word, start=round(start, 3), end=round(end, 3))


def _with_words(segment: Segment, words: list[Word]) -> Segment:
    text = "".join(w.text for w in words).strip()
    return replace(segment, start=words[0].start, end=words[-1].end, text=text, words=tuple(words))


def _level(audio: np.ndarray | None, start: float, end: float, rate: int) -> float:
    """The RMS level of ``audio`` between two times, in dBFS."""
    if audio is None:
        return 0.0
    piece = audio[int(start * rate) : max(int(end * rate), int(start * rate) + 1)]
    rms = float(np.sqrt(np.mean(np.square(piece, dtype=np.float64)))) if piece.size else 0.0
    return 20 * np.log10(max(rms, 1e-9))


def _speech_level(audio: np.ndarray, speech: list[SpeechSpan], rate: int) -> float | None:
    """The median level of the VAD's speech spans in ``audio`` (None without speech)."""
    levels = [_level(audio, s.start, s.end, rate) for s in speech if s.end > s.start]
    return float(np.median(levels)) if levels else None
