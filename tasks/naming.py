"""How a stage's task runs are named in the Prefect UI: after the stage and the file.

Prefect names a task run after its function (``recognise-3a1``); a runs list of those cannot say
which file a failed stage was working on. Each stage's ``@task`` takes
``task_run_name=stage_run_name("asr")`` and its runs read "asr · talk.m4a".
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import PurePosixPath
from typing import Any


def media_name(media: str) -> str:
    """The file name of a media path or URL (``s3://bucket/talk.m4a`` -> ``talk.m4a``)."""
    return PurePosixPath(str(media).replace("\\", "/")).name or str(media)


def stage_run_name(stage: str, suffix: str = "") -> Callable[..., str]:
    """A ``task_run_name`` for a stage's task: "<stage> · <file>[ <suffix>]".

    Args:
        stage: The stage's name.
        suffix: A format string over the task's parameters, e.g. ``"→ {target}"``.
    """

    def name(parameters: dict[str, Any]) -> str:
        job = parameters.get("job")
        title = f"{stage} · {media_name(job.media)}" if job is not None else stage
        return f"{title} {suffix.format(**parameters)}" if suffix else title

    return name
