"""The run request: one model describes the flows' parameters, and one check reads them."""

from __future__ import annotations

import os

import pytest
from prefect.utilities.callables import parameter_schema

from conftest import SAMPLE
from flows.parameters import takes
from flows.request import SubtitleRequest, TranscribeRequest
from flows.subtitle import subtitle
from flows.transcribe import transcribe
from profiles import resolve_profile
from voxflow.errors import BadInput, MediaNotFound, ProfileError


@pytest.mark.parametrize(
    ("flow", "model"), [(transcribe, TranscribeRequest), (subtitle, SubtitleRequest)]
)
def test_the_deployment_form_describes_each_parameter_as_the_request_does(flow, model):
    form = parameter_schema(flow.fn).model_dump()["properties"]
    assert set(form) == set(model.model_fields)
    for name, field in model.model_fields.items():
        assert form[name]["description"] == field.description, name


def test_a_flow_whose_parameters_drift_from_the_request_is_refused_when_defined():
    def drifted(media: str, profile: str = "cpu", **options):  # the request's is auto
        """A flow."""

    with pytest.raises(TypeError, match="gives profile a default of its own"):
        takes(TranscribeRequest)(drifted)

    def closed(media: str):  # the other options have nowhere to go
        """A flow."""

    with pytest.raises(TypeError, match=r"take the rest as \*\*options"):
        takes(TranscribeRequest)(closed)

    def unknown(media: str, colour: str, **options):
        """A flow."""

    with pytest.raises(TypeError, match="must name only fields"):
        takes(TranscribeRequest)(unknown)


@pytest.mark.parametrize(
    ("flow", "model"), [(transcribe, TranscribeRequest), (subtitle, SubtitleRequest)]
)
def test_the_form_has_no_type_toggles_and_fixed_values_as_choices(flow, model):
    """Every field has one concrete type (no ``X | None``, which the UI shows as a type toggle);
    the values the request would refuse are not offered."""
    form = parameter_schema(flow.fn).model_dump()
    for name, field in form["properties"].items():
        assert "anyOf" not in field and field.get("type"), (name, field)
        assert field["title"][0].isupper() and "_" not in field["title"], (name, field["title"])
    properties = form["properties"]
    assert properties["diarize"]["enum"] == ["profile", "on", "off"]
    assert properties["separate"]["enum"] == ["profile", "on", "off"]
    enum = set(properties["formats"]["items"]["enum"])
    assert enum == {"srt", "vtt", "json", "txt", "ttml", "ass"}
    assert "netflix-en" in properties["subtitle_rules"]["enum"]
    assert "enum" not in properties["profile"]  # a deployment may name a profile file
    assert properties["speakers"]["minimum"] == 0
    if "target_languages" in properties:
        assert properties["target_languages"]["minItems"] == 1
        assert "target_languages" in form["required"]


def test_old_callers_none_means_the_default():
    """A deployment or script that passes ``None`` (the old "not given") gets the default, and
    a switch given as a bool is on or off."""
    old = TranscribeRequest(media=str(SAMPLE), language=None, speakers=None, diarize=False)
    assert (old.language, old.speakers, old.diarize) == ("auto", 0, "off")


def test_the_cli_flags_are_the_request_fields():
    """Each field of the requests is a flag of its command, with the field's description as
    its help: the CLI writes no option of its own."""
    from flows.cli.main import _parser

    parser = _parser()
    for command, model in (("transcribe", TranscribeRequest), ("subtitle", SubtitleRequest)):
        text = parser._subparsers._group_actions[0].choices[command].format_help()
        flat = " ".join(text.split())
        for field in model.model_fields.values():
            assert " ".join(field.description.split()[:2]).rstrip(":.,") in flat
    args = parser.parse_args(["transcribe", "a.mp4", "--format", "srt,json", "--no-diarize"])
    assert (args.formats, args.diarize, args.language) == (["srt", "json"], "off", "auto")
    with pytest.raises(SystemExit):
        parser.parse_args(["transcribe", "a.mp4", "--format", "docx"])


def test_check_normalises_the_request_it_passes_on():
    run = TranscribeRequest(
        media=str(SAMPLE), language="French", formats=["SRT", "vtt,srt"]
    ).check()
    assert run.request.language == "fr"
    assert run.request.formats == ["srt", "vtt"]
    assert run.request.profile == resolve_profile("auto") != "auto"  # decided once
    assert run.formats == ("srt", "vtt")
    # What it passes on checks to the same run.
    again = TranscribeRequest(**run.request.parameters()).check()
    assert again.request == run.request


def test_check_switches_the_stages_the_run_asks_for():
    run = TranscribeRequest(media=str(SAMPLE), speakers=2, separate=True).check()
    assert run.profile.stages["diarize"].enabled and run.profile.stages["separate"].enabled
    sub = SubtitleRequest(media=str(SAMPLE), target_languages=["German"]).check()
    assert sub.profile.stages["translate"].enabled
    assert sub.request.target_languages == ["de"] and sub.formats == ("srt", "vtt", "json")


@pytest.mark.parametrize(
    ("request_", "error"),
    [
        (TranscribeRequest(media="nowhere.mp4"), MediaNotFound),
        (TranscribeRequest(media=str(SAMPLE), language="Klingon"), BadInput),
        (TranscribeRequest(media=str(SAMPLE), formats=["docx"]), BadInput),
        (TranscribeRequest(media=str(SAMPLE), diarize=False, speakers=2), BadInput),
        (SubtitleRequest(media=str(SAMPLE), target_languages=[]), BadInput),
    ],
)
def test_bad_requests_fail_the_check_with_what_was_expected(request_, error):
    with pytest.raises(error):
        request_.check()


def test_subtitle_rules_come_from_the_run_then_the_profile_then_netflix_en(tmp_path):
    from profiles import PROFILES_DIR

    mine = tmp_path / "kids.yaml"
    cpu = (PROFILES_DIR / "cpu.yaml").read_text()
    mine.write_text(cpu + "subtitles: {rules: netflix-en-kids, max_cps: 12, fps: 25}\n")
    run = TranscribeRequest(media=str(SAMPLE), profile=str(mine)).check()
    assert (run.rules.name, run.rules.max_cps, run.rules.fps) == ("netflix-en-kids", 12.0, 25.0)
    chosen = TranscribeRequest(media=str(SAMPLE), profile=str(mine), subtitle_rules="cjk-ja")
    assert chosen.check().rules.name == "cjk-ja"
    plain = TranscribeRequest(media=str(SAMPLE), fps=30).check().rules
    assert (plain.name, plain.fps) == ("netflix-en", 30.0)

    mine.write_text(cpu + "subtitles: {rules: netflix-en, max_cpm: 3}\n")
    with pytest.raises(ProfileError, match="max_cpm") as refused:
        TranscribeRequest(media=str(SAMPLE), profile=str(mine)).check()
    assert "kids.yaml" in str(refused.value) and "subtitles" in str(refused.value)
    with pytest.raises(BadInput, match="unknown subtitle rules 'bbc'"):
        TranscribeRequest(media=str(SAMPLE), subtitle_rules="bbc").check()


def test_a_cli_run_is_checked_and_preflighted_once(prefect_api, warm_store, tmp_path, monkeypatch):
    """The command checks the request and preflights the profile before it reaches a server;
    the flow it then runs is given that run, and neither happens twice. Counted by wrapping
    the real check and preflight, which still do the work."""
    import tasks.warm.preflight as preflight_module
    from flows.cli import main as cli

    counts = {"check": 0, "preflight": 0}
    real_check, real_preflight = TranscribeRequest.check, preflight_module.preflight

    def counted_check(self):
        counts["check"] += 1
        return real_check(self)

    def counted_preflight(*args, **kwargs):
        counts["preflight"] += 1
        return real_preflight(*args, **kwargs)

    monkeypatch.setattr(TranscribeRequest, "check", counted_check)
    monkeypatch.setattr(preflight_module, "preflight", counted_preflight)
    monkeypatch.setenv("PREFECT_API_URL", prefect_api)
    for key, value in cli._PROCESS_ENV.items():  # what the command sets, undone after
        monkeypatch.setenv(key, os.environ.get(key, value))
    out = tmp_path / "out"
    code = cli.main(
        ["transcribe", str(SAMPLE), "--profile", "cpu", "--store", warm_store.root,
         "--output", str(out), "--format", "srt"]
    )  # fmt: skip
    assert code == 0
    assert list(out.glob("*/*.srt"))
    assert counts == {"check": 1, "preflight": 1}
