"""How a measurement is taken and scored: a timed call, a timing row, word error rate."""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from typing import Any


def normalise(text: str) -> str:
    """Lower case, punctuation stripped (apostrophes joined, hyphens split), spaces collapsed."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return round(float(jiwer.wer(normalise(reference), normalise(hypothesis))), 4)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def row(seconds: float, duration: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 3),
        "real_time_factor": round(seconds / duration, 4),
        "speed_x": round(duration / seconds, 2),
    }
