"""Many workers drain one inbox, with real processes on loopback: `prefect server start`,
`prefect deploy` of inbox/cpu and inbox-batch/cpu, three process workers on the `cpu` pool, a
dozen generated files, and one worker killed in the middle of a batch.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from collections import Counter
from contextlib import ExitStack, suppress
from pathlib import Path

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterKey,
    DeploymentFilter,
    DeploymentFilterName,
)
from prefect.deployments import run_deployment
from prefect.settings import PREFECT_API_URL, temporary_settings

from conftest import ROOT, SAMPLE, cli_env
from flows.inbox.files import LEDGER_NAME
from servers import PREFECT, free_port, prefect_server, prefect_worker

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

# Twelve cuts of the sample in five containers; names with spaces, accents and brackets.
SUFFIXES = (".mp4", ".m4a", ".wav", ".mp3", ".ogg", ".mkv")


def make_inbox(box: Path, count: int = 12) -> list[str]:
    box.mkdir()
    names = []
    for i in range(count):
        name = f"réunion {i:02d} (take {i % 3}){SUFFIXES[i % len(SUFFIXES)]}"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-y", "-ss", f"{i * 1.7:.1f}", "-t", "4", "-i", str(SAMPLE),
             "-vn", "-ac", "1", "-ar", "22050", str(box / name)],
            check=True, timeout=60,
        )  # fmt: skip
        names.append(name)
    return names


def read_ledger(out: Path) -> dict[str, dict]:
    try:
        return json.loads((out / LEDGER_NAME).read_text())["files"]
    except FileNotFoundError:
        return {}


RUN_LINK = re.compile(r"\[([0-9a-f-]{36})\]\([^)]*/runs/flow-run/\1\)")
"""A cell that names a flow run: a link to it in the UI, the run's id its text."""


def rows(artifact) -> list[dict]:
    """A table artifact's rows (the API returns its data as JSON text), a run's link as its id."""
    data = artifact.data
    found = json.loads(data) if isinstance(data, str) else data
    return [
        {k: m.group(1) if isinstance(v, str) and (m := RUN_LINK.fullmatch(v)) else v
         for k, v in row.items()}
        for row in found
    ]  # fmt: skip


def test_three_workers_drain_one_inbox_each_file_once_and_survive_a_killed_worker(
    warm_store, tmp_path
):
    box, out, home = tmp_path / "inbox", tmp_path / "out", tmp_path / "prefect"
    home.mkdir()
    names = make_inbox(box)
    guard = tmp_path / "netguard.log"

    with ExitStack() as stack:
        api, env = stack.enter_context(
            prefect_server(home, cli_env("http://127.0.0.1:9/api", guard))
        )

        deploy(env, warm_store.root, box, out)
        worker_env = {**env, "VOXFLOW_HOME": str(ROOT)}
        workers = {
            proc.pid: proc
            for proc in (
                stack.enter_context(prefect_worker("cpu", worker_env, home, f"w{i}", limit=1))
                for i in range(3)
            )
        }

        def tick():
            with temporary_settings(updates={PREFECT_API_URL: api}):
                run = run_deployment(
                    "inbox/cpu",
                    parameters={"min_age_s": 0, "batch_size": 2, "claim_ttl_s": 8},
                    timeout=180,
                    poll_interval=1,
                )
            assert run.state.is_completed(), run.state
            return run

        # Two inbox runs at once: the files are claimed once between them.
        with temporary_settings(updates={PREFECT_API_URL: api}):
            overlapping = [
                run_deployment("inbox/cpu", timeout=0,
                               parameters={"min_age_s": 0, "batch_size": 2, "claim_ttl_s": 8})
                for _ in range(2)
            ]  # fmt: skip
        # Kill a worker, and the flow run it started, while that run is inside a batch.
        killed = None
        deadline = time.monotonic() + 240
        while killed is None and time.monotonic() < deadline:
            for entry in read_ledger(out).values():
                if entry.get("status") == "claimed" and entry.get("started"):
                    if entry.get("worker_pid") in workers:
                        killed = entry
                        break
            time.sleep(0.1)
        assert killed is not None, "no batch started within 4 minutes"
        os.killpg(killed["worker_pid"], signal.SIGKILL)
        with suppress(ProcessLookupError):  # the run's process, if it is not in that group
            os.kill(killed["pid"], signal.SIGKILL)
        workers.pop(killed["worker_pid"]).wait(timeout=20)

        # The scheduled ticks, by hand: until every file is done (the killed claim lapses).
        deadline = time.monotonic() + 420
        while time.monotonic() < deadline:
            ledger = read_ledger(out)
            if len(ledger) == len(names) and all(e["status"] == "done" for e in ledger.values()):
                break
            time.sleep(9)  # longer than a claim lives without renewals
            tick()
        else:
            pytest.fail(
                f"not every file was done in time: {json.dumps(read_ledger(out), indent=1)}"
            )
        tick()  # the next tick reports the outcomes recorded since the last one

        with temporary_settings(updates={PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:
                runs = client.read_flow_runs(
                    deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=["cpu"]))
                )
                tables = client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["inbox-batch-cpu"]))
                )
                inbox_tables = client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["inbox-cpu"]))
                )
        for run in overlapping:
            assert any(r.id == run.id and r.state.is_completed() for r in runs), run

    ledger = read_ledger(out)
    by_name = {e["file"]: e for e in ledger.values()}
    assert sorted(by_name) == sorted(names)
    assert all(e["status"] == "done" for e in ledger.values())

    # Exactly once: each file is "done" in the table of exactly one completed batch run.
    state = {str(r.id): r.state_type.value for r in runs}
    done_rows = [
        (row, str(t.flow_run_id)) for t in tables for row in rows(t) if row["outcome"] == "done"
    ]
    assert Counter(row["file"] for row, _ in done_rows) == Counter(names)
    assert {state[run] for _, run in done_rows} == {"COMPLETED"}
    for row, run in done_rows:  # the ledger names the same run and the outputs exist
        entry = by_name[row["file"]]
        assert entry["batch_run"] == run
        assert all(Path(p).exists() for p in entry["outputs"].values())
    stems = Counter(p.name.rsplit("-", 1)[0] for p in out.iterdir() if p.is_dir())
    assert set(stems.values()) == {1}, stems  # one job folder a file: the redo reused it

    # The killed batch never completed; its file was claimed again and done by another worker.
    assert state[killed["batch_run"]] != "COMPLETED"
    redone = by_name[killed["file"]]
    assert redone["batch_run"] != killed["batch_run"]
    assert redone["worker_pid"] != killed["worker_pid"]
    inbox_rows = [row for t in inbox_tables for row in rows(t)]
    reported = Counter(row["file"] for row in inbox_rows if row["outcome"] == "done")
    assert reported == Counter(names)  # each outcome in one inbox run's artifact, with its run
    assert {row["batch run"] for row in inbox_rows if row["outcome"] == "done"} <= {
        run for _, run in done_rows
    }
    notes = [row["note"] for row in inbox_rows]
    assert any(f"the claim of batch run {killed['batch_run']} lapsed" in n for n in notes), notes

    # The files spread over the workers: the two that lived did some each.
    done_by = Counter(e["worker_pid"] for e in ledger.values())
    assert set(done_by) == set(workers), done_by
    assert not guard.exists(), f"a process tried the network: {guard.read_text()}"


def test_a_server_restart_in_the_middle_of_a_batch_loses_no_file_and_does_none_twice(
    warm_store, tmp_path
):
    box, out, home = tmp_path / "inbox", tmp_path / "out", tmp_path / "prefect"
    home.mkdir()
    names = make_inbox(box, count=4)
    base = cli_env("http://127.0.0.1:9/api", tmp_path / "netguard.log")
    port = free_port()
    parameters = {"min_age_s": 0, "batch_size": 1, "claim_ttl_s": 8}

    with ExitStack() as stack:
        first = ExitStack()
        api, env = first.enter_context(prefect_server(home, base, port))
        deploy(env, warm_store.root, box, out)
        stack.enter_context(
            prefect_worker("cpu", {**env, "VOXFLOW_HOME": str(ROOT)}, home, "w0", limit=1)
        )
        with temporary_settings(updates={PREFECT_API_URL: api}):
            run_deployment("inbox/cpu", parameters=parameters, timeout=0)
        deadline = time.monotonic() + 240
        while not any(e.get("started") for e in read_ledger(out).values()):
            assert time.monotonic() < deadline, "no batch started within 4 minutes"
            time.sleep(0.1)
        first.close()  # the server stops while a batch runs and three wait in its queue
        time.sleep(3)
        again, env = stack.enter_context(prefect_server(home, base, port))
        assert again == api

        deadline = time.monotonic() + 420
        while not (
            len(ledger := read_ledger(out)) == len(names)
            and all(e["status"] == "done" for e in ledger.values())
        ):
            assert time.monotonic() < deadline, f"not every file was done: {ledger}"
            time.sleep(9)
            with temporary_settings(updates={PREFECT_API_URL: api}):
                run_deployment("inbox/cpu", parameters=parameters, timeout=120, poll_interval=1)
        with temporary_settings(updates={PREFECT_API_URL: api}):
            with get_client(sync_client=True) as client:
                tables = client.read_artifacts(
                    artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["inbox-batch-cpu"]))
                )

    done_rows = [row["file"] for t in tables for row in rows(t) if row["outcome"] == "done"]
    assert Counter(done_rows) <= Counter(names)  # none was done twice
    assert sorted(e["file"] for e in read_ledger(out).values()) == sorted(names)
    stems = Counter(p.name.rsplit("-", 1)[0] for p in out.iterdir() if p.is_dir())
    assert set(stems.values()) == {1}, stems


def deploy(env: dict[str, str], store: str, box: Path, out: Path) -> None:
    """The cpu pool, and inbox/cpu and inbox-batch/cpu deployed to it from prefect.yaml."""
    for args, extra in (
        (["work-pool", "create", "cpu", "--type", "process"], {}),
        (["deploy", "--name", "inbox/cpu", "--name", "inbox-batch/cpu", "--no-prompt"],
         {"VOXFLOW_STORE": store, "VOXFLOW_INBOX": str(box), "VOXFLOW_OUTPUT": str(out)}),
    ):  # fmt: skip
        done = subprocess.run([*PREFECT, *args], env={**env, **extra}, cwd=ROOT,
                              capture_output=True, text=True, timeout=180)  # fmt: skip
        assert done.returncode == 0, f"prefect {' '.join(args)}:\n{done.stdout}\n{done.stderr}"
