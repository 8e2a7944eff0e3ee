"""The local server does not outlive its use: it ends once no voxflow process has held it for
VOXFLOW_SERVER_IDLE_S, and at once when its Prefect home is removed or its record names another
process; `voxflow server stop --all` ends every server and runner this user started, each
checked by its process identity."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_servers import (
    gone,
    hold,
    in_home,
    registered,
    registry,
    server_process,
    write_server_record,
)

from conftest import run_cli
from flows.cli.processes import ProcessId

pytestmark = pytest.mark.slow


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """A long-running process that is no server of voxflow's."""
    process = subprocess.Popen(["sleep", "600"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _start(env: dict[str, str]) -> ProcessId:
    started = run_cli(["server", "start"], env)
    assert started.returncode == 0, started.stdout + started.stderr
    return server_process(Path(env["PREFECT_HOME"]))


def test_an_idle_server_ends_by_itself_once_no_voxflow_process_holds_it(local, sleeper):
    """With VOXFLOW_SERVER_IDLE_S=2 it stays while a process holds it (a command running a
    flow, checked by its pid and start time), then ends 2 s after the last one is gone."""
    home = Path(local["PREFECT_HOME"])
    home.mkdir(mode=0o700)
    holder = ProcessId.of(sleeper.pid)
    hold(home, holder)
    env = {**local, "VOXFLOW_SERVER_IDLE_S": "2"}
    started = run_cli(["server", "start"], env)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "it ends after 2 s unused" in started.stdout
    server = server_process(home)
    status = run_cli(["server", "status"], env)
    assert f"in use by 1 voxflow process(es) (pid {sleeper.pid}); it stops 2 s after" in (
        status.stdout
    ), status.stdout
    assert not gone(server, timeout=6), "it ended while a process held it"

    sleeper.kill()
    sleeper.wait()
    assert gone(server, timeout=60), "an idle server did not end"
    log = (home / "voxflow-server.log").read_text()
    assert "ends: no voxflow command or run used it for 2 s" in log
    assert not (home / "voxflow-server.json").exists()
    assert run_cli(["server", "status"], env).returncode == 1
    assert server not in registered(local)


def test_removing_its_prefect_home_ends_the_server(local):
    env = {**local, "VOXFLOW_SERVER_IDLE_S": "0"}  # it would stay up for ever otherwise
    server = _start(env)
    shutil.rmtree(env["PREFECT_HOME"])
    assert gone(server, timeout=60), "a server whose home was removed did not end"
    assert server not in registered(local)


def test_a_server_whose_record_names_another_process_ends(local, sleeper):
    """Its record is overwritten (another command's server, or a stale copy): it ends at once,
    and the process the record now names is not signalled."""
    env = {**local, "VOXFLOW_SERVER_IDLE_S": "0"}
    home = Path(env["PREFECT_HOME"])
    server = _start(env)
    write_server_record(home, ProcessId.of(sleeper.pid), port=1)
    assert gone(server, timeout=60), "a server whose record names another process did not end"
    assert f"ends: its record names another process (pid {sleeper.pid})" in (
        (home / "voxflow-server.log").read_text()
    )
    (home / "voxflow-server.json").unlink()  # it names a live process: no teardown's business
    assert sleeper.poll() is None


def test_stop_all_ends_every_server_and_runner_of_this_user_and_only_them(local, tmp_path, sleeper):
    """Two homes' servers and a runner, as the registry lists them, end; a registry entry whose
    pid is another process now is dropped and that process left alone."""
    first, second = Path(local["PREFECT_HOME"]), tmp_path / "second-home"
    env = {**local, "VOXFLOW_SERVER_IDLE_S": "0"}
    servers = [_start(env), _start(in_home(env, second))]
    runner = subprocess.Popen(
        [sys.executable, "-m", "flows.cli.runner_process", "--key", "test"],
        env=env,
        cwd=first,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    try:
        runner_id = ProcessId.of(runner.pid)
        assert runner_id is not None
        deadline = time.monotonic() + 180
        while runner_id not in registered(local):
            assert runner.poll() is None, (first / "voxflow-runner.log").read_text()
            assert time.monotonic() < deadline, "the runner did not list itself"
            time.sleep(0.2)
        stale = {"kind": "server", "pid": sleeper.pid, "start": "not-its-start", "home": "/x"}
        (registry(local) / f"server-{sleeper.pid}.json").write_text(json.dumps(stale))

        stopped = run_cli(["server", "stop", "--all"], local)
        assert stopped.returncode == 0, stopped.stdout + stopped.stderr
        lines = stopped.stdout.splitlines()
        assert lines[0] == f"stopped the local runner (pid {runner.pid}) of {first}", lines
        for server, home in zip(servers, (first, second), strict=True):
            assert any(
                line.startswith("stopped the local Prefect server at http://127.0.0.1:")
                and line.endswith(f"(pid {server.pid}) of {home}")
                for line in lines
            ), lines
        assert lines[-1] == "stopped 3 local server(s) and runner(s) of yours", lines
        for process in (*servers, runner_id):
            assert gone(process, timeout=60), process
        assert runner.wait(timeout=30) == 0
        assert sleeper.poll() is None
        assert list(registry(local).iterdir()) == []
        assert not (first / "voxflow-server.json").exists()
        assert not (first / "voxflow-runner.json").exists()
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
