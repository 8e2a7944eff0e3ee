"""The local runner cannot be wedged: no request, however malformed, cut short, idle or from
another user, keeps it from taking the next command; a caller does not wait on a runner that
does not answer; `server status` asks the runner itself; a runner whose server is gone leaves,
and a command that finds the runner loading its models waits for it."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import struct
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from local_servers import gone, leave_nothing, local_env, server_process

from conftest import SAMPLE, run_cli
from flows.cli import runner
from flows.cli.processes import ProcessId

# ---- a runner without models, shared by the tests that only talk to its socket ------------------


def _status_line(env: dict[str, str]) -> str:
    """The runner's line of `voxflow server status`."""
    status = run_cli(["server", "status"], env)
    return status.stdout.strip().splitlines()[-1] if status.stdout.strip() else status.stderr


def _await_line(env: dict[str, str], pattern: str, timeout: float = 180) -> str:
    """The runner's status line once it matches ``pattern`` (polled, with a deadline)."""
    deadline = time.monotonic() + timeout
    while not re.search(pattern, line := _status_line(env)):
        assert time.monotonic() < deadline, f"no runner line like {pattern!r}: {line!r}"
        time.sleep(0.5)
    return line


def _record(env: dict[str, str]) -> dict:
    return json.loads((Path(env["PREFECT_HOME"]) / "voxflow-runner.json").read_text())


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, str]]:
    """A user's environment with a local server and a ready runner (no models loaded), started
    as a command starts them (:func:`flows.cli.runner.start`)."""
    env = local_env(tmp_path_factory.mktemp("faults"))
    try:
        assert run_cli(["server", "start"], env).returncode == 0
        start = "import os; from flows.cli import runner; runner.start(dict(os.environ), None, '')"
        subprocess.run([sys.executable, "-c", start], env=env, check=True, timeout=60)
        _await_line(env, r"no models loaded, 0 command\(s\) run.*; it answers")
        yield env
    finally:
        leave_nothing(env)


def _served_count(env: dict[str, str]) -> int:
    return int(re.search(r"(\d+) command\(s\) run", _await_line(env, "it answers$")).group(1))


def _connect(env: dict[str, str]) -> socket.socket:
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    conn.settimeout(30)
    conn.connect(_record(env)["socket"])
    return conn


def _frame(request: object) -> bytes:
    body = json.dumps(request).encode()
    return struct.pack("!I", len(body)) + body


def _answer_then_closed(conn: socket.socket) -> dict:
    """The runner's one answer on ``conn``, and that it closed the connection after it."""
    with conn.makefile("rb") as reader:
        answer = json.loads(reader.readline())
        try:
            rest = reader.read()
        except ConnectionResetError:  # closed with what it did not read still unread
            rest = b""
        assert rest == b"", "the runner left the connection open"
    return answer


def _ping(env: dict[str, str]) -> dict:
    with _connect(env) as conn:
        conn.sendall(_frame({"kind": "ping"}))
        return _answer_then_closed(conn)


def _run_request(user: dict[str, str], **change: object) -> dict:
    """A request to run `voxflow transcribe nowhere.mp4` in the environment ``user``, as the
    command sends it, with the fields in ``change`` changed."""
    request = {
        "kind": "run",
        "key": runner.fingerprint(user),
        "argv": ["transcribe", "nowhere.mp4"],
        "cwd": str(Path(user["PREFECT_HOME"]).parent),
        "env": user,
        "tty": [False, False],
        "umask": 0o022,
    }
    return {**request, **change}


def test_no_bad_request_keeps_the_runner_from_taking_the_next_command(served):
    env = served
    before = _served_count(env)
    bad = {
        b"[]": "the connection closed after 2 of its 4-byte length",
        _frame([]): "it is a list (expected an object)",
        _frame(None): "it is null (expected an object)",
        struct.pack("!I", 5) + b"\xff\xfe{[x": "it is not JSON",
        b"GET / HTTP/1.1\r\n\r\n": "its length is 1195725856 bytes (at most 4194304)",
        struct.pack("!I", 0xFFFFFFFF): "its length is 4294967295 bytes",
        struct.pack("!I", 100) + b'{"kind"': "the connection closed after 7 of its 100 bytes",
        _frame({"kind": "shell"}): "its kind is 'shell' (expected 'ping' or 'run')",
        _frame({"kind": "ping", "x": 1}): "unknown ['x']",
        _frame({"kind": "run"}): "missing ['argv', 'cwd', 'env', 'key', 'tty', 'umask']",
        _frame(_run_request(env, argv="transcribe")): "its argv is a string (expected a list)",
        _frame(_run_request(env, umask=True)): "its umask is a boolean (expected an integer)",
        _frame(_run_request(env, umask=0o7777)): "its umask is 4095 (expected 0 to 0o777)",
        _frame(_run_request(env, tty=[1, 0])): "its tty is [1, 0]",
        _frame(_run_request(env, env={"A": 1})): "holds something other than strings",
        _frame(_run_request(env, cwd="relative")): "its cwd is 'relative' (expected an absolute",
        _frame(_run_request(env, argv=["server", "stop"])): "its command is 'server'",
        _frame(_run_request(env, key="another")): "its key is not this runner's",
    }
    for data, expected in bad.items():
        with _connect(env) as conn:
            conn.sendall(data)
            conn.shutdown(socket.SHUT_WR)  # nothing more comes: a frame cut short ends here
            answer = _answer_then_closed(conn)
        assert answer["ok"] is False and answer["error"].startswith("bad request: "), answer
        assert expected in answer["error"], (data[:40], answer)
        assert _ping(env)["state"] == "ready", data[:40]

    # A caller that leaves once its command is taken: the command is interrupted, no more.
    with _connect(env) as conn:
        conn.sendall(_frame(_run_request(env)))
        assert json.loads(conn.makefile("rb").readline())["ok"] is True
    _await_line(env, rf"{before + 1} command\(s\) run.*; it answers$")

    missing = run_cli(["transcribe", "nowhere.mp4"], env, cwd=Path(env["PREFECT_HOME"]).parent)
    assert missing.returncode == 2
    assert missing.stderr.strip().splitlines() == [
        "voxflow: error: media file not found: nowhere.mp4 (expected an existing audio or "
        "video file)"
    ]
    assert f"{before + 2} command(s) run" in _status_line(env)  # it ran in the runner


def test_connections_that_never_speak_delay_no_command(served):
    env = served
    before = _served_count(env)
    idle = [_connect(env) for _ in range(3)]
    half = _connect(env)
    half.sendall(struct.pack("!I", 50) + b'{"kind": "run", ')
    try:
        started = time.monotonic()
        assert _ping(env)["state"] == "ready"
        assert time.monotonic() - started < 3, "a ping waited on the connections before it"
        missing = run_cli(["transcribe", "nowhere.mp4"], env, cwd=Path(env["PREFECT_HOME"]).parent)
        assert missing.returncode == 2, missing.stderr
        assert f"{before + 1} command(s) run" in _status_line(env)  # in the runner
        # Each is told, after the handshake's deadline, why it was not served, and closed.
        for conn in [*idle, half]:
            answer = _answer_then_closed(conn)
            assert answer["ok"] is False and "came within 5 s, no more" in answer["error"], answer
    finally:
        for conn in [*idle, half]:
            conn.close()


def test_a_runner_that_does_not_answer_is_not_waited_for(served):
    env = served
    before = _served_count(env)
    record = _record(env)
    stopped = ProcessId(record["pid"], record["start"])
    assert stopped.signal(signal.SIGSTOP)
    try:
        started = time.monotonic()
        line = _status_line(env)
        assert line == (
            f"local runner (pid {record['pid']}) does not answer at {record['socket']}: the next "
            "transcribe or subtitle command runs in its own process and replaces it"
        )
        assert time.monotonic() - started < 30
        missing = run_cli(["transcribe", "nowhere.mp4"], env, cwd=Path(env["PREFECT_HOME"]).parent)
        assert missing.returncode == 2
        assert missing.stderr.strip().splitlines() == [
            "voxflow: error: media file not found: nowhere.mp4 (expected an existing audio or "
            "video file)"
        ]
    finally:
        stopped.signal(signal.SIGCONT)
    assert f"{before} command(s) run" in _await_line(env, "it answers$")  # it ran elsewhere


def _await_socket(pid: int, timeout: float = 60) -> None:
    """Until the process ``pid`` holds a socket (its connection to the runner)."""
    deadline = time.monotonic() + timeout
    fds = Path(f"/proc/{pid}/fd")
    while not any(os.readlink(fd).startswith("socket:") for fd in fds.iterdir()):
        assert time.monotonic() < deadline, f"pid {pid} never connected to the runner"
        time.sleep(0.05)


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_ctrl_c_before_the_runner_answers_says_the_one_line(served):
    env = served
    record = _record(env)
    stopped = ProcessId(record["pid"], record["start"])
    assert stopped.signal(signal.SIGSTOP)  # so the command is still waiting when Ctrl-C comes
    try:
        command = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "transcribe", "nowhere.mp4"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _await_socket(command.pid)
        command.send_signal(signal.SIGINT)
        out, err = command.communicate(timeout=60)
    finally:
        stopped.signal(signal.SIGCONT)
    assert command.returncode == 1
    assert (out, err) == ("", "voxflow: interrupted; run the same command again to resume\n")
    assert _ping(env)["state"] == "ready"


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root, to connect as another user")
def test_a_connection_from_another_user_is_refused(served):
    """Even where the socket's mode lets another user connect (here made 0777 on purpose), the
    kernel's word on who connected decides."""
    path = _record(served)["socket"]
    os.chmod(path, 0o777)
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # as nobody: connect, hand back what was answered
        try:
            os.close(read)
            os.setgid(65534)
            os.setuid(65534)
            with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
                conn.settimeout(30)
                conn.connect(path)  # refused before a byte is read: nothing to send
                os.write(write, conn.makefile("rb").readline())
        finally:
            os._exit(0)
    os.close(write)
    with os.fdopen(read, "rb") as told:
        answer = json.loads(told.read() or b"null")
    os.waitpid(child, 0)
    os.chmod(path, 0o600)
    assert answer == {"ok": False, "error": "this runner serves uid 0 only, not uid 65534"}
    assert _ping(served)["state"] == "ready"


# ---- back to back, and a server that is gone ---------------------------------------------------


def test_a_command_waits_for_a_loading_runner_and_one_whose_server_is_gone_is_replaced(
    warm_store, local, tmp_path
):
    """A shell loop: the second command finds the runner the first started still loading its
    models and runs there; once the local server is killed, the runner leaves by itself, and
    the next command starts a new server and a new runner against it."""
    args = ["transcribe", str(SAMPLE), "--profile", "cpu", "--store", warm_store.root]
    first = run_cli([*args, "--output", str(tmp_path / "first")], local)
    assert first.returncode == 0, first.stderr
    second = run_cli([*args, "--output", str(tmp_path / "second")], local)
    assert second.returncode == 0, second.stderr
    line = _await_line(local, r"asr:faster-whisper loaded, 1 command\(s\) run")
    log = (Path(local["PREFECT_HOME"]) / "voxflow-runner.log").read_text()
    assert log.count("ran `voxflow transcribe") == 1, log

    record = _record(local)
    first_runner = ProcessId(record["pid"], record["start"])
    server = server_process(Path(local["PREFECT_HOME"]))
    assert record["server"] == [server.pid, server.start]
    assert server.signal(signal.SIGKILL, group=True)
    assert gone(first_runner, 30), f"the runner stayed after its server: {line}"

    third = run_cli([*args, "--output", str(tmp_path / "third")], local)
    assert third.returncode == 0, third.stderr
    assert "starting a local Prefect server" in third.stderr
    line = _await_line(local, r"asr:faster-whisper loaded, 0 command\(s\) run.*it answers$")
    record, new_server = _record(local), server_process(Path(local["PREFECT_HOME"]))
    assert record["pid"] != first_runner.pid and record["server"] == [
        new_server.pid,
        new_server.start,
    ], line
