"""The subtitle flow: transcribe, then translate the transcript into each target language.

The profile's translate stage runs even where the profile leaves it off (the cpu profile
does): asking for subtitles in another language is asking for translation. Its model is then
warmed with ``voxflow warm --profile P --with translate``.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from prefect import flow

from flows.failures import fails_with_fix
from flows.names import subtitle_run_name
from flows.parameters import takes
from flows.request import SubtitleRequest, checked
from flows.runtime import ready_or_warm
from flows.transcribe import transcribe_job
from tasks.job import prepare_job
from tasks.naming import media_name
from tasks.translate.stage import (
    check_languages,
    record_translations,
    translate,
    write_translation,
)
from voxflow.logs import show_voxflow_logs

log = logging.getLogger(__name__)


@flow(name="subtitle", flow_run_name=subtitle_run_name, log_prints=False)
@fails_with_fix
@takes(SubtitleRequest)
def subtitle(media: str, target_languages: list[str], **options: Any) -> dict[str, Any]:
    """Subtitles of one media file in its own language and in each target language.

    Returns:
        The run record, as transcribe writes it, with the translation model, its stages and
        ``translations`` (language -> format -> path) added; also written to ``run.json``.

    Raises:
        BadInput: No target language, a code that is not a language, or a pair the model
            does not translate (before any audio is decoded).
    """
    show_voxflow_logs()
    run = checked(
        SubtitleRequest(media=media, target_languages=target_languages, **options)
    )  # its parameters, checked once
    request = run.request
    # One preflight for every stage, the translation model and its pairs first: a refusal
    # costs nothing yet.
    ready = run.ready or ready_or_warm(run.profile, run.volume, request.on_cold_cache)
    spec = run.profile.stages["translate"]
    source = None if request.source_language == "auto" else request.source_language
    targets = check_languages(spec, ready["translate"], source, request.target_languages)

    with prepare_job(request.media, str(run.output)) as job:  # held for the whole run
        done = transcribe_job(job, run, ready)
        results, written = [], {}
        for target in targets:
            translated = translate(job, spec, ready["translate"], done.transcript, source, target)
            results.append(translated)
            written[target] = write_translation(job, translated, run.formats, run.rules)
        record = record_translations(job, done.record, ready["translate"], results, written)
    for target, files in record["translations"].items():
        log.info("%s → %s: wrote %s", media_name(job.media), target,
                 ", ".join(Path(p).name for p in files.values()))  # fmt: skip
    return record
