"""The separate stage's task: the voice stem, which later stages read in place of the mix."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from profiles import StageSpec
from tasks import progress
from tasks.job import Job, StageResult, run_stage
from tasks.naming import media_name, stage_run_name
from tasks.warm.preflight import ReadyStage

log = logging.getLogger(__name__)


@task(cache_policy=NONE, task_run_name=stage_run_name("separate"))
def separate_voice(job: Job, spec: StageSpec, ready: ReadyStage, audio: StageResult) -> StageResult:
    """separate: the voice stem of the extracted audio into ``<stem>.wav`` (``vocals.wav``).

    The result has the extract stage's shape (``path``, ``duration``), so later stages read it
    in place of ``audio.wav``; its cache key chains from the extract stage's.
    """

    def compute() -> dict[str, Any]:
        backend = ready.load(spec)
        with progress.tracking(f"separate · {media_name(job.media)}", "s of audio"):
            separated = backend.separate_file(
                Path(audio.result["path"]), job.records / f"{backend.stem}.wav"
            )
        return asdict(separated)

    stem = run_stage(
        job,
        "separate",
        ready.config(spec),
        audio.key,
        compute,
        outputs=lambda r: [r["path"]],
    )
    made = f"{stem.result['stem']} stem in {stem.result['windows']} window(s)"
    log.info(progress.summary(stem, made, stem.result["duration"]))
    return stem
