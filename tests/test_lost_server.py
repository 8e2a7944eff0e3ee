"""A local Prefect server that ends mid-command fails the command at once in one line, keeping
what was written; a command that was killed leaves a run the next command marks Crashed."""

from __future__ import annotations

import base64
import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
import yaml
from local_servers import server_process, server_record

from conftest import ROOT, SAMPLE, run_cli
from flows.cli.processes import ProcessId

_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _command(args: list[str], env: dict[str, str]) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _await(found, what: str, command: subprocess.Popen[str] | None = None, timeout=240.0):
    """What ``found()`` returns once it is truthy, polled; fails if ``command`` ends first."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = found()
        if value:
            return value
        if command is not None and command.poll() is not None:
            out, err = command.communicate()
            raise AssertionError(f"the command ended before {what}:\n{out}{err}")
        time.sleep(0.1)
    if command is not None:
        command.kill()
    raise AssertionError(f"no {what} within {timeout} s")


def _runs_in_flight(home: Path) -> list[str]:
    """The flow runs a command recorded in the Prefect home (running, or left by a killed one)."""
    folder = home / "voxflow-runs"
    return [p.stem for p in folder.glob("*.json")] if folder.is_dir() else []


def _flow_run(home: Path, run_id: str) -> dict:
    """The flow run as the home's local server has it (asked with the home's credential)."""
    secret = (home / "voxflow-server.credential").read_text().strip()
    request = urllib.request.Request(
        f"http://127.0.0.1:{server_record(home)['port']}/api/flow_runs/{run_id}",
        headers={"Authorization": "Basic " + base64.b64encode(secret.encode()).decode()},
    )
    with _LOOPBACK.open(request, timeout=30) as answer:
        return json.load(answer)


def _long_sample(folder: Path) -> Path:
    """The sample ten times over (270 s): its ASR takes long enough to be cut into."""
    long = folder / "long.mp4"
    subprocess.run(
        ["ffmpeg", "-v", "error", "-stream_loop", "9", "-i", str(SAMPLE), "-c", "copy",
         str(long)], check=True,
    )  # fmt: skip
    return long


def _runner(env: dict[str, str], store: str, scratch: Path) -> ProcessId:
    """The local runner a first command leaves, once it is ready (its models loaded)."""
    first = run_cli(
        ["transcribe", str(SAMPLE), "--profile", "cpu", "--store", store, "--output",
         str(scratch / "first")], env,
    )  # fmt: skip
    assert first.returncode == 0, first.stderr
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = run_cli(["server", "status"], env).stdout.strip().splitlines()[-1]
        found = re.match(r"local runner \(pid (\d+)\)", line)
        if found:
            return ProcessId.of(int(found.group(1)))
        time.sleep(0.5)
    raise AssertionError(f"no local runner came up: {line!r}")


@pytest.mark.parametrize("runner", [False, True], ids=["own process", "in the runner"])
def test_a_lost_local_server_fails_the_command_in_one_line_and_the_next_resumes(
    warm_store, local, tmp_path, runner
):
    """The server killed while ASR runs: within 10 s the command exits 1 with one line that
    names the server's pid and the output folder, no Prefect traceback, in its own process as
    in the local runner (whose models are loaded: its ASR is in native code at once); the
    finished stages stay, and the same command again starts a server, marks the lost run
    Crashed and reuses them."""
    env = local if runner else {**local, "VOXFLOW_RUNNER": "0"}
    home, output = Path(env["PREFECT_HOME"]), tmp_path / "out"
    args = ["transcribe", str(_long_sample(tmp_path)), "--profile", "cpu",
            "--store", warm_store.root, "--output", str(output)]  # fmt: skip
    ran_by = _runner(env, warm_store.root, tmp_path) if runner else None
    command = _command(args, env)
    _await(lambda: list(output.glob("*/records/stages/vad.json")), "VAD record", command)
    server = server_process(home)
    assert server.signal(signal.SIGKILL, group=True)
    try:
        out, err = command.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        command.kill()
        out, err = command.communicate()
        raise AssertionError(f"the command did not end within 10 s:\n{err[-3000:]}") from None
    assert command.returncode == 1, err
    assert err.strip().splitlines()[-1] == (
        f"voxflow: error: the local Prefect server (pid {server.pid}) ended during the run; "
        f"outputs written so far stay in {output}; run the same command again: it starts a "
        "server and reuses the finished stages"
    )
    assert "Traceback" not in err
    stages = next(output.glob("*/records/stages"))
    assert {"extract.json", "vad.json"} <= {p.name for p in stages.iterdir()}
    (lost,) = _runs_in_flight(home)
    if ran_by is not None:  # its run is Crashed once the runner has left (its server is gone)
        _await(lambda: not ran_by.running(), "end of the runner")

    again = run_cli(args, env)
    assert again.returncode == 0, again.stderr
    assert "extract: cached" in again.stderr and "vad: cached" in again.stderr
    assert f"voxflow: flow run {lost} marked Crashed: its process (pid " in again.stderr
    assert "long.mp4: 270.0 s of audio" in again.stdout
    state = _flow_run(home, lost)["state"]
    assert state["type"] == "CRASHED", state
    assert _runs_in_flight(home) == []


def test_a_killed_command_leaves_a_run_that_the_next_command_marks_crashed(
    warm_store, local, tmp_path
):
    """SIGKILL to a command mid-run leaves its run Running on the server; the next command sets
    it Crashed, naming the killed process, and its own run completes and leaves no record."""
    env = {**local, "VOXFLOW_RUNNER": "0"}
    home, output = Path(env["PREFECT_HOME"]), tmp_path / "out"
    args = ["transcribe", str(SAMPLE), "--profile", "cpu", "--store", warm_store.root,
            "--output", str(output)]  # fmt: skip
    command = _command(args, env)
    (killed,) = _await(lambda: _runs_in_flight(home), "recorded flow run", command)
    command.kill()  # our own child, not yet waited for: still that process
    command.communicate(timeout=60)
    assert _flow_run(home, killed)["state"]["type"] == "RUNNING"

    again = run_cli(args, env)
    assert again.returncode == 0, again.stderr
    message = f"its process (pid {command.pid}) was killed, or lost its server"
    assert f"voxflow: flow run {killed} marked Crashed: {message}" in again.stderr
    state = _flow_run(home, killed)["state"]
    assert (state["type"], state["message"]) == ("CRASHED", message)
    assert _runs_in_flight(home) == []


def test_every_deployment_sends_heartbeats():
    """Every deployment's run sends Prefect's flow-run heartbeats, which the zombie automation
    watches (docs/operators.md, 4b), at Prefect's least interval or more."""
    config = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    for deployment in config["deployments"]:
        env = deployment["work_pool"]["job_variables"]["env"]
        assert int(env["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"]) >= 30, deployment["name"]


_ZOMBIE_CHECK = """
import asyncio, os, sys, time
import pytest
import yaml
from flows.cli import server
os.environ.update(server.client_environment(server.read()))
from prefect import flow, get_client
from prefect.events import emit_event
from prefect.events.schemas.automations import AutomationCore
from prefect.states import Running

async def main():
    automation = yaml.safe_load(sys.stdin.read())
    automation["trigger"]["within"] = 10  # the documented 90 s, shorter for the test
    async with get_client() as client:
        await client.create_automation(AutomationCore.model_validate(automation))
        run = await client.create_flow_run(flow(name="zombie")(lambda: None), state=Running())
        resource = {"prefect.resource.id": f"prefect.flow-run.{run.id}"}
        emit_event("prefect.flow-run.heartbeat", resource)
        deadline = time.monotonic() + 150
        while time.monotonic() < deadline:
            state = (await client.read_flow_run(run.id)).state
            if state.is_crashed():
                print(state.message)
                return
            await asyncio.sleep(1)
        sys.exit(f"still {state.name} after 150 s")

asyncio.run(main())
"""


def test_the_documented_zombie_automation_marks_a_run_without_heartbeats_crashed(local):
    """The automation in docs/operators.md, created on a real server: a run that sent one
    heartbeat and then nothing is marked Crashed with its message."""
    doc = (ROOT / "docs" / "operators.md").read_text()
    automation = doc.split("```yaml\nname: voxflow - crash zombie flow runs", 1)[1]
    automation = "name: voxflow - crash zombie flow runs" + automation.split("```", 1)[0]
    started = run_cli(["server", "start"], local, timeout=300)
    assert started.returncode == 0, started.stderr
    check = subprocess.run(
        [sys.executable, "-c", _ZOMBIE_CHECK],
        input=automation,
        env=local,
        capture_output=True,
        text=True,
        timeout=240,
    )
    assert check.returncode == 0, check.stderr[-3000:]
    assert check.stdout.strip() == yaml.safe_load(automation)["actions"][0]["message"]
