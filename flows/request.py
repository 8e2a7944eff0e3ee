"""A run's request: what the transcribe, subtitle and inbox flows are asked, written once.

:class:`TranscribeRequest`, :class:`SubtitleRequest`, :class:`InboxRequest` and
:class:`InboxBatchRequest` are frozen pydantic models, and the only place a run option is
written: the flows' signatures are made from their fields (:func:`flows.parameters.takes`), so
Prefect validates a run's parameters by them and renders them as each deployment's form, and
the ``voxflow`` command's flags too (:mod:`flows.cli.flags`). The parameters stay flat, so a
deployment's defaults (``profile: cpu`` on ``transcribe/cpu``) merge with what a run passes.

``check()`` is the one check of a request: every cheap rule (the media path, the language
codes, the formats, the speaker count, the profile with the run's stage switches) before any
model or server is touched. The CLI calls it before it starts a Prefect server; the flow calls
it on what the run was given.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from blocks.volume import Volume
from flows.parameters import SWITCH, Flag, Switch, choices, form
from profiles import Profile, list_profiles, load_catalog, load_profile, resolve_profile
from tasks.asr import speech_language
from tasks.diarize import SpeakerCount
from tasks.guard import GuardOptions
from tasks.media import check_media_path
from tasks.subtitles import FORMATS, parse_formats
from tasks.subtitles.rules import RULE_SETS, RuleSet, rule_set
from voxflow.errors import BadInput, ProfileError
from voxflow.languages import lookup
from voxflow.settings import load_settings

OnColdCache = Literal["fail", "warm"]
"""What an inference run does on a cold volume: fail naming the command, or warm and go on."""

TRANSCRIBE_FORMATS = ("srt", "vtt", "json", "txt")
"""The transcribe flow's formats when a run names none (TTML and ASS when asked for)."""

SUBTITLE_FORMATS = ("srt", "vtt", "json")
"""The subtitle flow's formats when a run names none."""


Formats = Annotated[list[str], Flag("--format", metavar="FORMATS", comma=True)]
"""Output formats: a multi-select on the form, ``--format srt,vtt`` on the command line."""


def formats_field(default: tuple[str, ...]) -> Any:
    """The ``formats`` field, with the formats a run writes when it names none."""
    return Field(
        list(default),
        description="Output formats: srt, vtt, json, txt, ttml (IMSC 1.1 Text, for "
        "broadcasters), ass (for subtitle editors).",
        json_schema_extra=form(
            "Output formats", items={"type": "string", **choices(FORMATS)}, uniqueItems=True
        ),
    )


class RunOptions(BaseModel):
    """What every run that transcribes is asked, besides its media (the options transcribe,
    subtitle and the inbox share). Every field has a concrete default, so the deployment form
    shows no type toggles; ``None`` from an older caller means that default."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    profile: Annotated[str, Flag(open=True)] = Field(
        "auto",
        description="Hardware profile: cpu, cpu-en, cuda, mlx, openvino (or a .yaml path on "
        "the command line), or auto to pick by this machine's hardware.",
        # Free text: a deployment may name a profile file of its own (`profile: /srv/hub.yaml`);
        # every deployment in prefect.yaml pins one, which the form shows.
        json_schema_extra=form("Hardware profile"),
    )
    formats: Formats = formats_field(TRANSCRIBE_FORMATS)
    output_dir: Annotated[str, Flag("--output", metavar="DIR")] = Field(
        "",
        description="Where job folders go; empty: $VOXFLOW_OUTPUT, else ./output.",
        json_schema_extra=form("Output folder"),
    )
    store: Annotated[str, Flag(metavar="DIR")] = Field(
        "",
        description="The model volume's root; empty: $VOXFLOW_STORE, else ./models.",
        json_schema_extra=form("Model volume"),
    )
    audio_stream: Annotated[int, Flag(metavar="N")] = Field(
        0,
        description="Which audio stream to transcribe, counting from 0 (the first).",
        json_schema_extra=form("Audio stream", minimum=0),
    )
    on_cold_cache: OnColdCache = Field(
        "fail",
        description="On a cold model volume: fail (naming what to run), or warm it through the "
        "profile's warm-cache deployment and go on.",
        json_schema_extra=form("On a cold model volume"),
    )
    diarize: Annotated[Switch, Flag()] = Field(
        "profile",
        description="Label speakers: on, off, or as the profile says (a speaker count "
        "switches it on).",
        json_schema_extra=form("Label speakers", **choices(SWITCH)),
    )
    speakers: Annotated[int, Flag(metavar="N")] = Field(
        0, description="Exact number of speakers; 0: not known.",
        json_schema_extra=form("Speakers", minimum=0),
    )  # fmt: skip
    min_speakers: Annotated[int, Flag(metavar="A")] = Field(
        0, description="At least this many speakers; 0: no bound.",
        json_schema_extra=form("At least this many speakers", minimum=0),
    )  # fmt: skip
    max_speakers: Annotated[int, Flag(metavar="B")] = Field(
        0, description="At most this many speakers; 0: no bound.",
        json_schema_extra=form("At most this many speakers", minimum=0),
    )  # fmt: skip
    separate: Annotated[Switch, Flag()] = Field(
        "profile",
        description="Isolate the voice (Demucs vocals stem) before VAD and ASR: on, off, or "
        "as the profile says (on for cuda and mlx, off on cpu).",
        json_schema_extra=form("Isolate the voice", **choices(SWITCH)),
    )
    subtitle_rules: Annotated[str, Flag("--rules", metavar="NAME")] = Field(
        "profile",
        description="Subtitle rule set: "
        + ", ".join(RULE_SETS)
        + ", or as the profile says (else netflix-en; Chinese and Japanese get their CJK set).",
        json_schema_extra=form("Subtitle rules", **choices(["profile", *RULE_SETS])),
    )
    fps: Annotated[float, Flag()] = Field(
        0.0,
        description="Frame rate the subtitle gap rules count in; 0: the rule set's (24).",
        json_schema_extra=form("Frame rate", minimum=0),
    )
    keep_flagged: Annotated[bool, Flag()] = Field(
        False,
        description="Keep in the subtitles and plain text what the hallucination guard flags "
        "(text outside speech, or scored as made up); the JSON always keeps it, with the reason.",
        json_schema_extra=form("Keep flagged text"),
    )

    @model_validator(mode="before")
    @classmethod
    def _defaults_for_none(cls, data: Any) -> Any:
        """``None`` (an older caller's "not given") is the field's default."""
        if not isinstance(data, dict):
            return data
        return {key: value for key, value in data.items() if value is not None}

    def _run(self, started: float, language: str | None, changes: dict) -> Run:
        settings = load_settings()
        count = SpeakerCount(self.speakers or None, self.min_speakers or None,
                             self.max_speakers or None)  # fmt: skip
        name = resolve_profile(self.profile)  # 'auto' is decided once, here
        diarize, separate = switch(self.diarize, "diarize"), switch(self.separate, "separate")
        profile = with_separation(with_diarization(load_profile(name), diarize, count), separate)
        check_heard_language(profile, language)
        formats = parse_formats(self.formats or self.model_fields["formats"].default)
        rules = subtitle_rules(
            profile,
            None if self.subtitle_rules == "profile" else self.subtitle_rules,
            self.fps or None,
        )
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

    def parameters(self) -> dict[str, Any]:
        """The request as flow parameters."""
        return self.model_dump()


class TranscribeOptions(RunOptions):
    """What the transcribe flow and the inbox ask of each file, besides the file."""

    language: Annotated[str, Flag(metavar="LANG")] = Field(
        "auto",
        description="Spoken language: ISO 639-1 (fr), ISO 639-3 (fra), NLLB (fra_Latn) or its "
        "English name (French); auto: detected, per segment.",
        json_schema_extra=form("Spoken language"),
    )


class TranscribeRequest(TranscribeOptions):
    """What one transcribe run is asked to do."""

    media: Annotated[str, Flag(positional=True)] = Field(
        description="Path to an audio or video file the worker can read.",
        json_schema_extra=form("Media file"),
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
        language = speech_language(None if self.language == "auto" else self.language)
        return self._run(started, language, {"language": language or "auto"})


class SubtitleRequest(RunOptions):
    """What one subtitle run is asked to do: a transcribe run, then its translations."""

    media: Annotated[str, Flag(positional=True)] = Field(
        description="Path to an audio or video file the worker can read.",
        json_schema_extra=form("Media file"),
    )
    target_languages: Annotated[list[str], Flag("--to", metavar="LANGS", comma=True)] = Field(
        description="Languages to translate into: ISO 639-1 (fr), ISO 639-3 (fra) or NLLB "
        "(fra_Latn) codes.",
        json_schema_extra=form("Translate into", minItems=1),
    )
    source_language: Annotated[str, Flag("--from", metavar="LANG")] = Field(
        "auto",
        description="The spoken language, in any of those forms; auto: detected.",
        json_schema_extra=form("Spoken language"),
    )
    formats: Formats = formats_field(SUBTITLE_FORMATS)

    def check(self) -> Run:
        """As transcribe's, and the languages: at least one target, each a
        language; the source, when given, one Whisper recognises.

        Raises:
            BadInput: As for transcribe, no target language, or a code that is not a language.
        """
        started = time.perf_counter()
        targets = [code for code in self.target_languages if code.strip()]
        if not targets:
            raise BadInput("no target language given; name at least one, e.g. fr or de")
        check_media_path(self.media)
        given = None if self.source_language == "auto" else self.source_language
        source = lookup(given).code if given else None
        targets = [lookup(code).code for code in targets]
        language = speech_language(source)
        changes = {"source_language": source or "auto", "target_languages": targets}
        run = self._run(started, language, changes)
        # Asking for subtitles in another language is asking for translation.
        return replace(run, profile=run.profile.with_stages("translate"))


class InboxOptions(TranscribeOptions):
    """What an inbox run and its batch runs share: every transcribe option, for each file, and
    how the inbox keeps its claims."""

    quarantine_dir: Annotated[str, Flag()] = Field(
        "",
        description="The folder inside the inbox where files that cannot be transcribed go, "
        "with a .error.txt note; it must be a real folder, not a link (empty: "
        "<inbox>/quarantine).",
        json_schema_extra=form("Quarantine folder"),
    )
    claim_ttl_s: Annotated[float, Flag()] = Field(
        120.0,
        description="Seconds a claim outlives the last sign of life of its batch run; then a "
        "later inbox run claims its files again.",
        json_schema_extra=form("Claim lifetime (s)", exclusiveMinimum=0),
    )

    def file_request(self, media: str, **changes: Any) -> TranscribeRequest:
        """The transcribe request for one file of the inbox: these options, for that file."""
        options = self.model_dump(include=set(TranscribeOptions.model_fields))
        return TranscribeRequest(**{**options, **changes}, media=media)


class InboxRequest(InboxOptions):
    """What one inbox run is asked: a folder to look in, and the options for its files."""

    inbox_dir: Annotated[str, Flag(positional=True)] = Field(
        description="Folder to watch; media files directly in it (not hidden) are candidates.",
        json_schema_extra=form("Inbox folder"),
    )
    min_age_s: Annotated[float, Flag()] = Field(
        10.0,
        description="Leave files modified less than this many seconds ago for the next run.",
        json_schema_extra=form("Minimum age (s)", minimum=0),
    )
    batch_size: Annotated[int, Flag()] = Field(
        4,
        description="Files per batch run; each batch run loads its models once.",
        json_schema_extra=form("Files per batch", minimum=1),
    )


class InboxBatchRequest(InboxOptions):
    """What one batch run of the inbox is asked: the files of a claim, with the inbox run's
    options (its profile resolved)."""

    claim: Annotated[str, Flag()] = Field(
        description="The claim's token in the ledger.", json_schema_extra=form("Claim")
    )
    inbox_run: Annotated[str, Flag()] = Field(
        "", description="The inbox run that made the claim.",
        json_schema_extra=form("Inbox run"),
    )  # fmt: skip


def switch(value: str, name: str) -> bool | None:
    """A stage switch as the profile helpers take it: True, False, or None (the profile's).

    Raises:
        BadInput: Not one of :data:`SWITCH`.
    """
    if value not in SWITCH:
        raise BadInput(f"{name} is {value!r}; expected one of {', '.join(SWITCH)}")
    return {"on": True, "off": False}.get(value)


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
        ready: What the preflight found for each stage, when the command that checked the run
            preflighted it too (the flow then does not preflight again).
    """

    request: TranscribeRequest | SubtitleRequest
    profile: Profile
    language: str | None
    formats: tuple[str, ...]
    rules: RuleSet
    guard: GuardOptions
    count: SpeakerCount
    volume: Volume
    output: Path
    started: float
    ready: dict[str, Any] | None = None


_RECENT_S = 120.0
"""How long a run checked in this process stands for the same request (a command's flow, which
starts moments after the command checked it)."""

_checked: dict[str, tuple[float, Run]] = {}


def checked(request: TranscribeRequest | SubtitleRequest) -> Run:
    """``request.check()``, once per process: the CLI checks (and preflights) a request before
    it starts a server, and the flow it then runs in this process is given that run instead of
    checking it again (:func:`remember`). Anywhere else (a deployment's worker) it is checked
    here. A remembered run is taken once: the next command checks again."""
    hit = _checked.pop(request.model_dump_json(), None)
    if hit is not None and time.monotonic() - hit[0] < _RECENT_S:
        return hit[1]
    return request.check()


def remember(run: Run) -> None:
    """Keep a checked run (with what its preflight found) for the flow this process runs next
    with its request's parameters (:func:`checked`)."""
    now = time.monotonic()
    for key, (when, _) in list(_checked.items()):
        if now - when >= _RECENT_S:
            del _checked[key]
    _checked[run.request.model_dump_json()] = (now, run)


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
