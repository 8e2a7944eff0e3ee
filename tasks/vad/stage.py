"""The vad stage's task: speech spans into the job's ``records/speech.json``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from profiles import StageSpec
from tasks.extract import SAMPLE_RATE, Wav
from tasks.job import Job, StageResult, run_stage
from tasks.naming import stage_run_name
from tasks.progress import summary
from tasks.warm.preflight import ReadyStage
from voxflow.atomic import write_json

log = logging.getLogger(__name__)


@task(cache_policy=NONE, task_run_name=stage_run_name("vad"))
def detect_speech(job: Job, spec: StageSpec, ready: ReadyStage, audio: StageResult) -> StageResult:
    """vad: speech spans into ``speech.json``."""

    def compute() -> dict[str, Any]:
        backend = ready.load(spec)
        spans = backend.speech_spans(Wav(audio.result["path"]), SAMPLE_RATE)
        path = job.records / "speech.json"
        write_json(path, [asdict(s) for s in spans])
        speech = round(sum(s.end - s.start for s in spans), 3)
        return {"path": str(path), "spans": len(spans), "speech_seconds": speech}

    found = run_stage(
        job, "vad", ready.config(spec), audio.key, compute, outputs=lambda r: [r["path"]]
    )
    spans, speech = found.result["spans"], found.result["speech_seconds"]
    made = f"{spans} speech span(s), {speech:.1f} s of speech"
    log.info(summary(found, made, audio.result["duration"]))
    return found
