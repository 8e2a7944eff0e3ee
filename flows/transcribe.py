"""The transcribe flow: media -> extract -> vad -> asr -> subtitles, on a hardware profile."""

from __future__ import annotations

import time
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from blocks.model_store import ModelStore
from profiles import load_profile, resolve_profile
from tasks.report import transcript_preview, write_run_record
from tasks.stages import (
    check_ready,
    detect_speech,
    extract,
    prepare_job,
    recognise,
    write_subtitles,
)
from tasks.subtitles import FORMATS, parse_formats
from tasks.transcript import Transcript
from voxflow.settings import load_settings


@flow(name="transcribe", log_prints=False)
def transcribe(
    media: str,
    profile: str = "auto",
    language: str | None = None,
    formats: list[str] | None = None,
    output_dir: str | None = None,
    store: str | None = None,
    audio_stream: int | None = None,
) -> dict[str, Any]:
    """Transcribe one media file into subtitles and a transcript.

    Args:
        media: Path to an audio or video file the worker can read.
        profile: Hardware profile (cpu, cuda, mlx, openvino) or auto to pick by hardware.
        language: Spoken language (ISO 639-1); detected when empty.
        formats: Output formats among srt, vtt, json, txt (all when empty).
        output_dir: Where job directories go ($VOXFLOW_OUTPUT or ./output when empty).
        store: Model volume root ($VOXFLOW_STORE or ./models when empty).
        audio_stream: Which audio stream to use, counting from 0 (the first when empty).

    Returns:
        The run record also written to ``run.json``.
    """
    started = time.perf_counter()
    settings = load_settings()
    chosen = load_profile(resolve_profile(profile))
    fmts = parse_formats(formats or FORMATS)
    model_store = ModelStore(root=str(store or settings.store))

    ready = check_ready(chosen, model_store)
    job = prepare_job(media, str(output_dir or settings.output))
    audio = extract(job, audio_stream)
    speech = detect_speech(job, chosen.stages["vad"], ready["vad"], audio)
    text = recognise(job, chosen.stages["asr"], ready["asr"], audio, speech, language)
    outputs = write_subtitles(job, text, fmts)

    record = write_run_record(
        job,
        chosen,
        ready,
        [audio, speech, text],
        outputs,
        time.perf_counter() - started,
        flow_run_id=flow_run.id,
    )
    create_markdown_artifact(
        key="transcript-preview",
        markdown=transcript_preview(job, Transcript.load(text.result["path"]).text, record),
        description=f"transcript of {job.stem}",
    )
    return record
