"""What an operator sees of a run that fails for an expected reason (issue 21, point 5): the run
ends Failed with one message that starts with the fix, the fix is right (doing what it says
makes the next run pass), the run's logs hold no traceback, and a ``failure-<flow>`` artifact
says what failed, in which stage, and what to run.

Every test runs real flows against the session's real Prefect server and reads back what the UI
shows through the Prefect client: the final state, the run's logs, its artifacts.
"""

from __future__ import annotations

import shlex
import shutil
from collections.abc import Iterator

import pytest
from prefect.cli._utilities import load_json_key_values
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from test_subtitle_flow import NLLB_CT2, cpu_profile_with
from test_ui_logs import run_logs, wait_for
from translation_models import build_all, catalog_yaml

from blocks.volume import Volume
from conftest import SAMPLE
from flows.failures import MESSAGE_CHARS
from flows.runtime import warm_deployment_command
from flows.subtitle import subtitle
from flows.transcribe import transcribe
from flows.warm_cache import warm_cache
from profiles import load_profile
from tasks.warm.preflight import preflight
from voxflow.errors import NotMedia

pytestmark = pytest.mark.usefixtures("prefect_api")


def final_logs(flow_run_id) -> list[str]:
    """The run's log lines once its last one (the final state) has reached the server."""

    def find() -> list[str] | None:
        lines = [line.message for line in run_logs(flow_run_id)]
        return lines if any(m.startswith("Finished in state Failed") for m in lines) else None

    return wait_for(f"the final log line of run {flow_run_id}", find)


def failure_artifact(flow_run_id, flow: str):
    """The run's ``failure-<flow>`` artifact, once it is there."""

    def find():
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        return next((a for a in found if a.key == f"failure-{flow}"), None)

    return wait_for(f"the failure-{flow} artifact of run {flow_run_id}", find)


def advised_command(message: str) -> list[str]:
    """The command a failed run's message starts with: "Run `...`, then run this again: ..."."""
    assert message.startswith("Run `"), message
    return shlex.split(message.split("`")[1])


@pytest.fixture(scope="module")
def nllb_profile(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """The cpu profile translating with a tiny NLLB (CTranslate2 int8), as its file; the tiny
    models' catalog in $VOXFLOW_CATALOG."""
    models = build_all(tmp_path_factory.mktemp("failure-translation-models"))
    folder = tmp_path_factory.mktemp("failure-profiles")
    (folder / "catalog.yaml").write_text(catalog_yaml(models))
    path = cpu_profile_with(folder, "cpu-nllb", "ctranslate2", NLLB_CT2, compute_type="int8")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("VOXFLOW_CATALOG", str(folder / "catalog.yaml"))
        yield str(path)


@pytest.fixture
def cold_for_translation(warm_store: Volume, tmp_path) -> Volume:
    """A copy of the session's cpu volume: every model a transcribe needs, no translation."""
    root = tmp_path / "models"
    shutil.copytree(warm_store.root, root, symlinks=True)
    return Volume(root=str(root))


def test_a_cold_volume_fails_first_with_the_warm_that_makes_the_next_run_pass(
    cold_for_translation, nllb_profile, tmp_path
):
    run = dict(
        profile=nllb_profile, store=cold_for_translation.root, output_dir=str(tmp_path / "out")
    )

    state = subtitle(str(SAMPLE), ["fr"], **run, return_state=True)

    assert state.is_failed()
    message = state.message
    assert len(message) <= MESSAGE_CHARS, message
    command = advised_command(message)
    assert command[:2] == ["voxflow", "warm"] and NLLB_CT2 in message
    assert "Traceback" not in "\n".join(final_logs(state.state_details.flow_run_id))
    artifact = failure_artifact(state.state_details.flow_run_id, "subtitle")
    assert "**Stage:** preflight" in artifact.data and "--with translate" in artifact.data

    # Doing exactly what the message says: the real warm flow, with the command's flags.
    flags = dict(zip(command[2::2], command[3::2], strict=True))
    assert set(flags) == {"--profile", "--store", "--with"}, command
    warmed = warm_cache(
        profile=flags["--profile"],
        store=flags["--store"],
        with_stages=flags["--with"].split(","),
        return_state=True,
    )
    assert warmed.is_completed(), warmed.message
    again = subtitle(str(SAMPLE), ["fr"], **run, return_state=True)
    assert again.is_completed(), again.message


def test_the_warm_deployment_advice_carries_exactly_the_stages_and_volume_the_run_needs(
    cold_for_translation, nllb_profile
):
    chosen = load_profile(nllb_profile).with_stages("translate")  # as subtitle does
    command = warm_deployment_command(chosen, cold_for_translation, "cpu")

    words = shlex.split(command)
    assert words[:4] == ["prefect", "deployment", "run", "warm-cache/cpu"], command
    assert words[4::2] == ["--param"] * len(words[4::2]), command
    parameters = load_json_key_values(words[5::2], "parameter")  # as `prefect deployment run`
    assert parameters["with_stages"] == ["translate"], command
    # The deployment's own parameters (profile cpu, the worker's volume), with the advice's.
    state = warm_cache(**{"profile": "cpu", **parameters}, return_state=True)
    assert state.is_completed(), state.message
    assert set(preflight(chosen, cold_for_translation)) >= {"asr", "translate"}


def test_bad_input_fails_with_one_line_naming_the_stage_and_no_traceback(warm_store, tmp_path):
    notes = tmp_path / "notes.mp4"
    notes.write_text("not a video\n")

    state = transcribe(
        str(notes), profile="cpu", store=warm_store.root, output_dir=str(tmp_path / "out"),
        return_state=True,
    )  # fmt: skip

    assert state.is_failed()
    assert state.message.startswith("Start this run on an audio or video file: "), state.message
    assert str(notes) in state.message and "\n" not in state.message
    run_id = state.state_details.flow_run_id
    logs = final_logs(run_id)
    assert "Traceback" not in "\n".join(logs), logs
    assert any("Task run failed with exception: NotMedia" in m for m in logs), logs
    artifact = failure_artifact(run_id, "transcribe")
    assert "**Stage:** extract" in artifact.data and str(notes) in artifact.data
    # In the same process (the CLI) the error itself is raised, with its own line and code.
    with pytest.raises(NotMedia) as raised:
        transcribe(
            str(notes), profile="cpu", store=warm_store.root, output_dir=str(tmp_path / "out")
        )
    assert raised.value.exit_code == 2 and str(raised.value).startswith(str(notes))
