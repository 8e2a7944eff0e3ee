"""The nightly self-test: every enabled stage of a profile on the bundled sample, on the worker
that picks the run up, timed against that host's own last seven runs.

Each run writes the table artifact ``self-test-<profile>``: a row per stage with the host, the
real-time factor (stage seconds / audio seconds), the stage's peak resident memory, the median
real-time factor of the host's last seven runs and the verdict. The history is those artifacts
(read back through the API), so it lives where the runs do. A stage more than
``slower_than`` slower than its median (and slower by at least ``NOISE_S`` seconds, so a
stage of a few milliseconds cannot fail the night on timer noise) is a regression: it is marked
in the artifact and fails the run with a message naming the stage and the host.
"""

from __future__ import annotations

import json
import logging
import shutil
import socket
import statistics
import tempfile
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.failures import fails_with_fix
from flows.request import TranscribeRequest
from flows.runtime import ready_or_warm
from flows.transcribe import transcribe_job
from tasks.job import prepare_job
from tasks.translate.stage import translate
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)

SAMPLE = Path(__file__).resolve().parents[1] / "examples" / "sample.mp4"
HISTORY = 7
"""Runs of the same host a stage is compared with."""
NOISE_S = 0.2
"""A stage must also be this many seconds slower than its median to count as a regression."""
TRANSLATE_TO = "de"
"""The language the self-test translates the sample into, where the profile translates."""


class Regression(VoxflowError):
    """A stage ran markedly slower than on this host's recent nights."""


@flow(name="self-test", log_prints=False)
@fails_with_fix
def self_test(
    profile: str = "auto",
    store: str | None = None,
    slower_than: float = 0.25,
) -> list[dict[str, Any]]:
    """Run every enabled stage of the profile on the bundled sample; flag slow stages.

    Args:
        profile: Hardware profile (cpu, cuda, mlx, openvino) or auto to pick by hardware.
        store: Model volume root ($VOXFLOW_STORE or ./models when empty).
        slower_than: Fraction above the median real-time factor of this host's last seven
            runs at which a stage is a regression (0.25: 25% slower).

    Returns:
        The artifact's rows, a row per stage.

    Raises:
        Regression: A stage is a regression (the artifact is written first).
        ModelNotWarmed: The volume is cold (run the warm first).
    """
    scratch = Path(tempfile.mkdtemp(prefix="voxflow-self-test-"))
    try:
        run = TranscribeRequest(
            media=str(SAMPLE), profile=profile, store=store, language="en",
            output_dir=str(scratch),
        ).check()  # fmt: skip
        ready = ready_or_warm(run.profile, run.volume, "fail")
        with prepare_job(run.request.media, str(run.output)) as job:  # fresh: nothing cached
            done = transcribe_job(job, run, ready)
            stages = dict(done.record["stages"])
            if "translate" in ready:
                spec = run.profile.stages["translate"]
                moved = translate(
                    job, spec, ready["translate"], done.transcript, "en", TRANSLATE_TO
                )
                stages["translate"] = {"seconds": moved.seconds, "peak_mib": moved.peak_mib}
        audio = done.record["audio_seconds"]
    finally:
        shutil.rmtree(scratch, ignore_errors=True)

    host = socket.gethostname()
    name = run.profile.name
    history = past_runs(f"self-test-{name}", host)
    rows = [
        verdict(host, stage, figures, audio, history, slower_than)
        for stage, figures in stages.items()
    ]
    slow = [r for r in rows if r["verdict"] == "regression"]
    create_table_artifact(
        key=f"self-test-{name}",
        table=rows,
        description=f"self-test of {name} on {host}: "
        + (f"{len(slow)} regression(s): {', '.join(r['stage'] for r in slow)}" if slow else "ok"),
    )
    if slow:
        raise Regression(
            "; ".join(
                f"{r['stage']} on {host} ran at real-time factor {r['rtf']:.4f}, "
                f"{r['slower_by_pct']:.0f}% slower than the median {r['median_rtf']:.4f} of "
                f"this host's last {r['runs_compared']} run(s)"
                for r in slow
            )
            + f"; see the self-test-{name} artifact, and what else ran on {host} tonight"
        )
    return rows


def verdict(
    host: str,
    stage: str,
    figures: dict[str, Any],
    audio: float,
    history: list[dict[str, float]],
    slower_than: float,
) -> dict[str, Any]:
    """The artifact row of one stage: its figures, its median, and whether it regressed."""
    rtf = figures["seconds"] / audio if audio else 0.0
    past = [run[stage] for run in history if stage in run][:HISTORY]
    row: dict[str, Any] = {
        "host": host,
        "stage": stage,
        "rtf": round(rtf, 5),
        "seconds": figures["seconds"],
        "peak_mib": figures.get("peak_mib", 0.0),
        "median_rtf": None,
        "slower_by_pct": None,
        "runs_compared": len(past),
        "verdict": "first run",
    }
    if not past:
        return row
    median = statistics.median(past)
    slower = (rtf - median) / median if median else 0.0
    regressed = slower > slower_than and (rtf - median) * audio >= NOISE_S
    row.update(
        median_rtf=round(median, 5),
        slower_by_pct=round(100 * slower, 1),
        verdict="regression" if regressed else "ok",
    )
    return row


def past_runs(key: str, host: str) -> list[dict[str, float]]:
    """Stage -> real-time factor of each earlier self-test on ``host``, newest first."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
    from prefect.client.schemas.sorting import ArtifactSort

    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            sort=ArtifactSort.CREATED_DESC,
            limit=200,
        )
    runs = []
    for artifact in found:
        data = json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data
        mine = {r["stage"]: r["rtf"] for r in data or () if r.get("host") == host}
        if mine:
            runs.append(mine)
    return runs[:HISTORY]
