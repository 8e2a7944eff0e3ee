"""The transcribe flow: media -> extract -> [shots] -> vad -> asr -> [diarize] -> subtitles, on a
hardware profile."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from flows.failures import fails_with_fix
from flows.names import file_run_name
from flows.parameters import takes
from flows.request import Run, TranscribeRequest, checked
from flows.runtime import gpu_slot, ready_or_warm
from tasks.asr.stage import recognise
from tasks.diarize.stage import diarize_speakers
from tasks.extract.stage import extract
from tasks.guard.stage import check_heard, guard_transcript
from tasks.job import Job, StageResult, prepare_job, write_run_record
from tasks.naming import media_name
from tasks.preview import transcript_preview
from tasks.progress import clock
from tasks.separate.stage import separate_voice
from tasks.shots.stage import find_shots, shot_options, shots_record
from tasks.subtitles.rules import RuleSet
from tasks.subtitles.stage import write_subtitles
from tasks.transcript import Transcript
from tasks.vad.stage import detect_speech
from tasks.warm.preflight import ReadyStage
from voxflow.logs import show_voxflow_logs

log = logging.getLogger(__name__)


@flow(name="transcribe", flow_run_name=file_run_name, log_prints=False)
@fails_with_fix
@takes(TranscribeRequest)
def transcribe(media: str, **options: Any) -> dict[str, Any]:
    """Transcribe one media file into subtitles and a transcript.

    Returns:
        The run record also written to ``run.json``.
    """
    show_voxflow_logs()
    run = checked(TranscribeRequest(media=media, **options))  # its parameters, checked once
    ready = run.ready or ready_or_warm(run.profile, run.volume, run.request.on_cold_cache)
    with prepare_job(run.request.media, str(run.output)) as job:  # held for the whole run
        return transcribe_job(job, run, ready).record


@dataclass(frozen=True)
class Transcribed:
    """What :func:`transcribe_job` leaves: the job, its final transcript, the run record."""

    job: Job
    transcript: StageResult
    record: dict[str, Any]


def transcribe_job(job: Job, run: Run, ready: dict[str, ReadyStage]) -> Transcribed:
    """The part of a run that transcribe, subtitle and inbox share: the stages from extract to
    the subtitle files, ``run.json`` and the transcript artifact, on a preflighted profile.

    Args:
        job: The media's job directory.
        run: The checked request (:meth:`TranscribeRequest.check`).
        ready: What preflight found for each of the run's stages.
    """
    chosen = run.profile
    options = shot_options(chosen)
    audio = extract(job, run.request.audio_stream)
    shots = find_shots(job, options, audio)  # None for audio only
    with gpu_slot(chosen):
        stages = [audio, *([shots] if shots else [])]
        if "separate" in ready:  # later stages read the voice stem in place of audio.wav
            audio = separate_voice(job, chosen.stages["separate"], ready["separate"], audio)
            stages.append(audio)
        speech = detect_speech(job, chosen.stages["vad"], ready["vad"], audio)
        text = recognise(job, chosen.stages["asr"], ready["asr"], audio, speech, run.language)
        vocals = audio if "separate" in ready else None
        asr = (chosen.stages["asr"], ready["asr"])
        guarded = guard_transcript(job, text, speech, vocals, run.guard, audio, asr)
        check_heard(job, speech, guarded, chosen.name, run.volume.root)
        stages += [speech, text, guarded]
        text = guarded
        if "diarize" in ready:
            text = diarize_speakers(
                job, chosen.stages["diarize"], ready["diarize"], audio, text, run.count
            )
            stages.append(text)
    rules, cuts = timed_to_video(run, shots)
    written = write_subtitles(job, text, run.formats, rules, cuts)

    final = Transcript.load(text.result["path"])
    transcribing = {stage: found for stage, found in ready.items() if stage != "translate"}
    record = write_run_record(
        job,
        chosen,
        transcribing,
        stages,
        written["outputs"],
        time.perf_counter() - run.started,
        flow_run_id=flow_run.id,
        subtitles=written["check"],
        shots=shots_record(shots, rules.fps),
        guard=guarded.result["guard"],
        languages=final.languages(),
    )
    log.info(
        "%s: %s of audio in %.1f s; wrote %s in %s",
        media_name(job.media),
        clock(record["audio_seconds"]),
        record["wall_seconds"],
        ", ".join(Path(p).name for p in written["outputs"].values()),
        job.path,
    )
    create_markdown_artifact(
        key="transcript-preview",
        markdown=transcript_preview(final.text, record),
        description=f"transcript of {job.stem}",
    )
    return Transcribed(job, text, record)


def timed_to_video(run: Run, shots: StageResult | None) -> tuple[RuleSet, tuple[float, ...]]:
    """The run's subtitle rules at its frame rate (``--fps``, else the video's, else the rule
    set's 24) and the shot changes its cues are timed to (none for audio, or a video that did
    not decode)."""
    if shots is None or shots.result.get("unreadable"):
        return run.rules, ()
    rules = run.rules
    if not run.request.fps:
        rules = rules.with_options({"fps": shots.result["fps"]})
    return rules, tuple(shots.result["cuts"])
