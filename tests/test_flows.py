"""The warm-cache and transcribe flows under a real (temporary) Prefect server."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import time
import wave
from pathlib import Path

import jiwer
import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    FlowRunFilter,
    FlowRunFilterId,
)
from test_store_faults import can_mount, mount

from conftest import SAMPLE, normalise
from flows.transcribe import transcribe
from flows.warm_cache import warm_cache
from tasks.subtitles.check import lint, read_subtitles
from tasks.subtitles.rules import rule_set
from voxflow.errors import BadInput, ModelNotWarmed, OutputFull, WarmFailed

pytestmark = pytest.mark.usefixtures("prefect_api")


def wer(reference: str, hypothesis: str) -> float:
    return jiwer.wer(normalise(reference), normalise(hypothesis))


def read_artifact(key: str, flow_run_id: str | None = None):
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=[key])),
            flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id]))
            if flow_run_id
            else None,
            limit=1,
        )
    return found[0] if found else None


@pytest.fixture(scope="module")
def sample_run(warm_store, tmp_path_factory):
    out = tmp_path_factory.mktemp("out")
    return out, transcribe(str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(out))


def test_warm_cache_warms_load_checks_and_publishes_a_table(tmp_path):
    rows = warm_cache(profile="cpu", store=str(tmp_path / "models"))

    assert {r["model"] for r in rows} == {"silero-vad-v6", "faster-whisper-base"}
    assert all(r["status"] == "warmed" and r["load_check"].startswith("ok") for r in rows)
    again = warm_cache(profile="cpu", store=str(tmp_path / "models"), load_checks=False)
    assert {r["status"] for r in again} == {"present"}


def test_warm_cache_artifact_can_be_read_back(tmp_path):
    warm_cache(profile="cpu", store=str(tmp_path / "models"), load_checks=False)
    artifact = read_artifact("model-cache-cpu")
    assert artifact is not None and artifact.type == "table"
    assert "faster-whisper-base" in json.dumps(artifact.data)


def test_warm_progress_lines_reach_the_task_runs_log(tmp_path, recwarn, caplog):
    """Files are fetched on a thread pool; their lines still belong to the warm task's run."""
    from prefect.client.schemas.filters import LogFilter, LogFilterFlowRunId

    caplog.set_level(logging.INFO, logger="tasks")  # as the voxflow command sets it

    state = warm_cache(
        profile="cpu", store=str(tmp_path / "models"), load_checks=False, return_state=True
    )
    assert state.is_completed()

    run_logs = LogFilter(flow_run_id=LogFilterFlowRunId(any_=[state.state_details.flow_run_id]))
    copied = []
    with get_client(sync_client=True) as client:
        for _ in range(40):  # logs reach the API in batches, a moment after the run
            logs = client.read_logs(log_filter=run_logs, limit=200)
            copied = [log for log in logs if "copied model.bin" in log.message]
            if copied:
                break
            time.sleep(0.25)
    assert copied and all(log.task_run_id for log in copied), [
        (line.name, line.message[:60]) for line in logs
    ]
    assert not [w for w in recwarn if "without a flow run id" in str(w.message)]


def test_transcribe_writes_every_format_and_a_run_record(sample_run):
    out, record = sample_run
    job = Path(record["outputs"]["srt"]).parent

    assert job.parent == out and job.name.startswith("sample-")
    assert set(record["outputs"]) == {"srt", "vtt", "json", "txt"}
    assert all(Path(p).stat().st_size > 0 for p in record["outputs"].values())
    on_disk = json.loads((job / "records" / "run.json").read_text())
    assert on_disk["profile"] == "cpu"
    assert on_disk["models"]["asr"] == {
        "backend": "faster-whisper",
        "model": "faster-whisper-base",
        "revision": "1.0.0",
    }
    assert on_disk["languages"] and list(on_disk["languages"])[0] == "en"
    assert on_disk["guard"]["repair"]["windows"] >= 0
    assert set(on_disk["stages"]) == {"extract", "shots", "vad", "asr", "guard"}
    assert 20 < on_disk["audio_seconds"] < 40 and 0 < on_disk["real_time_factor"] < 1


def test_transcript_matches_the_spoken_text(sample_run):
    _, record = sample_run
    text = Path(record["outputs"]["txt"]).read_text()
    assert wer((SAMPLE.parent / "sample.txt").read_text(), text) < 0.3


def test_subtitle_cues_are_at_most_two_lines_of_42_characters(sample_run):
    _, record = sample_run
    cues = Path(record["outputs"]["srt"]).read_text().strip().split("\n\n")
    assert len(cues) >= 4
    for cue in cues:
        number, timing, *lines = cue.split("\n")
        assert number.isdigit() and " --> " in timing
        assert 1 <= len(lines) <= 2 and all(len(line) <= 42 for line in lines)


def test_transcript_preview_artifact_is_published(sample_run):
    artifact = read_artifact("transcript-preview", sample_run[1]["flow_run_id"])
    assert artifact is not None and "sample.mp4" in artifact.data


def test_the_run_records_the_subtitle_check_of_the_file_it_wrote(sample_run):
    _, record = sample_run
    # The sample has a video stream (10 fps): its cues are laid in its frames, so checked so.
    rules = rule_set("netflix-en").with_options({"fps": record["shots"]["subtitle_fps"]})
    written = read_subtitles(record["outputs"]["srt"])
    found = lint(written, rules)
    check = record["subtitles"]
    assert (check["rules"], check["cues"], check["violations"]) == (
        "netflix-en",
        len(written),
        len(found),
    )
    # On clear speech the compiler keeps every rule; the old layout broke reading speed twice.
    assert found == []
    artifact = read_artifact("transcript-preview", record["flow_run_id"])
    assert f"Subtitle check (netflix-en): 0 violation(s) in {len(written)} cues" in artifact.data


def test_same_file_again_skips_every_stage(sample_run, warm_store, caplog):
    out, first = sample_run
    with caplog.at_level(logging.INFO, logger="tasks.job"):
        second = transcribe(str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(out))

    assert all(s["cached"] for s in second["stages"].values())
    assert "asr: cached" in caplog.text
    assert Path(second["outputs"]["srt"]).read_text() == Path(first["outputs"]["srt"]).read_text()


def test_a_lost_stage_result_reruns_only_that_stage(warm_store, tmp_path):
    first = transcribe(str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(tmp_path))
    job = Path(first["outputs"]["srt"]).parent
    (job / "records" / "stages" / "asr.json").unlink()

    second = transcribe(str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(tmp_path))
    assert {k: v["cached"] for k, v in second["stages"].items()} == {
        "extract": True,
        "shots": True,
        "vad": True,
        "asr": False,
        "guard": True,  # the same words again: the guard's record still holds
    }


def test_cold_store_fails_at_preflight_naming_models_and_command(tmp_path):
    with pytest.raises(ModelNotWarmed) as err:
        transcribe(
            str(SAMPLE),
            profile="cpu",
            store=str(tmp_path / "empty"),
            output_dir=str(tmp_path / "out"),
        )
    message = str(err.value)
    assert "faster-whisper-base" in message and "silero-vad-v6" in message
    assert "voxflow warm --profile cpu" in message
    assert not (tmp_path / "out").exists()  # nothing was started


def test_a_language_whisper_does_not_know_is_refused_before_any_work(warm_store, tmp_path):
    with pytest.raises(BadInput, match="does not know the language 'xx'"):
        transcribe(
            str(SAMPLE),
            profile="cpu",
            language="xx",
            store=warm_store.root,
            output_dir=str(tmp_path / "out"),
        )
    assert not (tmp_path / "out").exists()


def test_silent_audio_gives_an_empty_transcript_and_a_warning(warm_store, tmp_path, caplog):
    silent = tmp_path / "silence.wav"
    with wave.open(str(silent), "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000)
        w.writeframes(b"\0\0" * 16000 * 4)

    with caplog.at_level(logging.WARNING):
        record = transcribe(
            str(silent), profile="cpu", store=warm_store.root, output_dir=str(tmp_path / "out")
        )

    assert "no speech found" in caplog.text
    assert Path(record["outputs"]["txt"]).read_text().strip() == ""
    assert json.loads(Path(record["outputs"]["json"]).read_text())["segments"] == []


def test_a_full_output_disk_fails_clearly_and_the_run_finishes_once_there_is_room(
    warm_store, tmp_path
):
    if not can_mount(tmp_path):
        pytest.skip("mount is not permitted here")
    out = tmp_path / "out"
    out.mkdir()
    mount("-t", "tmpfs", "-o", "size=300k", "tmpfs", str(out))  # less than the 27 s of audio
    try:
        with pytest.raises(OutputFull) as error:
            transcribe(str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(out))
        message = str(error.value)
        assert f"no space left on the disk of {out}/sample-" in message
        assert "while writing the extract stage" in message and "MB free" in message
        assert "choose another output folder (--output)" in message

        mount("-o", "remount,size=20m", str(out))
        record = transcribe(str(SAMPLE), profile="cpu", store=warm_store.root, output_dir=str(out))
        assert Path(record["outputs"]["srt"]).read_text().strip()
    finally:
        subprocess.run(["umount", str(out)], check=True)


def test_warm_fails_when_a_cached_model_does_not_load(tmp_path):
    store = tmp_path / "models"
    warm_cache(profile="cpu", store=str(store), load_checks=False)
    # Same size, same mtime, garbage content (bit rot): the files "exist", but the model
    # cannot be loaded, and only the load check can tell.
    blob = next((store / "hub").rglob("model.bin")).resolve()
    before = blob.stat()
    blob.write_bytes(b"\0" * before.st_size)
    os.utime(blob, ns=(before.st_atime_ns, before.st_mtime_ns))

    with pytest.raises(WarmFailed) as err:
        warm_cache(profile="cpu", store=str(store))
    message = str(err.value)
    assert "asr/faster-whisper (faster-whisper-base) does not load offline" in message
    assert "voxflow warm --profile cpu" in message
