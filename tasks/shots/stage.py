"""The shots stage's task: the video's shot changes and frame rate into the stage's record.

Only media with a video stream run it. A video that does not decode leaves a record that says
so: the run goes on without shot timing, with a warning line, and ``run.json`` says why.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import asdict
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from profiles import Profile
from tasks.job import Job, StageResult, run_stage
from tasks.naming import stage_run_name
from tasks.progress import summary
from tasks.shots import ShotOptions, ShotsUnreadable, detect_shots, has_video
from voxflow.errors import ProfileError

log = logging.getLogger(__name__)


def shot_options(profile: Profile) -> ShotOptions:
    """The profile's ``shots:`` settings, checked.

    Raises:
        ProfileError: An unknown setting or a value out of range; names the file and key.
    """
    known = sorted(f.name for f in dataclasses.fields(ShotOptions))
    for key in profile.shots:
        if key not in known:
            raise ProfileError(
                f"unknown setting {key!r}",
                file=profile.file,
                key_path=f"shots.{key}",
                allowed=known,
            )
    try:
        return ShotOptions(**profile.shots)
    except ValueError as e:
        raise ProfileError(str(e), file=profile.file, key_path="shots") from e


@task(cache_policy=NONE, task_run_name=stage_run_name("shots"))
def find_shots(job: Job, options: ShotOptions, audio: StageResult) -> StageResult | None:
    """shots: the shot changes and frame rate of the media's video; None for audio only.

    Returns:
        The stage's result: ``cuts`` (seconds) and ``fps``, or ``unreadable`` (why) for a
        video stream that does not decode.
    """
    if not has_video(job.source):
        return None

    def compute() -> dict[str, Any]:
        try:
            return asdict(detect_shots(job.source, options))
        except ShotsUnreadable as e:
            return {"cuts": [], "fps": None, "unreadable": e.problem}

    found = run_stage(job, "shots", asdict(options), audio.key, compute)
    if found.result.get("unreadable"):
        log.warning(
            "shots: %s: %s; subtitles are timed without shot changes (check the file with "
            "`ffprobe`, or re-encode its video)",
            job.media,
            found.result["unreadable"],
        )
        return found
    made = f"{len(found.result['cuts'])} shot change(s) at {found.result['fps']:g} fps"
    log.info(summary(found, made, audio.result["duration"]))
    return found


def shots_record(shots: StageResult | None, fps: float) -> dict[str, Any] | None:
    """What ``run.json`` says of the shots: their count and times, the frame rate the
    subtitles were timed at, or why they could not be found; None for audio only."""
    if shots is None:
        return None
    result = shots.result
    if result.get("unreadable"):
        return {"timed": False, "problem": result["unreadable"], "subtitle_fps": fps}
    return {
        "timed": True,
        "cuts": result["cuts"],
        "video_fps": result["fps"],
        "subtitle_fps": fps,
    }
