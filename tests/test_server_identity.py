"""The local server is its Prefect home's own and answers only its user: records name processes
by pid and start time, and nothing is signalled on a record whose process is not the one it
names; another home's server, or one in another network namespace, is never used; requests
without the home's credential are refused; the home, its credential, database and logs are the
user's alone."""

from __future__ import annotations

import base64
import json
import os
import shutil
import signal
import stat
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from local_servers import (
    gone,
    in_home,
    server_process,
    server_record,
    write_credential,
    write_server_record,
)

from conftest import no_network_used, run_cli
from flows.cli.processes import ProcessId

pytestmark = pytest.mark.slow


@pytest.fixture
def stranger() -> Iterator[subprocess.Popen]:
    """A process that is no server of voxflow's, leading its own process group."""
    process = subprocess.Popen(["sleep", "600"], start_new_session=True)
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def _http(url: str, secret: str | None = None, body: bytes | None = None) -> int:
    """The HTTP status of a request to the local API, basic auth with ``secret`` if given."""
    request = urllib.request.Request(url, data=body, method="POST" if body is not None else "GET")
    if body is not None:
        request.add_header("Content-Type", "application/json")
    if secret is not None:
        request.add_header("Authorization", "Basic " + base64.b64encode(secret.encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code


@contextmanager
def _open_server() -> Iterator[int]:
    """An HTTP server on loopback that answers 200 to anyone, credential or not (as a Prefect
    server without one would); yields its port."""

    class Anyone(BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
            self.send_response(200)
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Anyone)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()


def test_a_stale_record_whose_pid_is_another_process_now_is_not_signalled(
    local, tmp_path, stranger
):
    """After a reboot a record's pid may be anyone's: records naming a running process with
    another start time are not believed, and `voxflow server stop` (and `stop --all`) signal
    nothing, not even its process group."""
    home = Path(local["PREFECT_HOME"])
    home.mkdir()
    wrong = ProcessId(stranger.pid, "not-its-start-time")
    write_server_record(home, wrong, port=4200)
    runner_record = {"pid": stranger.pid, "start": wrong.start, "key": "k", "api": "x",
                     "socket": "/nowhere", "server": [stranger.pid, wrong.start],
                     "started_at": 0.0, "last_used": 0.0, "served": 0, "models": [],
                     "idle_s": 300.0}  # fmt: skip
    (home / "voxflow-runner.json").write_text(json.dumps(runner_record))
    registry = Path(local["XDG_RUNTIME_DIR"]) / "voxflow" / "processes"
    registry.mkdir(parents=True)
    entry = {"kind": "server", "pid": stranger.pid, "start": wrong.start, "home": str(home)}
    (registry / f"server-{stranger.pid}.json").write_text(json.dumps(entry))

    status = run_cli(["server", "status"], local)
    assert status.returncode == 1
    assert f"pid {stranger.pid} is another process now" in status.stdout, status.stdout

    stopped = run_cli(["server", "stop"], local)
    assert stopped.returncode == 0, stopped.stderr
    assert "stopped" not in stopped.stdout, stopped.stdout
    assert "nothing was signalled" in stopped.stdout, stopped.stdout
    everyone = run_cli(["server", "stop", "--all"], local)
    assert everyone.returncode == 0 and "no local server or runner of yours runs" in everyone.stdout
    assert stranger.poll() is None, "a process a stale record named was signalled"
    assert not (home / "voxflow-server.json").exists()  # the stale record is gone
    assert not list(registry.iterdir())


def test_an_unreadable_record_is_no_server_with_one_warning_and_no_signal(local, stranger):
    home = Path(local["PREFECT_HOME"])
    home.mkdir()
    record = home / "voxflow-server.json"
    record.write_text('{"pid": ')
    status = run_cli(["server", "status"], local)
    assert status.returncode == 1
    warnings = [line for line in status.stderr.splitlines() if "cannot read" in line]
    assert len(warnings) == 1 and str(record) in warnings[0], status.stderr
    assert "taken as no local server" in warnings[0]
    assert "Traceback" not in status.stderr

    # An older voxflow's record names a pid and no start time: its word is not enough.
    record.write_text(json.dumps({"pid": stranger.pid, "port": 4200, "started_at": 0.0}))
    stopped = run_cli(["server", "stop"], local)
    assert stopped.returncode == 0 and "no local server" in stopped.stdout
    assert "no process start time" in stopped.stderr, stopped.stderr
    assert stranger.poll() is None


def test_a_process_group_is_signalled_only_through_its_verified_leader():
    """A group is signalled only when the recorded process leads it and is the recorded one."""
    leader = subprocess.Popen(["sh", "-c", "sleep 600 & wait"], start_new_session=True)
    member = subprocess.Popen(["sleep", "600"])  # in this test's own process group
    try:
        assert not ProcessId(leader.pid, "another-start").signal(signal.SIGTERM, group=True)
        assert leader.poll() is None
        process = ProcessId.of(member.pid)
        assert process is not None and process.signal(signal.SIGTERM, group=True)
        assert member.wait(timeout=30) == -signal.SIGTERM  # it alone: this test still runs
        group = ProcessId.of(leader.pid)
        assert group is not None and group.end(group=True, timeout=30)
        assert leader.wait(timeout=30) != 0
        assert not group.running()
    finally:
        if leader.poll() is None:
            os.killpg(leader.pid, signal.SIGKILL)
        if member.poll() is None:
            member.kill()
        leader.wait()
        member.wait()


def test_the_local_server_answers_only_its_user(local, tmp_path):
    """Its home is 0700; its credential, database and logs 0600 (a database left readable by
    an older voxflow included); a request or a Prefect client without the credential gets 401;
    `server status` says how to log in without printing the secret."""
    home = Path(local["PREFECT_HOME"])
    home.mkdir(mode=0o755)
    home.chmod(0o755)
    for left in ("prefect.db", "voxflow-server.log"):  # as an older voxflow left them
        (home / left).write_text("")
        (home / left).chmod(0o644)

    started = run_cli(["server", "start"], local)
    assert started.returncode == 0, started.stdout + started.stderr
    assert _mode(home) == 0o700
    credential = home / "voxflow-server.credential"
    secret = credential.read_text().strip()
    assert secret.startswith("voxflow:") and len(secret) > 40
    private = [credential, home / "voxflow-server.log", home / "prefect.db"]
    private += [p for p in (home / "prefect.db-wal", home / "prefect.db-shm") if p.exists()]
    assert {p.name: oct(_mode(p)) for p in private} == {p.name: "0o600" for p in private}

    api = f"http://127.0.0.1:{server_record(home)['port']}/api"
    assert _http(f"{api}/health") == 200  # the one thing anyone may ask
    assert _http(f"{api}/admin/version") == 401
    assert _http(f"{api}/flow_runs/filter", body=b"{}") == 401
    assert _http(f"{api}/flow_runs/filter", "voxflow:guessed", body=b"{}") == 401
    assert _http(f"{api}/flow_runs/filter", secret, body=b"{}") == 200
    client = [sys.executable, "-m", "prefect", "flow-run", "ls"]
    anonymous = subprocess.run(
        client, env={**local, "PREFECT_API_URL": api}, capture_output=True, text=True, timeout=120
    )
    assert anonymous.returncode != 0 and "401 Unauthorized" in anonymous.stdout + anonymous.stderr
    with_it = {**local, "PREFECT_API_URL": api, "PREFECT_API_AUTH_STRING": secret}
    user = subprocess.run(client, env=with_it, capture_output=True, text=True, timeout=120)
    assert user.returncode == 0, user.stdout + user.stderr

    status = run_cli(["server", "status"], local)
    assert status.returncode == 0, status.stdout + status.stderr
    assert f"its UI: open {api[:-4]} in a browser" in status.stdout
    assert f"the line in {credential} (user voxflow" in status.stdout
    assert "idle " in status.stdout and "it stops at" in status.stdout
    assert secret.split(":")[1] not in status.stdout + status.stderr
    assert no_network_used(tmp_path)


def test_another_homes_server_at_the_recorded_address_is_not_used(local, tmp_path):
    """A second home whose record names the first home's server (its process alive, in this
    network namespace, answering at the port) starts its own: that server refuses this home's
    credential; one that answers without any credential is no home's either."""
    first = Path(local["PREFECT_HOME"])
    assert run_cli(["server", "start"], local).returncode == 0
    theirs = server_record(first)

    second = tmp_path / "second-home"
    second.mkdir(mode=0o700)
    write_credential(second)  # as its own last server left it
    env = in_home(local, second)
    with _open_server() as port:
        write_server_record(second, ProcessId.me(), port)  # a live process: only the answer tells
        status = run_cli(["server", "status"], env)
    assert status.returncode == 1
    assert f"the server at http://127.0.0.1:{port} answers without a credential" in status.stdout

    (second / "voxflow-server.json").write_text(json.dumps(theirs))
    started = run_cli(["server", "start"], env)
    assert started.returncode == 0, started.stdout + started.stderr
    said = started.stdout + started.stderr
    assert (
        f"not using the local server recorded in {second / 'voxflow-server.json'}: the server "
        f"at http://127.0.0.1:{theirs['port']} refuses this home's credential (HTTP 401)"
    ) in said, said
    ours = server_record(second)
    assert (ours["pid"], ours["port"]) != (theirs["pid"], theirs["port"])
    assert server_process(first).running()  # the other home's server was left alone
    assert run_cli(["server", "status"], local).returncode == 0
    assert no_network_used(tmp_path)


def test_a_server_in_another_network_namespace_is_not_used_from_this_one(local, tmp_path):
    """Started offline in a namespace of its own (as `unshare -n` runs the offline proof), its
    127.0.0.1 is not this one's: a command here starts its own, and the one in the namespace,
    whose record now names another process, ends by itself."""
    unshare = shutil.which("unshare")
    probe = subprocess.run([unshare or "unshare", "-n", "true"], capture_output=True)
    if unshare is None or probe.returncode != 0:
        pytest.skip(f"cannot create a network namespace here: {probe.stderr.decode().strip()}")
    home = Path(local["PREFECT_HOME"])
    inside = subprocess.run(
        [unshare, "-n", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable,
         "-m", "flows.cli", "server", "start"],
        env=local, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert inside.returncode == 0, inside.stdout + inside.stderr
    theirs = server_process(home)
    assert server_record(home)["netns"] != os.stat("/proc/self/ns/net").st_ino

    started = run_cli(["server", "start"], local)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "it runs in another network namespace" in started.stdout
    ours = server_process(home)
    assert ours != theirs
    assert gone(theirs, timeout=60), "the server in the other namespace did not end"
    log = (home / "voxflow-server.log").read_text()
    assert f"ends: its record names another process (pid {ours.pid})" in log
    assert run_cli(["server", "status"], local).returncode == 0
