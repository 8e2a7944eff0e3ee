"""run.json and the Prefect artifacts a run leaves behind."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from profiles import Profile
from tasks.job import Job, StageResult, save_json
from tasks.preflight import ReadyStage
from voxflow import __version__


def write_run_record(
    job: Job,
    profile: Profile,
    ready: dict[str, ReadyStage],
    stages: list[StageResult],
    outputs: dict[str, str],
    wall_seconds: float,
    flow_run_id: str | None = None,
) -> dict[str, Any]:
    """Write ``run.json``: profile, models with revisions, seconds per stage, real-time factor.

    The real-time factor counts the work this run did (cached stages cost nothing).
    ``flow_run_id`` links the record to its Prefect flow run (logs, artifacts).
    """
    duration = next(s.result["duration"] for s in stages if s.stage == "extract")
    work = sum(0.0 if s.cached else s.seconds for s in stages)
    record = {
        "voxflow": __version__,
        "media": job.media,
        "sha256": job.sha256,
        "job": job.directory,
        "profile": profile.name,
        "flow_run_id": flow_run_id,
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "models": {
            name: {"backend": r.backend, "model": r.model, "revision": r.revision}
            for name, r in ready.items()
        },
        "stages": {
            s.stage: {"seconds": s.seconds, "cached": s.cached, "key": s.key} for s in stages
        },
        "audio_seconds": round(duration, 3),
        "stage_seconds": round(work, 3),
        "wall_seconds": round(wall_seconds, 3),
        "real_time_factor": round(work / duration, 4) if duration else None,
        "outputs": outputs,
    }
    save_json(job, job.records / "run.json", record, "run.json")
    return record


def transcript_preview(job: Job, text: str, record: dict[str, Any], limit: int = 1200) -> str:
    """Markdown for the flow run's artifact: where the files are and how the text begins."""
    shown = text if len(text) <= limit else text[:limit].rsplit(" ", 1)[0] + " …"
    rows = "\n".join(
        f"| {s} | {v['seconds']:.2f} | {'yes' if v['cached'] else 'no'} |"
        for s, v in record["stages"].items()
    )
    return (
        f"# {Path(job.media).name}\n\n"
        f"profile `{record['profile']}`, {record['audio_seconds']:.1f} s of audio, "
        f"real-time factor {record['real_time_factor']}\n\n"
        f"| stage | seconds | cached |\n|---|---|---|\n{rows}\n\n"
        f"Outputs in `{job.directory}`\n\n> {shown or '(no speech found)'}\n"
    )
