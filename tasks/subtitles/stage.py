"""The subtitles stage's task: ``<stem>.<fmt>`` for each format at the job's top."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from tasks.job import Job, StageResult, room_for
from tasks.subtitles import write_outputs
from tasks.transcript import Transcript

log = logging.getLogger(__name__)


@task(cache_policy=NONE)
def write_subtitles(job: Job, transcript: StageResult, formats: tuple[str, ...]) -> dict[str, str]:
    """subtitles: ``<stem>.<fmt>`` for each requested format."""
    with room_for(job, "the subtitles"):
        paths = write_outputs(
            Transcript.load(Path(transcript.result["path"])), job.path, job.stem, formats
        )
    return {fmt: str(p) for fmt, p in paths.items()}
