"""How much memory a block of code took at its peak: this process's resident set, sampled.

Linux reads ``/proc/self/statm`` every 20 ms from a thread; elsewhere the figure is the
process's high-water mark (``getrusage``), which never goes down, so it is the peak so far.
"""

from __future__ import annotations

import os
import resource
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

_STATM = "/proc/self/statm"
_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def resident_mib() -> float:
    """This process's resident memory now (Linux), else its high-water mark, in MiB."""
    try:
        with open(_STATM) as f:
            return int(f.read().split()[1]) * _PAGE / 2**20
    except OSError:
        return high_water_mib()


def high_water_mib() -> float:
    """The most resident memory this process has held, in MiB."""
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return peak / 2**20 if sys.platform == "darwin" else peak / 1024  # bytes there, KiB here


def give_back_freed() -> None:
    """Hand the heap memory the process has freed back to the system (glibc's ``malloc_trim``),
    so the large buffers of one stage do not stay resident under the next. Elsewhere nothing
    is done."""
    if _libc is not None:
        _libc.malloc_trim(0)


def _load_libc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        libc.malloc_trim  # noqa: B018  (musl and others have no malloc_trim)
    except (OSError, AttributeError):
        return None
    return libc


_libc = _load_libc()


@dataclass
class Peak:
    """The peak resident memory seen while a :func:`peak_memory` block ran, in MiB."""

    mib: float = 0.0


@contextmanager
def peak_memory(every_s: float = 0.02) -> Iterator[Peak]:
    """Sample this process's resident memory while the block runs; yields its peak, filled in
    as it goes and final when the block ends."""
    peak = Peak(resident_mib())
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(every_s):
            peak.mib = max(peak.mib, resident_mib())

    thread = threading.Thread(target=sample, name="peak-memory", daemon=True)
    thread.start()
    try:
        yield peak
    finally:
        stop.set()
        thread.join()
        peak.mib = round(max(peak.mib, resident_mib()), 1)
