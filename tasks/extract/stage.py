"""The extract stage's task: the media's audio into the job's ``records/audio.wav``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path

from prefect import task
from prefect.cache_policies import NONE

from tasks.extract import SAMPLE_RATE, extract_audio
from tasks.job import LOCK, RECORDS, Job, StageResult, run_stage
from tasks.naming import stage_run_name
from tasks.progress import summary
from voxflow.errors import NoAudioStream, NotMedia

log = logging.getLogger(__name__)


@task(cache_policy=NONE, task_run_name=stage_run_name("extract"))
def extract(job: Job, stream: int | None = None) -> StageResult:
    """media.extract: 16 kHz mono WAV of one audio stream into ``audio.wav``.

    Media ffmpeg cannot read, or without the audio stream asked for, leave no job folder
    behind (when the run made nothing else in it).
    """
    try:
        audio = run_stage(
            job,
            "extract",
            {"stream": stream, "rate": SAMPLE_RATE},
            None,
            lambda: asdict(extract_audio(job.source, job.records / "audio.wav", stream)),
            outputs=lambda r: [r["path"]],
        )
    except (NotMedia, NoAudioStream):
        _remove_if_empty(job.path)
        raise
    made = f"16 kHz mono audio from {audio.result['codec']} stream {audio.result['stream_index']}"
    log.info(summary(audio, made, audio.result["duration"]))
    return audio


def _remove_if_empty(folder: Path) -> None:
    """Remove a job folder that holds only empty folders and the run's lock (what
    :func:`prepare_job` made); a run waiting on that lock then makes the folder again."""
    lock = folder / RECORDS / LOCK
    if any((p.is_file() or p.is_symlink()) and p != lock for p in folder.rglob("*")):
        return
    lock.unlink(missing_ok=True)
    for sub in sorted(folder.rglob("*"), key=lambda p: len(p.parts), reverse=True):
        sub.rmdir()
    folder.rmdir()
