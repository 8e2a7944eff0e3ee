"""Whether a recogniser's text on the warm's second of test audio is garbage.

A healthy Whisper hears the self-check's tone and noise (:func:`tasks.backend.test_audio`) as
nothing or a word or two ("you", "Thank you."); one with damaged weights decodes it into a
long run of one token (")))))...") or a loop of a few, with NaN scores where the arithmetic
broke. A loop compresses far better than language does, and is far more words than a second
of audio holds.

Length alone is not counted in characters: the random-weight models the tests build stand in
for real ones and say a few long made-up words ("Eh More More consecutivehesion-----...", 71
characters), which no load check should refuse; a run of one character is a loop anyway.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from tasks.guard import compression_ratio

MAX_COMPRESSION_RATIO = 2.4
"""Whisper's own threshold for a looping decode (``compression_ratio_threshold``)."""
MAX_WORDS_PER_S = 10.0
"""Far more than anyone says in a second (fast speech is 4 to 5 words a second)."""


def garbage_reason(text: str, seconds: float, logprobs: Sequence[float | None] = ()) -> str | None:
    """Why ``text`` cannot be what ``seconds`` of audio said, or None when it can.

    Args:
        text: What the recogniser returned.
        seconds: How long the audio was.
        logprobs: The decoder's mean log-probability of each segment, where it gives one; a
            NaN or infinite one is broken arithmetic, not an unsure decoder.

    Returns:
        E.g. ``zlib compression ratio 18.7 above 2.4`` (for 224 times ``)``).
    """
    text = text.strip()
    seconds = max(seconds, 1e-3)
    reasons = []
    broken = [p for p in logprobs if p is not None and not math.isfinite(p)]
    if broken:
        reasons.append(f"log-probability {broken[0]}")
    words = len(text.split())
    if words > MAX_WORDS_PER_S * seconds:
        reasons.append(f"{words} words for {seconds:.1f} s of audio")
    ratio = compression_ratio(text)
    if ratio > MAX_COMPRESSION_RATIO:
        reasons.append(f"zlib compression ratio {ratio:.1f} above {MAX_COMPRESSION_RATIO}")
    return ", ".join(reasons) or None


def sample(text: str, width: int = 24) -> str:
    """The start of ``text`` for a one-line message, quoted."""
    text = " ".join(text.split())
    return repr(text if len(text) <= width else text[:width] + "...")
