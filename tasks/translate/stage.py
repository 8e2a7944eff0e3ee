"""The translate stage: a finished transcript into one more language, same segments, same times.

:func:`translate_transcript` is the plain function; the ``@task`` wrappers run it through the
job's stage cache (keyed on the transcript stage's key, the target language and the model's
revision, so a second language or a re-run costs only what changed) and write
``<stem>.<lang>.<fmt>`` beside the source-language files.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from profiles import StageSpec
from tasks import progress
from tasks.job import Job, StageResult, run_stage, save_json
from tasks.naming import media_name, stage_run_name
from tasks.subtitles.rules import RuleSet
from tasks.subtitles.stage import write_files
from tasks.transcript import Segment, Transcript
from tasks.translate import TranslateBackend
from tasks.warm.preflight import ReadyStage
from voxflow.languages import Language, lookup

log = logging.getLogger(__name__)


PROGRESS_SEGMENTS = 64
"""Segments translated between two progress reports (several of the backend's batches)."""


def translate_transcript(
    backend: TranslateBackend, transcript: Transcript, target: str, source: str | None = None
) -> Transcript:
    """Translate every segment of a transcript, keeping its timing and speaker.

    Words are dropped: their timings belong to the source language (the subtitle writers
    spread a segment's new words over its time span).

    Args:
        backend: A loaded translation backend.
        transcript: What ASR (and diarization) produced.
        target: The language wanted (any code :func:`lookup` accepts).
        source: The spoken language when it is not the one ASR recorded (it then holds for
            every segment); else each segment is translated from its own language.

    Raises:
        BadInput: The model does not translate the pair.
    """
    src, tgt = backend.languages.pair(source or transcript.language, target)
    by_source: dict[str, list[int]] = {}
    for i, s in enumerate(transcript.segments):
        by_source.setdefault(source or s.language or transcript.language, []).append(i)
    texts = [s.text for s in transcript.segments]
    finished = 0
    for code, members in by_source.items():
        pair = backend.languages.pair(code, target)
        for start in range(0, len(members), PROGRESS_SEGMENTS):
            part = members[start : start + PROGRESS_SEGMENTS]
            done = backend.translate([texts[i] for i in part], pair[0].code, pair[1].code)
            for i, text in zip(part, done, strict=True):
                texts[i] = text
            finished += len(part)
            progress.report(finished, len(texts))
    segments = tuple(
        Segment(start=s.start, end=s.end, text=text, speaker=s.speaker, language=tgt.code)
        for s, text in zip(transcript.segments, texts, strict=True)
    )
    return Transcript(
        language=tgt.code,
        duration=transcript.duration,
        segments=segments,
        model={
            **transcript.model,
            "translation": {"source_language": src.code, "source_languages": list(by_source)},
        },
    )


@task(cache_policy=NONE)
def check_languages(
    spec: StageSpec, ready: ReadyStage, source: str | None, targets: list[str]
) -> list[str]:
    """The target codes the model will produce, checked before any audio is decoded.

    Returns:
        Each target's voxflow code (``fra_Latn`` -> ``fr``), duplicates dropped.

    Raises:
        BadInput: A code is not a language, or the model does not translate a pair.
    """
    backend = _backend(spec, ready)
    codes: list[Language] = []
    for target in targets:
        if source:
            codes.append(backend.languages.pair(source, target)[1])
        else:
            codes.append(backend.languages.target(target))
    return list(dict.fromkeys(lang.code for lang in codes))


@task(cache_policy=NONE, task_run_name=stage_run_name("translate", "→ {target}"))
def translate(
    job: Job,
    spec: StageSpec,
    ready: ReadyStage,
    transcript: StageResult,
    source: str | None,
    target: str,
) -> StageResult:
    """translate: the transcript in ``target`` into ``transcript.<lang>.json``."""
    code = lookup(target).code
    config = {
        "backend": spec.backend,
        "model": ready.model,
        "revision": ready.revision,
        "options": dict(spec.options),
        "source": lookup(source).code if source else None,
        "target": code,
    }

    def compute() -> dict[str, Any]:
        original = Transcript.load(Path(transcript.result["path"]))
        with progress.tracking(f"translate · {media_name(job.media)} → {code}", "segments"):
            translated = translate_transcript(_backend(spec, ready), original, code, source)
        path = translated.save(job.records / f"transcript.{code}.json")
        source_code = translated.model["translation"]["source_language"]
        return {"path": str(path), "language": code, "segments": len(translated.segments),
                "source": source_code}  # fmt: skip

    done = run_stage(
        job, f"translate.{code}", config, transcript.key, compute, outputs=lambda r: [r["path"]]
    )
    made = f"{done.result['segments']} segment(s) {done.result.get('source', '?')} → {code}"
    log.info(progress.summary(done, made))
    return done


@task(
    cache_policy=NONE, task_run_name=stage_run_name("subtitles", "→ {translated.result[language]}")
)
def write_translation(
    job: Job, translated: StageResult, formats: tuple[str, ...], rules: RuleSet
) -> dict[str, Any]:
    """subtitles: ``<stem>.<lang>.<fmt>`` for each requested format, cues laid out by the
    same compiler under the target language's rule set, within the source segments' times.

    Returns:
        ``outputs`` (format -> path) and ``check`` (the subtitle check of the cues written).
    """
    stem = f"{job.stem}.{translated.result['language']}"
    return write_files(job, translated, stem, formats, rules)


def record_translations(
    job: Job,
    record: dict[str, Any],
    ready: ReadyStage,
    results: list[StageResult],
    written: dict[str, dict[str, Any]],
) -> dict[str, Any]:
    """Add the translations to ``run.json``: the model, each stage's time, the files and their
    subtitle check."""
    record = {
        **record,
        "models": {
            **record["models"],
            "translate": {
                "backend": ready.backend,
                "model": ready.model,
                "revision": ready.revision,
            },
        },
        "stages": {
            **record["stages"],
            **{r.stage: {"seconds": r.seconds, "cached": r.cached, "key": r.key} for r in results},
        },
        "translations": {language: w["outputs"] for language, w in written.items()},
        "translation_subtitles": {language: w["check"] for language, w in written.items()},
    }
    save_json(job, job.records / "run.json", record, "run.json")
    return record


def _backend(spec: StageSpec, ready: ReadyStage) -> TranslateBackend:
    return ready.load(spec)
