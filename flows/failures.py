"""How a flow run ends on an expected failure: Failed, with one message that starts with the fix.

voxflow's own errors (:class:`voxflow.errors.VoxflowError`: bad input, a cold or damaged volume,
nothing heard, ...) are expected: a flow decorated with :func:`fails_with_fix` returns a
``Failed`` state for them in place of raising, so Prefect logs no traceback for the flow run,
and its message is short enough that the UI shows the fix whole. The state keeps the error
itself, so a caller in the same process (the CLI, a parent flow) still gets it raised, with its
own line and exit code. A ``failure-<flow>`` Markdown artifact says what failed, in which
stage, and what to run.

Prefect's engine also logs the error where a task raised it and, under a deployment, once more
on its way out: :class:`ExpectedFailureFilter` keeps those records one line (the task's) or
drops them (the repeat). Any other exception keeps Prefect's traceback, and so does every
failure with ``VOXFLOW_DEBUG=1``.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable
from typing import Any, TypeVar

from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run
from prefect.states import Failed, State

from voxflow.errors import VoxflowError
from voxflow.settings import load_settings

R = TypeVar("R")

MESSAGE_CHARS = 300
"""The longest state message: the UI's run page shows it whole. The artifact has the rest."""

RUN_LOGGERS = ("prefect.flow_runs", "prefect.task_runs")
"""The loggers Prefect's engine reports failed runs on."""

ENGINE_EXIT = "Engine execution exited with unexpected exception"
"""How Prefect's engine repeats a deployment run's failure on its way out."""


def fix_first(error: VoxflowError) -> str:
    """The failed state's message: the fix, then what failed, in one line of at most
    :data:`MESSAGE_CHARS` characters (what failed is cut, never the fix)."""
    found = " ".join(str(getattr(error, "lacks", "") or error).split())  # one line
    message = f"{error.fix}: {found}"
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1].rstrip() + "…"
    return message


def failure_markdown(error: VoxflowError) -> str:
    """The ``failure-<flow>`` artifact: what failed, in which stage, and what to run."""
    lines = [
        "## What failed",
        "",
        str(error),
        "",
        f"**Stage:** {error.stage or 'before any stage ran'}",
        "",
        "## What to run",
        "",
        f"{error.fix}.",
    ]
    if command := getattr(error, "command", None):  # on a line of its own, to copy
        lines += ["", "```", command, "```"]
    return "\n".join([*lines, ""])


def fails_with_fix(fn: Callable[..., R]) -> Callable[..., R | State]:
    """Make a flow body end Failed with :func:`fix_first`'s message on a voxflow error.

    Put it under ``@flow``: the flow's signature and docstring are the body's.
    """

    @functools.wraps(fn)
    def body(*args: Any, **kwargs: Any) -> R | State:
        install_filter()
        try:
            return fn(*args, **kwargs)
        except VoxflowError as error:
            return failed(error)

    return body


def failed(error: VoxflowError) -> State:
    """The Failed state of a flow run that ``error`` ended, after writing its artifact."""
    name = flow_run.flow_name or "run"
    create_markdown_artifact(
        key=f"failure-{name}",
        markdown=failure_markdown(error),
        description=fix_first(error),
    )
    return Failed(message=fix_first(error), data=error)


class ExpectedFailureFilter(logging.Filter):
    """Prefect's own reports of an expected failure without a traceback: a task's failure
    stays one line, the engine's repeat of it on its way out is dropped."""

    def filter(self, record: logging.LogRecord) -> bool:
        error = record.exc_info[1] if record.exc_info else None
        if not isinstance(error, VoxflowError):
            return True
        if record.getMessage().startswith(ENGINE_EXIT):
            return False
        record.exc_info = None
        record.exc_text = None
        return True


def install_filter() -> None:
    """Put :class:`ExpectedFailureFilter` on Prefect's run loggers, once per process; with
    ``VOXFLOW_DEBUG`` on, every traceback stays."""
    if load_settings().debug:
        return
    for name in RUN_LOGGERS:
        logger = logging.getLogger(name)
        if not any(isinstance(f, ExpectedFailureFilter) for f in logger.filters):
            logger.addFilter(ExpectedFailureFilter())
