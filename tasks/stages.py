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
from tasks.job import Job, StageResult, open_job, run_stage
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


@task(name="preflight", cache_policy=NONE)
def check_ready(profile: Profile, store: ModelStore) -> dict[str, ReadyStage]:
    """Every model and package the profile needs is here (see :func:`tasks.preflight.preflight`)."""
    return preflight(profile, store)


@task(name="open-job", cache_policy=NONE)
def prepare_job(media: str, output_dir: str) -> Job:
    """Hash the media and create its job directory."""
    return open_job(media, output_dir)


@task(name="extract", cache_policy=NONE)
def extract(job: Job, stream: int | None = None) -> StageResult:
    """media.extract: 16 kHz mono WAV of one audio stream into ``audio.wav``."""
    return run_stage(
        job,
        "extract",
        {"stream": stream, "rate": SAMPLE_RATE},
        None,
        lambda: asdict(extract_audio(job.media, job.path / "audio.wav", stream)),
        outputs=lambda r: [r["path"]],
    )


@task(name="vad", cache_policy=NONE)
def detect_speech(job: Job, spec: StageSpec, ready: ReadyStage, audio: StageResult) -> StageResult:
    """vad: speech spans into ``speech.json``."""

    def compute() -> dict[str, Any]:
        backend = load_backend(spec, Path(ready.path) if ready.path else None, ready.submodels)
        spans = backend.speech_spans(load_wav(audio.result["path"]), SAMPLE_RATE)
        path = job.path / "speech.json"
        path.write_text(json.dumps([asdict(s) for s in spans]))
        speech = round(sum(s.end - s.start for s in spans), 3)
        log.info(
            "vad: %d speech span(s), %.1f s of %.1f s", len(spans), speech, audio.result["duration"]
        )
        return {"path": str(path), "spans": len(spans), "speech_seconds": speech}

    return run_stage(
        job, "vad", _stage_config(spec, ready), audio.key, compute, outputs=lambda r: [r["path"]]
    )


@task(name="asr", cache_policy=NONE)
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
        path = transcript.save(job.path / "transcript.json")
        return {
            "path": str(path),
            "language": transcript.language,
            "segments": len(transcript.segments),
            "words": sum(len(s.words) for s in transcript.segments),
        }

    return run_stage(job, "asr", config, speech.key, compute, outputs=lambda r: [r["path"]])


@task(name="write", cache_policy=NONE)
def write_subtitles(job: Job, transcript: StageResult, formats: tuple[str, ...]) -> dict[str, str]:
    """subtitles: ``<stem>.<fmt>`` for each requested format."""
    paths = write_outputs(
        Transcript.load(Path(transcript.result["path"])), job.path, job.stem, formats
    )
    return {fmt: str(p) for fmt, p in paths.items()}
