"""The transcribe flow: media -> extract -> vad -> asr -> [diarize] -> subtitles, on a hardware
profile."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

from blocks.volume import Volume
from flows.runtime import OnColdCache, gpu_slot, ready_or_warm
from profiles import Profile, load_profile, resolve_profile
from tasks.asr import speech_language
from tasks.asr.stage import recognise
from tasks.diarize import SpeakerCount, with_diarization
from tasks.diarize.stage import diarize_speakers
from tasks.extract.stage import extract
from tasks.job import Job, StageResult, prepare_job
from tasks.preflight import ReadyStage
from tasks.report import transcript_preview, write_run_record
from tasks.separate.stage import separate_voice
from tasks.subtitles import FORMATS, parse_formats
from tasks.subtitles.stage import write_subtitles
from tasks.transcript import Transcript
from tasks.vad.stage import detect_speech
from voxflow.settings import load_settings


def run_profile(
    profile: str, diarize: bool | None, count: SpeakerCount, separate: bool | None
) -> Profile:
    """The profile a run uses: ``profile`` resolved, with the run's speaker and separation
    choices over its defaults."""
    chosen = with_diarization(load_profile(resolve_profile(profile)), diarize, count)
    if separate is not None:  # the run's choice wins over the profile's default
        on, off = (["separate"], []) if separate else ([], ["separate"])
        chosen = chosen.with_stages(*on, off=off)
    return chosen


@flow(name="transcribe", log_prints=False)
def transcribe(
    media: str,
    profile: str = "auto",
    language: str | None = None,
    formats: list[str] | None = None,
    output_dir: str | None = None,
    store: str | None = None,
    audio_stream: int | None = None,
    on_cold_cache: OnColdCache = "fail",
    diarize: bool | None = None,
    speakers: int | None = None,
    min_speakers: int | None = None,
    max_speakers: int | None = None,
    separate: bool | None = None,
) -> dict[str, Any]:
    """Transcribe one media file into subtitles and a transcript.

    Args:
        media: Path to an audio or video file the worker can read.
        profile: Hardware profile (cpu, cuda, mlx, openvino) or auto to pick by hardware.
        language: Spoken language: ISO 639-1 (fr), ISO 639-3 (fra), NLLB (fra_Latn) or its
            English name (French); detected when empty.
        formats: Output formats among srt, vtt, json, txt (all when empty).
        output_dir: Where job directories go ($VOXFLOW_OUTPUT or ./output when empty).
        store: Model volume root ($VOXFLOW_STORE or ./models when empty).
        audio_stream: Which audio stream to use, counting from 0 (the first when empty).
        on_cold_cache: On a cold model volume: fail (naming what to run), or warm it through
            the profile's warm-cache deployment and go on.
        diarize: Label speakers (true) or not (false); empty follows the profile, and a
            speaker count below switches it on.
        speakers: Exact number of speakers, when known.
        min_speakers: At least this many speakers.
        max_speakers: At most this many speakers.
        separate: Isolate the voice (Demucs vocals stem) before VAD and ASR (true) or not
            (false); empty follows the profile (on for cuda and mlx, off on cpu).

    Returns:
        The run record also written to ``run.json``.
    """
    started = time.perf_counter()
    settings = load_settings()
    language = speech_language(language)  # a bad code fails here, before any work
    count = SpeakerCount(speakers, min_speakers, max_speakers)
    chosen = run_profile(profile, diarize, count, separate)
    fmts = parse_formats(formats or FORMATS)
    model_store = Volume(root=str(store or settings.store))

    ready = ready_or_warm(chosen, model_store, on_cold_cache)
    job = prepare_job(media, str(output_dir or settings.output))
    return transcribe_job(job, chosen, ready, language, fmts, audio_stream, count, started).record


@dataclass(frozen=True)
class Transcribed:
    """What :func:`transcribe_job` leaves: the job, its final transcript, the run record."""

    job: Job
    transcript: StageResult
    record: dict[str, Any]


def transcribe_job(
    job: Job,
    chosen: Profile,
    ready: dict[str, ReadyStage],
    language: str | None,
    fmts: tuple[str, ...],
    audio_stream: int | None,
    count: SpeakerCount,
    started: float,
) -> Transcribed:
    """The part of a run that transcribe, subtitle and inbox share: the stages from extract to
    the subtitle files, ``run.json`` and the transcript artifact, on a preflighted profile.

    Args:
        job: The media's job directory.
        chosen: The run's profile (:func:`run_profile`).
        ready: What preflight found for each of its stages.
        language: Whisper's code for the spoken language; detected when None.
        fmts: Output formats.
        audio_stream: Which audio stream, counting from 0 (the first when None).
        count: What the run says of the speakers.
        started: ``time.perf_counter()`` when the run began, for its wall time.
    """
    audio = extract(job, audio_stream)
    with gpu_slot(chosen):
        stages = [audio]
        if "separate" in ready:  # later stages read the voice stem in place of audio.wav
            audio = separate_voice(job, chosen.stages["separate"], ready["separate"], audio)
            stages.append(audio)
        speech = detect_speech(job, chosen.stages["vad"], ready["vad"], audio)
        text = recognise(job, chosen.stages["asr"], ready["asr"], audio, speech, language)
        stages += [speech, text]
        if "diarize" in ready:
            text = diarize_speakers(
                job, chosen.stages["diarize"], ready["diarize"], audio, text, count
            )
            stages.append(text)
    outputs = write_subtitles(job, text, fmts)

    transcribing = {stage: found for stage, found in ready.items() if stage != "translate"}
    record = write_run_record(
        job,
        chosen,
        transcribing,
        stages,
        outputs,
        time.perf_counter() - started,
        flow_run_id=flow_run.id,
    )
    create_markdown_artifact(
        key="transcript-preview",
        markdown=transcript_preview(job, Transcript.load(text.result["path"]).text, record),
        description=f"transcript of {job.stem}",
    )
    return Transcribed(job, text, record)
