"""The guard stage's task: ASR's transcript, with made-up text flagged and loops collapsed,
into the job's ``records/transcript.guarded.json``."""

from __future__ import annotations

import logging
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from tasks.extract import SAMPLE_RATE, load_wav
from tasks.guard import GuardOptions, guard
from tasks.job import Job, StageResult, run_stage
from tasks.transcript import SpeechSpan, Transcript

log = logging.getLogger(__name__)


@task(cache_policy=NONE)
def guard_transcript(
    job: Job,
    transcript: StageResult,
    speech: StageResult,
    vocals: StageResult | None,
    options: GuardOptions,
) -> StageResult:
    """guard: flag what ASR wrote outside speech, in loops, or with the scores of made-up text.

    Args:
        job: The job directory.
        transcript: The asr stage's result.
        speech: The vad stage's result (its speech spans).
        vocals: The separate stage's result (the vocals stem), when separation ran.
        options: The guard's thresholds, and whether subtitles keep flagged text.
    """
    config = {"options": asdict(options), "vocals": vocals.key if vocals else None}

    def compute() -> dict[str, Any]:
        spans = SpeechSpan.load(speech.result["path"])
        stem = load_wav(vocals.result["path"]) if vocals else None
        original = Transcript.load(Path(transcript.result["path"]))
        guarded, report = guard(original, spans, stem, SAMPLE_RATE, options)
        path = guarded.save(job.records / "transcript.guarded.json")
        if report.flagged or report.collapsed_loops or report.dropped_words:
            log.warning(
                "guard: %d of %d segment(s) flagged (%s), %d loop(s) collapsed, %d word(s) "
                "outside speech dropped%s",
                sum(report.flagged.values()),
                report.segments,
                ", ".join(f"{k} {v}" for k, v in report.flagged.items()) or "none",
                report.collapsed_loops,
                report.dropped_words,
                "; flagged text kept in the subtitles" if options.keep_flagged else "",
            )
        return {
            "path": str(path),
            "language": guarded.language,
            "segments": len(guarded.segments),
            "words": sum(len(s.words) for s in guarded.shown()),
            "guard": report.to_dict(),
        }

    return run_stage(job, "guard", config, transcript.key, compute, outputs=lambda r: [r["path"]])
