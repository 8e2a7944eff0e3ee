"""What an operator sees of a run in the Prefect UI: voxflow's own log lines, a progress bar that
moves while a long stage runs, and runs named after their files (issue 21, points 1, 2 and 4).

Every test runs real flows against the session's real Prefect server and reads back what the UI
shows through the Prefect client: logs by flow run, progress artifacts, flow and task run names.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterType,
    FlowRunFilter,
    FlowRunFilterId,
    LogFilter,
    LogFilterFlowRunId,
)
from test_long_media import recording

from conftest import SAMPLE
from flows.transcribe import transcribe
from flows.warm_cache import warm_cache

pytestmark = pytest.mark.usefixtures("prefect_api")

DEADLINE_S = 60.0
"""How long logs and artifacts may take to reach the server after a run (they go in batches)."""


def wait_for(what: str, find: Callable[[], Any], deadline: float = DEADLINE_S) -> Any:
    """Poll ``find`` until it returns something truthy; fail naming ``what`` at the deadline."""
    end = time.monotonic() + deadline
    while True:
        found = find()
        if found or time.monotonic() > end:
            assert found, f"no {what} within {deadline:.0f} s"
            return found
        time.sleep(0.2)


def run_logs(flow_run_id) -> list:
    with get_client(sync_client=True) as client:
        return client.read_logs(
            log_filter=LogFilter(flow_run_id=LogFilterFlowRunId(any_=[flow_run_id])), limit=200
        )


def logged(flow_run_id, *needles: str) -> list:
    """The run's logs once a line holding each needle is there."""

    def find() -> list | None:
        logs = run_logs(flow_run_id)
        messages = [line.message for line in logs]
        return logs if all(any(n in m for m in messages) for n in needles) else None

    return wait_for(f"log lines with {needles} in run {flow_run_id}", find)


def progress_artifacts(flow_run_id=None) -> list:
    with get_client(sync_client=True) as client:
        return client.read_artifacts(
            artifact_filter=ArtifactFilter(type=ArtifactFilterType(any_=["progress"])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            if flow_run_id
            else None,
            limit=200,
        )


def names_of(flow_run_id) -> tuple[str, set[str]]:
    """The flow run's name and its task runs' names, as the runs list shows them."""
    from prefect.client.schemas.filters import TaskRunFilter, TaskRunFilterFlowRunId

    with get_client(sync_client=True) as client:
        run = client.read_flow_run(flow_run_id)
        tasks = client.read_task_runs(
            task_run_filter=TaskRunFilter(flow_run_id=TaskRunFilterFlowRunId(any_=[flow_run_id]))
        )
    return run.name, {t.name for t in tasks}


@pytest.fixture(scope="module")
def en_store(tmp_path_factory) -> tuple[str, Any]:
    """The cpu-en profile's models, warmed by the warm-cache flow; the store and its run."""
    root = str(tmp_path_factory.mktemp("models-en"))
    state = warm_cache(profile="cpu-en", store=root, load_checks=False, return_state=True)
    assert state.is_completed(), state.message
    return root, state.state_details.flow_run_id


def test_a_transcribe_run_logs_a_line_per_stage_and_its_outputs(warm_store, tmp_path):
    state = transcribe(
        str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(tmp_path),
        return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id

    logs = logged(run_id, "asr: ", "real-time factor", "wrote sample.srt")
    lines = {line.name: line for line in logs}
    messages = [line.message for line in logs]
    for stage in ("extract: ", "vad: ", "asr: ", "guard: ", "subtitles "):
        assert any(m.startswith(stage) for m in messages), (stage, messages)
    asr = next(m for m in messages if m.startswith("asr: ") and "segments" in m)
    assert "0:27 of audio in" in asr and "real-time factor 0." in asr, asr
    assert any(name.startswith("tasks.") for name in lines) and "flows.transcribe" in lines
    # voxflow's loggers were raised, not the root: Prefect's HTTP clients stay quiet.
    assert logging.getLogger("httpx").getEffectiveLevel() >= logging.WARNING
    assert logging.getLogger().level >= logging.WARNING
    assert not [n for n in lines if n.startswith(("httpx", "httpcore", "prefect.client"))]

    again = transcribe(
        str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(tmp_path),
        return_state=True,
    )  # fmt: skip
    cached = logged(again.state_details.flow_run_id, "asr: ", "cached")
    assert any(m.message.startswith("asr: ") and "cached" in m.message for m in cached)


def test_runs_are_named_after_their_file_and_stage(warm_store, tmp_path):
    media = tmp_path / "talk about it.mp4"
    media.write_bytes(SAMPLE.read_bytes())
    state = transcribe(
        str(media), profile="cpu", store=warm_store.root, output_dir=str(tmp_path / "out"),
        return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message

    flow_name, task_names = names_of(state.state_details.flow_run_id)
    assert flow_name == "talk about it.mp4"
    for stage in ("extract", "vad", "asr", "guard", "subtitles"):
        assert f"{stage} · talk about it.mp4" in task_names, task_names


def test_the_warm_logs_and_shows_each_models_progress(en_store):
    _, run_id = en_store
    logs = logged(run_id, "warm · faster-whisper-tiny.en: 100%")
    assert any("copied model.bin" in line.message for line in logs)

    flow_name, task_names = names_of(run_id)
    assert flow_name == "warm · cpu-en"
    assert {"warm · faster-whisper-tiny.en", "warm · silero-vad-v6"} <= task_names
    bars = wait_for("the warm's progress artifacts", lambda: progress_artifacts(run_id))
    assert {a.description for a in bars} >= {"warm · faster-whisper-tiny.en"}
    assert all(a.data == 100 for a in bars), [(a.description, a.data) for a in bars]


def test_asr_progress_moves_through_a_long_file_and_ends_at_100(en_store, tmp_path):
    """Six minutes of speech are two batches of ASR windows: the bar stops between them."""
    store, _ = en_store
    media = recording(6, tmp_path / "lecture.m4a")
    what = "asr · lecture.m4a"
    seen: list[float] = []
    outcome: dict[str, Any] = {}

    def run() -> None:
        outcome["state"] = transcribe(
            str(media), profile="cpu-en", store=store, output_dir=str(tmp_path / "out"),
            formats=["srt"], return_state=True,
        )  # fmt: skip

    worker = threading.Thread(target=run)
    worker.start()
    try:
        while worker.is_alive():  # what the UI's bar shows while the run goes on
            for artifact in progress_artifacts():
                if artifact.description == what and artifact.data not in seen[-1:]:
                    seen.append(artifact.data)
            time.sleep(0.1)
    finally:
        worker.join()
    state = outcome["state"]
    assert state.is_completed(), state.message
    run_id = state.state_details.flow_run_id

    bar = wait_for(
        "the asr progress artifact",
        lambda: [a for a in progress_artifacts(run_id) if a.description == what],
    )
    assert len(bar) == 1 and bar[0].data == 100
    assert any(0 < value < 100 for value in seen), seen
    assert seen == sorted(seen), seen
    logs = logged(run_id, f"{what}: 100%")
    steps = [line.message for line in logs if line.message.startswith(f"{what}: ")]
    assert len(steps) >= 2 and "s of speech" in steps[0], steps
