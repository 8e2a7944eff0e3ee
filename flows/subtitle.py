"""The subtitle flow: transcribe, then translate the transcript into each target language.

The profile's translate stage runs even where the profile leaves it off (the cpu profile
does): asking for subtitles in another language is asking for translation. Its model is then
warmed with ``voxflow warm --profile P --with translate``.
"""

from __future__ import annotations

import time
from typing import Any

from prefect import flow

from blocks.volume import Volume
from flows.runtime import OnColdCache, ready_or_warm
from flows.transcribe import run_profile, transcribe_job
from tasks.asr import speech_language
from tasks.diarize import SpeakerCount
from tasks.job import prepare_job
from tasks.subtitles import parse_formats
from tasks.translate.stage import (
    check_languages,
    record_translations,
    translate,
    write_translation,
)
from voxflow.errors import BadInput
from voxflow.languages import lookup
from voxflow.settings import load_settings

DEFAULT_FORMATS = ("srt", "vtt", "json")


@flow(name="subtitle", log_prints=False)
def subtitle(
    media: str,
    target_languages: list[str],
    source_language: str | None = None,
    profile: str = "auto",
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
    """Subtitles of one media file in its own language and in each target language.

    Args:
        media: Path to an audio or video file the worker can read.
        target_languages: Languages to translate into: ISO 639-1 (fr), ISO 639-3 (fra) or
            NLLB (fra_Latn) codes.
        source_language: The spoken language, in any of those forms; detected when empty.
        profile: Hardware profile (cpu, cuda, mlx, openvino) or auto to pick by hardware.
        formats: Output formats among srt, vtt, json, txt (srt, vtt and json when empty).
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
            (false); empty follows the profile.

    Returns:
        The run record, as transcribe writes it, with the translation model, its stages and
        ``translations`` (language -> format -> path) added; also written to ``run.json``.

    Raises:
        BadInput: No target language, a code that is not a language, or a pair the model
            does not translate (before any audio is decoded).
    """
    if not target_languages:
        raise BadInput("no target language given; name at least one, e.g. fr or de")
    started = time.perf_counter()
    settings = load_settings()
    source = lookup(source_language).code if source_language else None
    language = speech_language(source)  # a bad code fails here, before any work
    count = SpeakerCount(speakers, min_speakers, max_speakers)
    chosen = run_profile(profile, diarize, count, separate).with_stages("translate")
    fmts = parse_formats(formats or DEFAULT_FORMATS)
    model_store = Volume(root=str(store or settings.store))

    # One preflight for every stage, the translation model and its pairs first: a refusal
    # costs nothing yet.
    ready = ready_or_warm(chosen, model_store, on_cold_cache)
    spec = chosen.stages["translate"]
    targets = check_languages(spec, ready["translate"], source, list(target_languages))

    job = prepare_job(media, str(output_dir or settings.output))
    done = transcribe_job(job, chosen, ready, language, fmts, audio_stream, count, started)
    results, outputs = [], {}
    for target in targets:
        translated = translate(job, spec, ready["translate"], done.transcript, source, target)
        results.append(translated)
        outputs[target] = write_translation(job, translated, fmts)
    return record_translations(job, done.record, ready["translate"], results, outputs)
