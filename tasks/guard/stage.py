"""The guard stage's task: ASR's transcript, with made-up text flagged and loops collapsed,
into the job's ``records/transcript.guarded.json``."""

from __future__ import annotations

import logging
import shlex
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from profiles import StageSpec
from tasks.extract import SAMPLE_RATE, Wav, load_wav
from tasks.guard import GuardOptions, guard
from tasks.guard.repair import repair
from tasks.job import Job, StageResult, run_stage
from tasks.naming import stage_run_name
from tasks.progress import summary
from tasks.transcript import SpeechSpan, Transcript
from tasks.warm.preflight import ReadyStage
from voxflow.errors import NothingHeard

log = logging.getLogger(__name__)


@task(cache_policy=NONE, task_run_name=stage_run_name("guard"))
def guard_transcript(
    job: Job,
    transcript: StageResult,
    speech: StageResult,
    vocals: StageResult | None,
    options: GuardOptions,
    audio: StageResult | None = None,
    asr: tuple[StageSpec, ReadyStage] | None = None,
) -> StageResult:
    """guard: flag what ASR wrote outside speech, in loops, or with the scores of made-up text,
    then repair: decode again the windows that failed (:mod:`tasks.guard.repair`).

    Args:
        job: The job directory.
        transcript: The asr stage's result.
        speech: The vad stage's result (its speech spans).
        vocals: The separate stage's result (the vocals stem), when separation ran.
        options: The guard's thresholds, and whether subtitles keep flagged text.
        audio: The audio ASR decoded (the repair decodes its windows again).
        asr: The asr stage's spec and model, for the repair (none: flag only).
    """
    repairing = options.repair and audio is not None and asr is not None
    config = {
        "options": asdict(options),
        "vocals": vocals.key if vocals else None,
        "repair": repairing,
    }

    def compute() -> dict[str, Any]:
        spans = SpeechSpan.load(speech.result["path"])
        stem = load_wav(vocals.result["path"]) if vocals else None
        original = Transcript.load(Path(transcript.result["path"]))
        guarded, report = guard(original, spans, stem, SAMPLE_RATE, options)
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
        mended = None
        if repairing:
            assert audio is not None and asr is not None
            spec, ready = asr
            wav = Wav(audio.result["path"])
            guarded, mended = repair(guarded, wav, spans, ready.load(spec), options, stem)
            if mended.windows:
                log.info(
                    "guard: %d window(s) decoded again (%s): %d repaired, %d kept as they "
                    "were; %d segment(s) still flagged",
                    mended.windows,
                    ", ".join(f"{k} {v}" for k, v in (mended.reasons or {}).items()),
                    mended.repaired,
                    mended.kept,
                    sum(1 for s in guarded.segments if s.flag),
                )
        path = guarded.save(job.records / "transcript.guarded.json")
        return {
            "path": str(path),
            "language": guarded.language,
            "segments": len(guarded.segments),
            "words": sum(len(s.words) for s in guarded.shown()),
            "guard": {
                **report.to_dict(),
                "flagged_after_repair": sum(1 for s in guarded.segments if s.flag),
                "repair": mended.to_dict() if mended else None,
            },
        }

    done = run_stage(job, "guard", config, transcript.key, compute, outputs=lambda r: [r["path"]])
    report = done.result["guard"]
    mended = (report.get("repair") or {}).get("repaired", 0)
    made = (
        f"{sum(report['flagged'].values())} of {report['segments']} segment(s) flagged, "
        f"{mended} repaired, {report['flagged_after_repair']} still flagged"
    )
    log.info(summary(done, made))
    return done


MIN_SPEECH_S = 3.0
"""A run whose VAD found at least this much speech and kept no words fails."""


def check_heard(
    job: Job, speech: StageResult, guarded: StageResult, profile: str, store: str
) -> None:
    """Never an empty success: fail a run that heard speech and kept no words, saying why.

    Args:
        job: The job directory.
        speech: The vad stage's result.
        guarded: The guard stage's result.
        profile: The run's profile name, for the commands the message gives.
        store: The model volume's root, likewise.

    Raises:
        NothingHeard: The VAD found at least :data:`MIN_SPEECH_S` of speech and the guarded
            transcript shows no words.
    """
    spans = SpeechSpan.load(speech.result["path"])
    heard = sum(s.end - s.start for s in spans)
    text = Transcript.load(Path(guarded.result["path"]))
    if heard < MIN_SPEECH_S or any(s.text.strip() for s in text.shown()):
        return
    # A transcript that kept nothing is not kept for reuse: the next run decodes again (after
    # a warm repaired a damaged model, say), where a cached stage would repeat the failure.
    for stage in ("asr", "guard"):
        job.stage_file(stage).unlink(missing_ok=True)
    raise NothingHeard(job.media, heard, _why_nothing(text, profile, store))


def _why_nothing(text: Transcript, profile: str, store: str) -> str:
    """Why a transcript kept nothing, and what to run."""
    model = text.model.get("name", "the model")
    flags = Counter(s.flag.split(" (")[0] for s in text.segments if s.flag)
    where = f"--profile {profile} --store {shlex.quote(store)}"
    if not any(s.text.strip() for s in text.segments):
        why = f"{model} wrote no text for it"
    else:
        why = (
            "every segment was flagged as made up ("
            + ", ".join(f"{reason} {n}" for reason, n in flags.most_common())
            + ")"
        )
    if text.model.get("multilingual") is False:
        return (
            f"{why}; {model} hears English only: if the speech is in another language, "
            "transcribe it on a profile with a multilingual model (the cpu profile's Whisper "
            "base hears 99 languages: --profile cpu; see `voxflow profiles`)"
        )
    garbage = {"compression ratio", "repetition across segments"} & set(flags)
    loops = text.model.get("guard", {}).get("collapsed_loops", 0)
    if garbage or loops:
        return (
            f"{why}; the model's output is garbage (loops of the same text), as a damaged "
            f"model writes: run `voxflow verify --deep {where}`, then `voxflow warm {where}`"
        )
    return (
        f"{why}; if it is speech, run again with --keep-flagged to keep what the guard "
        "flagged (each segment's reason is in the job's records/transcript.guarded.json)"
    )
