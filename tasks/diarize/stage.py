"""The diarize stage's task: speaker turns, and the transcript with its speakers."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from profiles import StageSpec
from tasks.diarize import Diarization, SpeakerCount
from tasks.diarize.assign import assign_speakers
from tasks.extract import SAMPLE_RATE, load_wav
from tasks.job import Job, StageResult, run_stage
from tasks.naming import stage_run_name
from tasks.progress import summary
from tasks.transcript import Transcript
from tasks.warm.preflight import ReadyStage

log = logging.getLogger(__name__)


@task(cache_policy=NONE, task_run_name=stage_run_name("diarize"))
def diarize_speakers(
    job: Job,
    spec: StageSpec,
    ready: ReadyStage,
    audio: StageResult,
    transcript: StageResult,
    speakers: SpeakerCount,
) -> StageResult:
    """diarize: speaker turns into ``diarization.json``; the transcript with a speaker on every
    segment and word into ``transcript.diarized.json`` (``transcript.json`` stays as ASR left
    it, so the ASR stage's cache never holds speakers). The result's ``path`` is the diarized
    transcript, for the writers."""
    config = {
        **ready.config(spec),
        # the sub-models' snapshot ids: a new segmentation or embedding model reruns the stage
        "submodels": {key: Path(path).name for key, path in sorted(ready.submodels.items())},
        "speakers": asdict(speakers),
    }

    def compute() -> dict[str, Any]:
        backend = ready.load(spec)
        diarization: Diarization = backend.diarize(
            load_wav(audio.result["path"]), SAMPLE_RATE, speakers
        )
        turns_path = diarization.save(job.records / "diarization.json")
        labelled = assign_speakers(Transcript.load(Path(transcript.result["path"])), diarization)
        path = labelled.save(job.records / "transcript.diarized.json")
        return {
            "path": str(path),
            "diarization": str(turns_path),
            "speakers": list(diarization.speakers),
            "turns": len(diarization.turns),
            "segments": len(labelled.segments),
        }

    found = run_stage(
        job,
        "diarize",
        config,
        transcript.key,
        compute,
        outputs=lambda r: [r["path"], r["diarization"]],
    )
    made = f"{len(found.result['speakers'])} speaker(s), {found.result['turns']} turn(s)"
    log.info(summary(found, made, audio.result["duration"]))
    return found
