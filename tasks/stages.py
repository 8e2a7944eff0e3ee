"""The pipeline's Prefect tasks: thin wrappers that run each stage through the job's stage cache.

Every task takes and returns paths and small records (never arrays or models), and caching is
done by :func:`tasks.job.run_stage` on content hash + config + model revision, so Prefect's own
input hashing is switched off (``cache_policy=NONE``).
"""

from __future__ import annotations

import json
import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from blocks.model_store import ModelStore
from profiles import Profile, StageSpec
from tasks.diarize import Diarization, SpeakerCount
from tasks.diarize.assign import assign_speakers
from tasks.job import Job, StageResult, open_job, room_for, run_stage
from tasks.media import SAMPLE_RATE, extract_audio, load_wav
from tasks.preflight import ReadyStage, preflight
from tasks.registry import load_backend
from tasks.subtitles import write_outputs
from tasks.transcript import SpeechSpan, Transcript

log = logging.getLogger(__name__)


def _stage_config(spec: StageSpec, ready: ReadyStage) -> dict[str, Any]:
    return {
        "backend": spec.backend,
        "model": ready.model,
        "revision": ready.revision,
        "options": dict(spec.options),
    }


@task(cache_policy=NONE)
def check_ready(profile: Profile, store: ModelStore) -> dict[str, ReadyStage]:
    """Every model and package the profile needs is here (see :func:`tasks.preflight.preflight`)."""
    return preflight(profile, store)


@task(cache_policy=NONE)
def prepare_job(media: str, output_dir: str) -> Job:
    """Hash the media and create its job directory."""
    return open_job(media, output_dir)


@task(cache_policy=NONE)
def extract(job: Job, stream: int | None = None) -> StageResult:
    """media.extract: 16 kHz mono WAV of one audio stream into ``audio.wav``."""
    return run_stage(
        job,
        "extract",
        {"stream": stream, "rate": SAMPLE_RATE},
        None,
        lambda: asdict(extract_audio(job.media, job.records / "audio.wav", stream)),
        outputs=lambda r: [r["path"]],
    )


@task(cache_policy=NONE)
def separate_voice(job: Job, spec: StageSpec, ready: ReadyStage, audio: StageResult) -> StageResult:
    """separate: the voice stem of the extracted audio into ``<stem>.wav`` (``vocals.wav``).

    The result has the extract stage's shape (``path``, ``duration``), so later stages read it
    in place of ``audio.wav``; its cache key chains from the extract stage's.
    """

    def compute() -> dict[str, Any]:
        backend = load_backend(spec, Path(ready.path) if ready.path else None, ready.submodels)
        separated = backend.separate_file(
            Path(audio.result["path"]), job.records / f"{backend.stem}.wav"
        )
        log.info(
            "separate: %s stem of %.1f s in %d window(s)",
            separated.stem,
            separated.duration,
            separated.windows,
        )
        return asdict(separated)

    return run_stage(
        job,
        "separate",
        _stage_config(spec, ready),
        audio.key,
        compute,
        outputs=lambda r: [r["path"]],
    )


@task(cache_policy=NONE)
def detect_speech(job: Job, spec: StageSpec, ready: ReadyStage, audio: StageResult) -> StageResult:
    """vad: speech spans into ``speech.json``."""

    def compute() -> dict[str, Any]:
        backend = load_backend(spec, Path(ready.path) if ready.path else None, ready.submodels)
        spans = backend.speech_spans(load_wav(audio.result["path"]), SAMPLE_RATE)
        path = job.records / "speech.json"
        path.write_text(json.dumps([asdict(s) for s in spans]))
        speech = round(sum(s.end - s.start for s in spans), 3)
        log.info(
            "vad: %d speech span(s), %.1f s of %.1f s", len(spans), speech, audio.result["duration"]
        )
        return {"path": str(path), "spans": len(spans), "speech_seconds": speech}

    return run_stage(
        job, "vad", _stage_config(spec, ready), audio.key, compute, outputs=lambda r: [r["path"]]
    )


@task(cache_policy=NONE)
def recognise(
    job: Job,
    spec: StageSpec,
    ready: ReadyStage,
    audio: StageResult,
    speech: StageResult,
    language: str | None,
) -> StageResult:
    """asr: the transcript, with word timestamps, into ``transcript.json``."""
    config = {**_stage_config(spec, ready), "language": language}

    def compute() -> dict[str, Any]:
        spans = [SpeechSpan(**s) for s in json.loads(Path(speech.result["path"]).read_text())]
        if not spans:
            log.warning("no speech found in %s: the transcript will be empty", Path(job.media).name)
        backend = load_backend(spec, Path(ready.path) if ready.path else None, ready.submodels)
        result = backend.transcribe(load_wav(audio.result["path"]), spans, language)
        transcript = Transcript(
            language=result.language,
            duration=result.duration,
            segments=result.segments,
            model={
                "name": ready.model,
                "revision": ready.revision,
                "backend": spec.backend,
                "options": dict(spec.options),
            },
        )
        path = transcript.save(job.records / "transcript.json")
        return {
            "path": str(path),
            "language": transcript.language,
            "segments": len(transcript.segments),
            "words": sum(len(s.words) for s in transcript.segments),
        }

    return run_stage(job, "asr", config, speech.key, compute, outputs=lambda r: [r["path"]])


@task(cache_policy=NONE)
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
        **_stage_config(spec, ready),
        # the sub-models' snapshot ids: a new segmentation or embedding model reruns the stage
        "submodels": {key: Path(path).name for key, path in sorted(ready.submodels.items())},
        "speakers": asdict(speakers),
    }

    def compute() -> dict[str, Any]:
        backend = load_backend(spec, Path(ready.path) if ready.path else None, ready.submodels)
        diarization: Diarization = backend.diarize(
            load_wav(audio.result["path"]), SAMPLE_RATE, speakers
        )
        turns_path = diarization.save(job.records / "diarization.json")
        labelled = assign_speakers(Transcript.load(Path(transcript.result["path"])), diarization)
        path = labelled.save(job.records / "transcript.diarized.json")
        log.info(
            "diarize: %d speaker(s), %d turn(s)", len(diarization.speakers), len(diarization.turns)
        )
        return {
            "path": str(path),
            "diarization": str(turns_path),
            "speakers": list(diarization.speakers),
            "turns": len(diarization.turns),
            "segments": len(labelled.segments),
        }

    return run_stage(
        job,
        "diarize",
        config,
        transcript.key,
        compute,
        outputs=lambda r: [r["path"], r["diarization"]],
    )


@task(cache_policy=NONE)
def write_subtitles(job: Job, transcript: StageResult, formats: tuple[str, ...]) -> dict[str, str]:
    """subtitles: ``<stem>.<fmt>`` for each requested format."""
    with room_for(job, "the subtitles"):
        paths = write_outputs(
            Transcript.load(Path(transcript.result["path"])), job.path, job.stem, formats
        )
    return {fmt: str(p) for fmt, p in paths.items()}
