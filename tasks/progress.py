"""What a stage tells the operator while it runs and when it ends: its progress, and one line.

A stage that runs long opens :func:`tracking` around its work; the code doing the work (an ASR
backend's window loop, a warm's byte counter) calls :func:`report` with (done, total) as it goes,
without knowing whether anyone tracks it: outside :func:`tracking` a report does nothing. Each
tracked run keeps one Prefect progress artifact (the bar in the UI's Artifacts tab), updated at
most once a second and only for a change of a whole percent, and logs a line every 10 %, so a
worker's log shows it too. Where stderr is a terminal (a ``voxflow`` command at a prompt; the
local runner answers ``isatty`` for its caller), one bar line redrawn in place with ``\r``
takes the place of the 10 % lines.

:func:`summary` is the one line each stage logs at its end: what it made, of how much audio, in
how long, or that it was cached.
"""

from __future__ import annotations

import logging
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import TYPE_CHECKING
from uuid import UUID

if TYPE_CHECKING:
    from tasks.job import StageResult

log = logging.getLogger(__name__)

MIN_INTERVAL_S = 1.0
"""The least time between two updates of a progress artifact."""
MIN_STEP = 1.0
"""The least change, in percent, that updates a progress artifact."""
LOG_STEP = 10
"""A log line each time progress passes a multiple of this many percent."""
BAR_INTERVAL_S = 0.1
"""The least time between two redraws of a terminal's bar."""
BAR_WIDTH = 24
"""Characters of the terminal's bar."""


class Progress:
    """The progress of one stage run: a throttled progress artifact, and a line every 10 %
    or, on a terminal, a bar.

    Thread-safe: a warm's files report from several threads at once.
    """

    def __init__(self, what: str, unit: str = "") -> None:
        """Args:
        what: How the run is named in its lines and the artifact ("asr · talk.m4a").
        unit: What (done, total) count, for the log lines ("s of audio", "MB").
        """
        self.what = what
        self.unit = unit
        self.artifact: UUID | None = None
        self.shown = 0.0  # the percent the artifact shows
        self.shown_at = 0.0
        self.logged = 0  # the last multiple of LOG_STEP logged
        self.total: float | None = None
        self.drawn_at = float("-inf")  # when the terminal's bar was last drawn
        self.bar_open = False  # a bar line is drawn and not yet ended by a line break
        self.bar_done = False  # the bar reached 100 % and ended its line
        self.lock = threading.Lock()

    def report(self, done: float, total: float) -> None:
        """Record that ``done`` of ``total`` is done (any unit; a total of 0 counts as done)."""
        percent = 100.0 if total <= 0 else max(0.0, min(100.0, 100.0 * done / total))
        with self.lock:
            self.total = total
            now = time.monotonic()
            if _terminal():
                self._draw(percent, done, total, now)
            else:
                self._log(percent, done, total)
            due = now - self.shown_at >= MIN_INTERVAL_S and percent - self.shown >= MIN_STEP
            if due or (percent == 100.0 and self.shown < 100.0):
                self._show(percent)
                self.shown, self.shown_at = percent, now

    def _log(self, percent: float, done: float, total: float) -> None:
        """A line each time ``percent`` passes a multiple of :data:`LOG_STEP`."""
        step = int(percent // LOG_STEP) * LOG_STEP
        if step > self.logged:
            self.logged = step
            log.info("%s: %d%% (%s of %s%s)", self.what, step, _num(done), _num(total),
                     f" {self.unit}" if self.unit else "")  # fmt: skip

    def _draw(self, percent: float, done: float, total: float, now: float) -> None:
        """Redraw the terminal's bar line (throttled); at 100 % it ends with a line break."""
        if self.bar_done or (percent < 100.0 and now - self.drawn_at < BAR_INTERVAL_S):
            return
        sys.stderr.write(f"\r{bar(self.what, percent, done, total, self.unit)}\x1b[K")
        self.drawn_at, self.bar_open = now, True
        if percent >= 100.0:
            sys.stderr.write("\n")
            self.bar_open, self.bar_done = False, True
        sys.stderr.flush()

    def close(self) -> None:
        """End a terminal's bar line that the work left unfinished (an error follows it)."""
        with self.lock:
            if self.bar_open:
                sys.stderr.write("\n")
                sys.stderr.flush()
                self.bar_open = False

    def start(self) -> None:
        """Show the run at 0 %, so the bar is there from the start of the work."""
        with self.lock:
            self._show(0.0)
            self.shown, self.shown_at = 0.0, time.monotonic()

    def finish(self) -> None:
        """The work is done: 100 %, whatever the last report said."""
        if self.total is not None:
            self.report(self.total, self.total)
            return
        with self.lock:  # nothing was reported: no figures to log
            self._show(100.0)
            self.shown = 100.0

    def _show(self, percent: float) -> None:
        """Create or update the run's progress artifact (only inside a Prefect run)."""
        from prefect.artifacts import create_progress_artifact, update_progress_artifact
        from prefect.context import FlowRunContext, TaskRunContext

        if TaskRunContext.get() is None and FlowRunContext.get() is None:
            return  # a stage's function called on its own: no run to show it in
        value = round(percent, 1)
        if self.artifact is None:
            self.artifact = create_progress_artifact(value, description=self.what)
        else:
            update_progress_artifact(self.artifact, value)


_current: ContextVar[Progress | None] = ContextVar("voxflow_progress", default=None)


@contextmanager
def tracking(what: str, unit: str = "") -> Iterator[Progress]:
    """Track the progress of the body's work: :func:`report` calls inside it feed one
    :class:`Progress` (also from threads started in a copy of this context). The artifact
    starts at 0 and ends at 100 when the body finishes without an error."""
    progress = Progress(what, unit)
    token = _current.set(progress)
    try:
        progress.start()
        yield progress
        progress.finish()
    finally:
        progress.close()
        _current.reset(token)


def report(done: float, total: float) -> None:
    """Report (done, total) to the progress tracked here, if any (see :func:`tracking`)."""
    progress = _current.get()
    if progress is not None:
        progress.report(done, total)


def summary(result: StageResult, made: str, audio_s: float | None = None) -> str:
    """The stage's one line: what it made, in how long (with the real-time factor over
    ``audio_s`` of audio), or that it was reused.

    For example "asr: 169 segments, 11:29 of audio in 32.4 s, real-time factor 0.05".
    """
    of_audio = f", {clock(audio_s)} of audio" if audio_s is not None else ""
    if result.cached:
        return f"{result.stage}: {made}{of_audio}, cached (it took {result.seconds:.1f} s)"
    line = f"{result.stage}: {made}{of_audio} in {result.seconds:.1f} s"
    if audio_s:
        line += f", real-time factor {result.seconds / audio_s:.2f}"
    return line


def bar(what: str, percent: float, done: float, total: float, unit: str = "") -> str:
    """The terminal's bar line: ``asr · talk.m4a [######------] 50% (13 of 27 s of audio)``."""
    filled = round(BAR_WIDTH * percent / 100)
    figures = f"{_num(done)} of {_num(total)}{f' {unit}' if unit else ''}"
    return f"{what} [{'#' * filled}{'-' * (BAR_WIDTH - filled)}] {percent:3.0f}% ({figures})"


def _terminal() -> bool:
    """Whether stderr is a terminal (the runner's stderr answers for its caller's)."""
    try:
        return sys.stderr.isatty()
    except (AttributeError, ValueError):  # replaced by an object without it, or closed
        return False


def clock(seconds: float) -> str:
    """Seconds as ``m:ss`` (``h:mm:ss`` from an hour on)."""
    whole = round(seconds)
    hours, rest = divmod(whole, 3600)
    return f"{hours}:{rest // 60:02d}:{rest % 60:02d}" if hours else f"{rest // 60}:{rest % 60:02d}"


def _num(value: float) -> str:
    return f"{value:.0f}" if value >= 10 or value == int(value) else f"{value:.1f}"
