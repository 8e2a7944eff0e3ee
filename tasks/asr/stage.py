"""The asr stage's task: words with timings into the job's ``records/transcript.json``."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from profiles import StageSpec
from tasks import progress
from tasks.asr import LOW_LANGUAGE_PROBABILITY
from tasks.extract import Wav
from tasks.job import Job, StageResult, run_stage
from tasks.naming import media_name, stage_run_name
from tasks.transcript import SpeechSpan, Transcript
from tasks.warm.preflight import ReadyStage

log = logging.getLogger(__name__)


@task(cache_policy=NONE, task_run_name=stage_run_name("asr"))
def recognise(
    job: Job,
    spec: StageSpec,
    ready: ReadyStage,
    audio: StageResult,
    speech: StageResult,
    language: str | None,
) -> StageResult:
    """asr: the transcript, with word timestamps, into ``transcript.json``."""
    config = {**ready.config(spec), "language": language}

    def compute() -> dict[str, Any]:
        spans = SpeechSpan.load(speech.result["path"])
        if not spans:
            log.warning("no speech found in %s: the transcript will be empty", Path(job.media).name)
        backend = ready.load(spec)
        with progress.tracking(f"asr · {media_name(job.media)}", "s of speech"):
            result = backend.transcribe(Wav(audio.result["path"]), spans, language)
        transcript = Transcript(
            language=result.language,
            duration=result.duration,
            segments=result.segments,
            model={
                "name": ready.model,
                "revision": ready.revision,
                "backend": spec.backend,
                "options": dict(spec.options),
                "multilingual": backend.multilingual,
            },
        )
        _report_languages(transcript)
        path = transcript.save(job.records / "transcript.json")
        return {
            "path": str(path),
            "language": transcript.language,
            "segments": len(transcript.segments),
            "words": sum(len(s.words) for s in transcript.segments),
            "languages": transcript.languages(),
        }

    done = run_stage(job, "asr", config, speech.key, compute, outputs=lambda r: [r["path"]])
    made = f"{done.result['segments']} segments, {done.result['words']} words"
    log.info(progress.summary(done, made, audio.result["duration"]))
    return done


def _report_languages(transcript: Transcript) -> None:
    """Log the languages heard, and a warning for one the model was unsure of."""
    seconds = transcript.languages()
    if len(seconds) > 1:
        log.info("asr: languages %s", ", ".join(f"{k} {v:.0f} s" for k, v in seconds.items()))
    unsure: dict[str, list[float]] = {}
    for s in transcript.segments:
        if s.language and s.language_probability is not None:
            unsure.setdefault(s.language, []).append(s.language_probability)
    for code, probs in unsure.items():
        mean = sum(probs) / len(probs)
        if mean < LOW_LANGUAGE_PROBABILITY:
            log.warning(
                "asr: the model is unsure the speech is %s (probability %.2f): transcribed in "
                "it; if you know the language, pass --language",
                code,
                mean,
            )
