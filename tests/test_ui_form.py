"""The Prefect UI as an operator meets it, in headless Chromium (issue 21, points 3 and 7): the
"Run → Custom run" form of transcribe/cpu and subtitle/cpu, and a run started from that form,
its logs and its progress.

Real parts only: `prefect server start` on loopback, the deployments made by `prefect deploy`
from prefect.yaml, a process worker on the `cpu` pool running this checkout, the cpu profile's
real models, generated speech. Every screenshot is kept in tests/out/ (git-ignored); each test
prints the paths of its own.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import DeploymentFilter, DeploymentFilterId
from prefect.settings import PREFECT_API_URL, temporary_settings
from test_deployments_e2e import Stack
from test_long_media import recording

from browser import chromium, screenshot, shot_on_failure, wait_for_text, wait_until
from conftest import ROOT, cli_env
from flows.request import TRANSCRIBE_FORMATS
from servers import prefect_server, prefect_worker
from tasks.subtitles import FORMATS
from tasks.subtitles.rules import RULE_SETS

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

FIELD = "//div[contains(concat(' ', normalize-space(@class), ' '), ' schema-form-property ')]"
"""One field of Prefect's schema form: its title, description and input."""


@pytest.fixture(scope="module")
def stack(tmp_path_factory, warm_store) -> Iterator[Stack]:
    """A Prefect server, transcribe/cpu and subtitle/cpu deployed from prefect.yaml onto the
    session's warmed cpu volume, and a process worker on the `cpu` pool."""
    tmp = tmp_path_factory.mktemp("ui-form")
    guard = tmp / "netguard.log"
    home = tmp / "prefect"
    home.mkdir()
    with prefect_server(home, cli_env("http://127.0.0.1:9/api", guard)) as (api, env):
        s = Stack(api, env, home, Path(warm_store.root), tmp / "output", guard)
        s.prefect("work-pool", "create", "cpu", "--type", "process")
        s.prefect(
            "deploy", "--no-prompt", "--name", "transcribe/cpu", "--name", "subtitle/cpu",
            VOXFLOW_STORE=str(s.store), VOXFLOW_OUTPUT=str(s.output),
            VOXFLOW_INBOX=str(tmp / "inbox"),
        )  # fmt: skip
        with prefect_worker("cpu", {**env, "VOXFLOW_HOME": str(ROOT)}, home):
            yield s
    assert not guard.exists(), f"a process tried the network: {guard.read_text()}"


@pytest.fixture
def driver(stack) -> Iterator:
    with chromium(stack.home / "chromium") as d:
        yield d


def deployment_id(stack: Stack, name: str) -> str:
    with temporary_settings(updates={PREFECT_API_URL: stack.api}):
        with get_client(sync_client=True) as client:
            return str(client.read_deployment_by_name(name).id)


def flow_runs_of(stack: Stack, deployment: str) -> list:
    with temporary_settings(updates={PREFECT_API_URL: stack.api}):
        with get_client(sync_client=True) as client:
            return client.read_flow_runs(
                deployment_filter=DeploymentFilter(id=DeploymentFilterId(any_=[deployment]))
            )


def open_form(driver, stack: Stack, name: str) -> dict:
    """Open the deployment's custom run form; its fields by title, as the page shows them."""
    base = stack.api.removesuffix("/api")
    driver.get(f"{base}/deployments/deployment/{deployment_id(stack, name)}/run")
    wait_for_text(driver, "Media file", timeout=90)
    fields = {}
    for element in driver.find_elements("xpath", FIELD):
        title = element.find_element("class name", "schema-form-property__label").text
        fields[title.removesuffix(" (Optional)")] = element
    return fields


def choice(field, multiple: bool = False):
    """The field's select (Prefect's own select wraps a native one, then a placeholder)."""
    from selenium.webdriver.support.select import Select

    [native, *_] = field.find_elements("css selector", "select.p-native-select__control")
    select = Select(native)
    assert bool(select.is_multiple) == multiple, field.text
    return select


def values(select) -> list[str]:
    return [option.get_attribute("value") for option in select.options]


def text_of(field) -> str:
    """What a text or number field holds."""
    [box] = field.find_elements("css selector", "textarea, input")
    return box.get_attribute("value")


def submit(driver) -> None:
    driver.find_element("xpath", "//button[normalize-space()='Submit']").click()


def test_the_transcribe_form_has_no_type_toggles_and_offers_its_fixed_values(driver, stack):
    with shot_on_failure(driver, "transcribe-form"):
        fields = open_form(driver, stack, "transcribe/cpu")
        screenshot(driver, "transcribe-form")
        page = driver.find_element("tag name", "body").text

        assert 'Property is type "None"' not in page
        toggles = ".schema-form-property-any-of, .schema-form-property-null, .p-button-group"
        assert [t for t, f in fields.items() if f.find_elements("css selector", toggles)] == []
        # Titles in words, not the parameter names Prefect would show by default.
        assert set(fields) >= {
            "Media file", "Hardware profile", "Spoken language", "Output formats",
            "Output folder", "Model volume", "Label speakers", "Isolate the voice",
            "Subtitle rules", "Speakers", "Keep flagged text",
        }  # fmt: skip
        assert not [title for title in fields if "_" in title or title == "Output Dir"]

        formats = choice(fields["Output formats"], multiple=True)
        assert values(formats) == list(FORMATS) and {"srt", "vtt", "json", "txt"} <= set(FORMATS)
        selected = [o.get_attribute("value") for o in formats.all_selected_options]
        assert selected == list(TRANSCRIBE_FORMATS)  # the default; ttml and ass when asked
        for title in ("Label speakers", "Isolate the voice"):
            switch = choice(fields[title])
            assert values(switch) == ["profile", "on", "off"], title
            assert switch.first_selected_option.get_attribute("value") == "profile", title
        assert values(choice(fields["Subtitle rules"])) == ["profile", *RULE_SETS]
        # Free text (a deployment may name a profile file), showing the one it pins.
        assert text_of(fields["Hardware profile"]) == "cpu"

        # The folders the deployment's runs really use (prefect.yaml's parameters).
        assert text_of(fields["Output folder"]) == str(stack.output)
        assert text_of(fields["Model volume"]) == str(stack.store)
        assert text_of(fields["Spoken language"]) == "auto"
        assert text_of(fields["Speakers"]) == "0"


def test_the_subtitle_form_refuses_a_run_without_a_target_language(driver, stack, tmp_path):
    subtitle = deployment_id(stack, "subtitle/cpu")
    with shot_on_failure(driver, "subtitle-form"):
        fields = open_form(driver, stack, "subtitle/cpu")
        assert 'Property is type "None"' not in driver.find_element("tag name", "body").text
        assert values(choice(fields["Output formats"], multiple=True)) == list(FORMATS)
        fields["Media file"].find_element("tag name", "textarea").send_keys(
            str(tmp_path / "talk.mp4")
        )
        targets = fields["Translate into"]

        submit(driver)  # no target language at all
        wait_for_text(driver, "'target_languages' is a required property")
        targets.find_element("xpath", ".//button[normalize-space()='Add item']").click()
        submit(driver)  # one, left empty
        wait_until(
            driver,
            lambda _: "is not of type 'string'" in targets.text,
            "the form never refused the empty target language",
        )
        screenshot(driver, "subtitle-form-refused")
        assert driver.current_url.endswith("/run")
        assert flow_runs_of(stack, subtitle) == []  # nothing was queued

        targets.find_element("tag name", "textarea").send_keys("fr")
        submit(driver)  # the same form, now with a language: the run is queued
        [queued] = wait_until(
            driver, lambda _: flow_runs_of(stack, subtitle), "the run was never queued"
        )
    assert queued.parameters["target_languages"] == ["fr"]


def run_of(stack: Stack, deployment: str, media: Path):
    """The deployment's flow run of ``media``, once there is one."""
    runs = [r for r in flow_runs_of(stack, deployment) if r.parameters.get("media") == str(media)]
    return runs[0] if runs else None


def log_lines(driver) -> list[str]:
    return driver.find_element("tag name", "body").text.splitlines()


def test_a_run_from_the_form_shows_voxflows_logs_and_its_progress(driver, stack, tmp_path):
    media = recording(2, tmp_path / "lecture.m4a")  # 105 s, 81 s of speech: ASR takes a while
    transcribe = deployment_id(stack, "transcribe/cpu")
    with shot_on_failure(driver, "flow-run"):
        fields = open_form(driver, stack, "transcribe/cpu")
        fields["Media file"].find_element("tag name", "textarea").send_keys(str(media))
        submit(driver)
        run = wait_until(
            driver,
            lambda _: (r := run_of(stack, transcribe, media)) and r.state.is_final() and r,
            "the run from the form never ended",
            timeout=900,  # it returns once the run ends; a busy machine is slow
        )
        assert run.state.is_completed(), run.state
        assert run.parameters["output_dir"] == str(stack.output)  # the form's default
        [job] = stack.output.glob("lecture-*")
        assert (job / "lecture.srt").read_text().strip()

        driver.get(f"{stack.api.removesuffix('/api')}/runs/flow-run/{run.id}")
        wait_until(  # the Logs tab, open first: voxflow's own summary lines
            driver,
            lambda d: any(
                line.startswith("asr: ") and "real-time factor" in line for line in log_lines(d)
            ),
            "the Logs tab never showed the asr summary line",
        )
        wait_for_text(driver, "asr · lecture.m4a: 100%")  # its progress, as lines
        screenshot(driver, "flow-run-logs")

        driver.find_element("xpath", "//li[contains(@class, 'p-tab')][.='Artifacts']").click()
        wait_for_text(driver, "transcript-preview")
        heading = driver.find_element("xpath", "//h6[normalize-space()='Task runs']")
        driver.execute_script("arguments[0].scrollIntoView()", heading)  # its cards load so
        cards = wait_until(
            driver,
            lambda d: [
                card.text.splitlines()
                for card in d.find_elements("css selector", ".artifact-card")
                if "asr · lecture.m4a" in card.text
            ],
            "the Artifacts tab never showed the asr progress artifact",
        )
        assert [card[0] for card in cards] == ["PROGRESS"], cards
        screenshot(driver, "flow-run-artifacts")
