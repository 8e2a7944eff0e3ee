"""The extract stage's task: the media's audio into the job's ``records/audio.wav``."""

from __future__ import annotations

import logging
from dataclasses import asdict

from prefect import task
from prefect.cache_policies import NONE

from tasks.extract import SAMPLE_RATE, extract_audio
from tasks.job import Job, StageResult, run_stage

log = logging.getLogger(__name__)


@task(cache_policy=NONE)
def extract(job: Job, stream: int | None = None) -> StageResult:
    """media.extract: 16 kHz mono WAV of one audio stream into ``audio.wav``."""
    return run_stage(
        job,
        "extract",
        {"stream": stream, "rate": SAMPLE_RATE},
        None,
        lambda: asdict(extract_audio(job.media, job.records / "audio.wav", stream)),
        outputs=lambda r: [r["path"]],
    )
