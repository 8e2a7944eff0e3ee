"""A run's request: what the transcribe and subtitle flows are asked, described and checked once.

:class:`TranscribeRequest` and :class:`SubtitleRequest` are frozen pydantic models. Their
fields are the flows' parameters: the flows' signatures must match them (checked when the flow
is defined, by :func:`takes`), and their descriptions become the flows' docstrings, which
Prefect renders as each deployment's form. The parameters stay flat, so a deployment's defaults
(``profile: cpu`` on ``transcribe/cpu``) merge with what a run passes.

``check()`` is the one check of a request: every cheap rule (the media
path, the language codes, the formats, the speaker count, the profile with the run's stage
switches) before any model or server is touched. The CLI calls it before it starts a Prefect
server; the flow calls it on what the run was given.
"""

from __future__ import annotations

import inspect
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, Literal, TypeVar

from pydantic import BaseModel, ConfigDict, Field

from blocks.volume import Volume
from profiles import Profile, list_profiles, load_catalog, load_profile, resolve_profile
from tasks.asr import speech_language
from tasks.diarize import SpeakerCount
from tasks.guard import GuardOptions
from tasks.media import check_media_path
from tasks.subtitles import FORMATS, parse_formats
from tasks.subtitles.rules import RuleSet, rule_set
from voxflow.errors import BadInput, ProfileError
from voxflow.languages import lookup
from voxflow.settings import load_settings

OnColdCache = Literal["fail", "warm"]
"""What an inference run does on a cold volume: fail naming the command, or warm and go on."""

SUBTITLE_FORMATS = ("srt", "vtt", "json")
"""The subtitle flow's formats when a run names none."""


class RunRequest(BaseModel):
    """What every run that transcribes is asked (the fields transcribe and subtitle share)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    media: str = Field(description="Path to an audio or video file the worker can read.")
    profile: str = Field(
        "auto",
        description="Hardware profile (cpu, cuda, mlx, openvino) or auto to pick by hardware.",
    )
    formats: list[str] | None = Field(
        None, description="Output formats among srt, vtt, json, txt (all when empty)."
    )
    output_dir: str | None = Field(
        None, description="Where job directories go ($VOXFLOW_OUTPUT or ./output when empty)."
    )
    store: str | None = Field(
        None, description="Model volume root ($VOXFLOW_STORE or ./models when empty)."
    )
    audio_stream: int | None = Field(
        None,
        description="Which audio stream to use, counting from 0 (the first when empty).",
    )
    on_cold_cache: OnColdCache = Field(
        "fail",
        description="On a cold model volume: fail (naming what to run), or warm it through the "
        "profile's warm-cache deployment and go on.",
    )
    diarize: bool | None = Field(
        None,
        description="Label speakers (true) or not (false); empty follows the profile, and a "
        "speaker count below switches it on.",
    )
    speakers: int | None = Field(None, description="Exact number of speakers, when known.")
    min_speakers: int | None = Field(None, description="At least this many speakers.")
    max_speakers: int | None = Field(None, description="At most this many speakers.")
    separate: bool | None = Field(
        None,
        description="Isolate the voice (Demucs vocals stem) before VAD and ASR (true) or not "
        "(false); empty follows the profile (on for cuda and mlx, off on cpu).",
    )
    subtitle_rules: str | None = Field(
        None,
        description="Subtitle rule set: netflix-en, netflix-en-kids, cjk-zh or cjk-ja; empty "
        "follows the profile, else netflix-en (Chinese and Japanese get their CJK set).",
    )
    fps: float | None = Field(
        None, description="Frame rate the subtitle gap rules count in (24 when empty)."
    )
    keep_flagged: bool = Field(
        False,
        description="Keep in the subtitles and plain text what the hallucination guard flags "
        "(text outside speech, or scored as made up); the JSON always keeps it, with the reason.",
    )

    def _run(self, started: float, language: str | None, changes: dict[str, Any]) -> Run:
        settings = load_settings()
        count = SpeakerCount(self.speakers, self.min_speakers, self.max_speakers)
        name = resolve_profile(self.profile)  # 'auto' is decided once, here
        profile = with_separation(
            with_diarization(load_profile(name), self.diarize, count), self.separate
        )
        check_heard_language(profile, language)
        formats = parse_formats(self.formats or self.default_formats())
        rules = subtitle_rules(profile, self.subtitle_rules, self.fps)
        request = self.model_copy(update={**changes, "profile": name, "formats": list(formats)})
        return Run(
            request=request,
            profile=profile,
            language=language,
            formats=formats,
            rules=rules,
            guard=GuardOptions(keep_flagged=self.keep_flagged),
            count=count,
            volume=Volume(root=str(self.store or settings.store)),
            output=Path(self.output_dir or settings.output),
            started=started,
        )

    def default_formats(self) -> tuple[str, ...]:
        """The formats a run writes when it names none."""
        return FORMATS

    def parameters(self) -> dict[str, Any]:
        """The request as flow parameters."""
        return self.model_dump()


class TranscribeRequest(RunRequest):
    """What one transcribe run is asked to do."""

    language: str | None = Field(
        None,
        description="Spoken language: ISO 639-1 (fr), ISO 639-3 (fra), NLLB (fra_Latn) or its "
        "English name (French); detected when empty.",
    )

    def check(self) -> Run:
        """Every cheap rule of this request, before any model, audio or server is touched.

        Returns:
            The run it asks for, with ``request`` normalised (the profile resolved, the
            language as Whisper's code, the formats listed), to pass on as flow parameters.

        Raises:
            BadInput: A missing, empty or folder media path, a language or format voxflow does
                not know, a bad speaker count.
            ProfileError: An unknown profile, or a stage the profile cannot switch on.
        """
        started = time.perf_counter()
        check_media_path(self.media)
        language = speech_language(self.language)
        return self._run(started, language, {"language": language})


class SubtitleRequest(RunRequest):
    """What one subtitle run is asked to do: a transcribe run, then its translations."""

    target_languages: list[str] = Field(
        description="Languages to translate into: ISO 639-1 (fr), ISO 639-3 (fra) or NLLB "
        "(fra_Latn) codes."
    )
    source_language: str | None = Field(
        None, description="The spoken language, in any of those forms; detected when empty."
    )
    formats: list[str] | None = Field(
        None,
        description="Output formats among srt, vtt, json, txt (srt, vtt and json when empty).",
    )

    def check(self) -> Run:
        """As transcribe's, and the languages: at least one target, each a
        language; the source, when given, one Whisper recognises.

        Raises:
            BadInput: As for transcribe, no target language, or a code that is not a language.
        """
        started = time.perf_counter()
        if not self.target_languages:
            raise BadInput("no target language given; name at least one, e.g. fr or de")
        check_media_path(self.media)
        source = lookup(self.source_language).code if self.source_language else None
        targets = [lookup(code).code for code in self.target_languages]
        language = speech_language(source)
        run = self._run(started, language, {"source_language": source, "target_languages": targets})
        # Asking for subtitles in another language is asking for translation.
        return replace(run, profile=run.profile.with_stages("translate"))

    def default_formats(self) -> tuple[str, ...]:
        return SUBTITLE_FORMATS


@dataclass(frozen=True)
class Run:
    """A checked request: what the flow's stages need, decided once.

    Attributes:
        request: The request, normalised; its ``parameters()`` start the same run elsewhere.
        profile: The profile with the run's stage switches (diarize, separate, translate).
        language: Whisper's code for the spoken language; None to detect it.
        formats: Output formats.
        rules: The subtitle rule set (translations use their language's, see
            :func:`tasks.subtitles.rules.rules_for_language`).
        guard: The hallucination guard's thresholds, and whether flagged text is kept.
        count: What the run says of the speakers.
        volume: The model volume.
        output: Where job directories go.
        started: ``time.perf_counter()`` when the run was checked, for its wall time.
    """

    request: RunRequest
    profile: Profile
    language: str | None
    formats: tuple[str, ...]
    rules: RuleSet
    guard: GuardOptions
    count: SpeakerCount
    volume: Volume
    output: Path
    started: float


def subtitle_rules(profile: Profile, name: str | None, fps: float | None) -> RuleSet:
    """The run's subtitle rules: the named set (else the profile's, else netflix-en) with the
    profile's limits over it, and the run's frame rate over those.

    Raises:
        BadInput: An unknown rule set or limit given for the run.
        ProfileError: An unknown rule set or limit in the profile (names its file and key).
    """
    options = dict(profile.subtitles)
    chosen = options.pop("rules", None)
    base = rule_set(name) if name else None  # the run's own choice: its error is the run's
    try:
        rules = (base or rule_set(chosen)).with_options(options)
    except BadInput as e:
        raise ProfileError(str(e), file=profile.file, key_path="subtitles") from e
    return rules.with_options({"fps": fps}) if fps is not None else rules


def with_diarization(profile: Profile, diarize: bool | None, speakers: SpeakerCount) -> Profile:
    """The profile a run uses: diarization switched on or off as the run asks.

    Args:
        profile: The loaded profile.
        diarize: True or False to force the stage on or off; None to follow the profile, or
            to switch it on when ``speakers`` gives a count.
        speakers: The run's speaker count (empty when not given).

    Raises:
        BadInput: A speaker count with ``diarize`` False.
        ProfileError: Diarization asked for, but the profile declares no diarize stage.
    """
    counted = speakers != SpeakerCount()
    if diarize is False and counted:
        raise BadInput("a number of speakers was given, but diarization is switched off")
    declared = profile.stages.get("diarize")
    enabled = declared is not None and declared.enabled
    wanted = diarize if diarize is not None else (enabled or counted)
    if wanted and not enabled:
        return profile.with_stages("diarize")
    if not wanted and enabled:
        return profile.with_stages(off=("diarize",))
    return profile


def with_separation(profile: Profile, separate: bool | None) -> Profile:
    """The profile a run uses: voice separation on or off as the run asks (None: as declared)."""
    if separate is None:
        return profile
    on, off = (["separate"], []) if separate else ([], ["separate"])
    return profile.with_stages(*on, off=off)


Fn = TypeVar("Fn", bound=Callable[..., Any])


def takes(model: type[BaseModel]) -> Callable[[Fn], Fn]:
    """Give a flow the parameters' descriptions of ``model``; refuse a signature that differs.

    The flow's docstring gets an ``Args:`` section written from the fields' descriptions, so
    Prefect's deployment form shows them. A parameter the model lacks, or a default that
    differs, fails when the flow is defined rather than when a run meets it.
    """

    def attach(fn: Fn) -> Fn:
        fields = model.model_fields
        params = inspect.signature(fn).parameters
        if set(params) != set(fields):
            raise TypeError(
                f"{fn.__name__}'s parameters {sorted(params)} differ from {model.__name__}'s "
                f"fields {sorted(fields)}"
            )
        for name, param in params.items():
            default = fields[name].get_default() if not fields[name].is_required() else ...
            given = ... if param.default is inspect.Parameter.empty else param.default
            if given != default:
                raise TypeError(
                    f"{fn.__name__}({name}=...) defaults to {given!r}, "
                    f"{model.__name__}.{name} to {default!r}"
                )
        lines = [f"{name}: {fields[name].description}" for name in params]
        summary, _, rest = (inspect.getdoc(fn) or "").partition("\n\n")
        args = "Args:\n" + "\n".join(f"    {line}" for line in lines)
        fn.__doc__ = "\n\n".join(part for part in (summary, args, rest) if part)
        return fn

    return attach


def check_heard_language(profile: Profile, language: str | None) -> None:
    """Refuse, before any work, a spoken language the profile's speech model cannot hear.

    Raises:
        BadInput: ``language`` is set and the ASR model's catalog entry lists the languages
            it hears (an English-only Whisper: ``[en]``) without it; the message names those
            and the profiles whose model hears it.
    """
    asr = profile.stages.get("asr")
    if not language or asr is None or not asr.model:
        return
    catalog = load_catalog()
    heard = catalog[asr.model].languages
    if not heard or language in heard:
        return
    others = []
    for name in list_profiles():
        other = load_profile(name).stages.get("asr")
        if other is not None and other.model in catalog:
            if not catalog[other.model].languages or language in catalog[other.model].languages:
                others.append(name)
    hint = f"use --profile {' or '.join(others)}" if others else "use a multilingual model"
    raise BadInput(
        f"the {profile.name} profile's speech model {asr.model} hears only "
        f"{', '.join(heard)}, and --language {language} was asked for; {hint} "
        "(see `voxflow profiles`), or leave --language out"
    )
