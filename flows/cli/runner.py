"""The local runner: a process beside the local server that keeps Prefect imported and the models
loaded, so a later ``voxflow transcribe`` or ``voxflow subtitle`` pays for neither.

A command that runs against the local server (``PREFECT_API_URL`` unset) first asks the runner
of its Prefect home to run it. The runner runs the very same command (:func:`flows.cli.main.main`)
in its own process, in the caller's folder, environment and umask, as a flow run against the
same local server, so its logs and artifacts are in the UI as before; what the command prints
comes back to the caller's terminal as it is written, and so does its exit code. Ctrl-C in the
caller interrupts the run in the runner, as it would in-process.

A command runs in its own process, as before, when there is no runner, when it is busy with
another command, when it does not answer within a few seconds (``HANDSHAKE_S``), or when it
would not behave the same there: its environment differs in what the libraries read once at
import (``PREFECT_*``, ``HF_*``, thread counts, ``PYTHONPATH`` ...), or voxflow's code or the
installed packages changed since it started. Such a command starts a new runner when it ends,
with the models it used, so the next one is quick again; a command that finds that runner
still loading them waits for it (``LOAD_WAIT_S`` at most), as a shell loop over files does.

The runner cannot be wedged by what connects to it (:mod:`flows.cli.runner_door`): each
connection is answered in a thread of its own, under a deadline; every request is checked
field by field (:mod:`flows.cli.runner_wire`); a connection from another user is refused, and a
command talks only to a runner of its own user (the kernel says who is at the other end).
``voxflow server status`` pings it. It leaves once the local server it was started against (by
process identity) is gone; the next command starts a server and a runner against it.

The runner ends after ``VOXFLOW_RUNNER_IDLE_S`` seconds without a command (default 300: it holds
the models' memory, GPU memory included, only while it is used), with ``voxflow server stop``,
or, with ``VOXFLOW_RUNNER=0``, is never used. Its log is ``<PREFECT_HOME>/voxflow-runner.log``.

This module is imported before anything heavy, by every command: the client side uses only the
standard library.
"""

from __future__ import annotations

import hashlib
import os
import select
import signal
import socket
import struct
import subprocess
import sys
import tempfile
from pathlib import Path

from flows.cli import runner_wire as wire
from flows.cli.home import home, paths
from flows.cli.processes import ProcessId, ServerFailed, read_record, unlink_if_names
from flows.cli.server import client_environment, recorded
from voxflow.settings import load_settings

SERVED = ("transcribe", "subtitle")
"""The commands the runner runs: those whose time is mostly imports and model loads."""

ROOT = Path(__file__).resolve().parents[2]
_CODE = ("voxflow", "flows", "tasks", "profiles", "blocks")
# What a library reads once, when it is imported or first used: a command whose values differ
# from the runner's would not behave the same there.
_IMPORT_TIME = (
    "PREFECT_",
    "HF_",
    "HUGGINGFACE_",
    "TRANSFORMERS_",
    "TORCH",
    "PYTORCH_",
    "CUDA_",
    "OMP_",
    "MKL_",
    "OPENBLAS_",
    "KMP_",
    "CT2_",
    "ORT_",
    "PYTHON",
    "LD_",
    "DYLD_",
    "VOXFLOW_NETGUARD",
    "VOXFLOW_RUNNER",
)
_LOCAL_SERVER = ("PREFECT_API_URL", "PREFECT_API_AUTH_STRING")
"""Set by the command for the local server, to the runner's own values."""
_OUT, _ERR, _EXIT = 1, 2, 0  # frame kinds: stdout, stderr, the exit code (the last frame)
_INTERRUPT = b"\x03"
INTERRUPTED = "voxflow: interrupted; run the same command again to resume\n"


def _state() -> Path:
    return paths().runner_record


def _log() -> Path:
    return paths().runner_log


def _socket_path() -> str:
    # In the temporary folder, not the Prefect home: a Unix socket's path is at most ~104 bytes.
    digest = hashlib.sha256(str(home().resolve()).encode()).hexdigest()[:16]
    return os.path.join(tempfile.gettempdir(), f"voxflow-runner-{os.getuid()}-{digest}.sock")


def enabled(environ: dict[str, str] | os._Environ = os.environ) -> bool:
    """Whether commands use the runner here: local-server runs on a POSIX system, not switched
    off with ``VOXFLOW_RUNNER=0``."""
    return (
        os.name == "posix"
        and hasattr(socket, "AF_UNIX")
        and not environ.get("PREFECT_API_URL")
        and load_settings(environ).runner
    )


def fingerprint(environ: dict[str, str] | os._Environ) -> str:
    """What must be the same in a command and the runner for the runner to run it: the
    interpreter, what the libraries read at import, voxflow's files, the installed packages."""
    h = hashlib.sha256(f"{sys.executable}\0{sys.version}\0".encode())
    for key in sorted(environ):
        if key.startswith(_IMPORT_TIME) and key not in _LOCAL_SERVER:
            h.update(f"{key}={environ[key]}\0".encode())
    for name in _CODE:
        for folder, dirs, files in os.walk(ROOT / name):
            dirs[:] = sorted(d for d in dirs if d != "__pycache__")
            for file in sorted(files):
                stat = os.stat(os.path.join(folder, file))
                h.update(f"{folder}/{file}:{stat.st_mtime_ns}:{stat.st_size}\0".encode())
    for entry in sys.path:  # installing or removing a package changes its folder's mtime
        if entry.endswith("-packages") and os.path.isdir(entry):
            h.update(f"{entry}:{os.stat(entry).st_mtime_ns}\0".encode())
    return h.hexdigest()


_RECORD = {
    "key": str,
    "api": str,
    "socket": str,
    "server": list,
    "started_at": (int, float),
    "last_used": (int, float),
    "served": int,
    "models": list,
    "idle_s": (int, float),
}


def _read_state() -> dict | None:
    """The runner's record, when its process is the recorded one (pid and start time)."""
    state = read_record(_state(), _RECORD, "local runner")
    return state if state is not None and _process(state).running() else None


def _process(state: dict) -> ProcessId:
    return ProcessId(state["pid"], state["start"])


def _server() -> list | None:
    """The local server's process as the runner records it ([pid, start]), when it runs (no
    health check: the runner's command checks it, and starts one when it does not answer)."""
    server = recorded()
    return [server.pid, server.start] if server is not None else None


def _server_api() -> str | None:
    """The local server's API address, when its process runs."""
    server = recorded()
    return server.api if server is not None else None


def _server_environment() -> dict[str, str] | None:
    """What the runner's Prefect talks to the local server with: its address and the home's
    credential, when it runs."""
    server = recorded()
    try:
        return client_environment(server) if server is not None else None
    except ServerFailed:
        return None


# ---- the command's side ------------------------------------------------------------------------


def command_of(argv: list[str]) -> str | None:
    """The subcommand in ``argv`` (its first word that is not an option)."""
    return next((word for word in argv if not word.startswith("-")), None)


def forward(argv: list[str]) -> int | None:
    """Run the command in the runner: its exit code, or None when it is to run in this process
    (no runner, a busy one or one that does not answer within ``HANDSHAKE_S``, a different
    environment or code, or help asked for). A runner still loading its models is waited for,
    up to ``LOAD_WAIT_S``: it is nearer to ready than a process of this command's own."""
    if command_of(argv) not in SERVED or "-h" in argv or "--help" in argv:
        return None
    state = _read_state()
    if state is None or state["api"] != _server_api() or state["server"] != _server():
        return None
    key = fingerprint(os.environ)
    if state["key"] != key:
        return None
    request = {
        "kind": "run",
        "key": key,
        "argv": argv,
        "cwd": os.getcwd(),
        "env": dict(os.environ),
        "tty": [sys.stdout.isatty(), sys.stderr.isatty()],
        "umask": _umask(),  # what the command's files get, as in its own process
    }
    try:  # Ctrl-C before the relay takes it over: the command did not start, or is stopped
        conn = _handshake(state, request)
        return None if conn is None else _relay(conn, state)
    except KeyboardInterrupt:
        sys.stderr.write(INTERRUPTED)
        return 1


def _connect(state: dict) -> socket.socket:
    """A connection to the runner's socket, when the process at its other end is the recorded
    runner, of this user (the kernel says who it is).

    Raises:
        OSError: No connection within ``HANDSHAKE_S``, or another process is listening there.
    """
    conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        conn.settimeout(wire.HANDSHAKE_S)
        conn.connect(state["socket"])
        uid, pid = wire.peer(conn)
        if uid != os.getuid() or pid not in (None, state["pid"]):
            raise ConnectionRefusedError(f"uid {uid}, pid {pid} listens at {state['socket']}")
    except BaseException:
        conn.close()
        raise
    return conn


def _handshake(state: dict, request: dict) -> socket.socket | None:
    """The connection on which the runner took the command; None when it did not."""
    try:
        conn = _connect(state)
    except OSError:
        return None
    try:
        conn.sendall(wire.encode_request(request))
        reader = conn.makefile("rb", buffering=0)
        answer = wire.read_answer(reader)
        if answer.get("state") == "loading":
            conn.settimeout(wire.LOAD_WAIT_S)
            answer = wire.read_answer(reader)
        if answer.get("ok") is True:
            conn.settimeout(None)
            return conn
    except (OSError, ValueError):
        pass
    except BaseException:
        conn.close()
        raise
    conn.close()
    return None


def ping(state: dict) -> dict | None:
    """What the runner says of itself (``state``: loading, ready, busy or leaving; ``served``),
    when it answers a ping at its socket within ``HANDSHAKE_S``; else None."""
    try:
        with _connect(state) as conn:
            conn.sendall(wire.encode_request({"kind": "ping"}))
            answer = wire.read_answer(conn.makefile("rb", buffering=0))
    except (OSError, ValueError):
        return None
    return answer if answer.get("ok") is True else None


def _umask() -> int:
    """This process's umask (read by setting it back at once: nothing else runs yet)."""
    mask = os.umask(0o077)
    os.umask(mask)
    return mask


def _relay(conn: socket.socket, state: dict) -> int:
    """Write what the runner's command prints to this process's stdout and stderr, until its
    exit code comes; the first Ctrl-C interrupts the command there, a second leaves at once."""
    streams = {_OUT: sys.stdout.buffer, _ERR: sys.stderr.buffer}
    reader = conn.makefile("rb")
    interrupts = []

    def interrupt(signum: int, frame: object) -> None:  # no exception: the frames stay whole
        if interrupts:
            os._exit(130)
        interrupts.append(signum)
        try:
            conn.sendall(_INTERRUPT)
        except OSError:
            pass

    signal.signal(signal.SIGINT, interrupt)
    while True:
        head = reader.read(5)
        if len(head) < 5:
            break
        kind, size = struct.unpack("!BI", head)
        data = reader.read(size)
        if len(data) < size:
            break
        if kind == _EXIT:
            return int(data)
        try:
            streams[kind].write(data)
            streams[kind].flush()
        except BrokenPipeError:  # our reader left (`voxflow transcribe ... | head`)
            os.dup2(os.open(os.devnull, os.O_WRONLY), streams[kind].fileno())
    sys.stderr.write(
        f"voxflow: error: the local runner (pid {state['pid']}) ended during the command (its "
        f"log: {_log()}); run the command again: it resumes from the stages already done\n"
    )
    unlink_if_names(_state(), _process(state))
    return 1


def start(environ: dict[str, str], profile: str | None, store: str | None) -> None:
    """Start a runner for this environment in the background, unless one that answers already
    serves it; it loads the models of ``profile`` from ``store`` before it runs a command. This
    returns once the runner listens (a command right after this one finds it, and waits for its
    models), or after ``HANDSHAKE_S`` at most.

    Args:
        environ: The environment the command was started with (before the CLI's own defaults).
        profile: The command's ``--profile``.
        store: The command's ``--store``, as an absolute path.
    """
    key = fingerprint(environ)
    state = _read_state()
    if state is not None:
        if state["key"] == key and state["server"] == _server() and ping(state) is not None:
            return
        _process(state).signal(signal.SIGTERM)  # it leaves once its command, if any, ends
    listening, tell = os.pipe()  # the runner closes its end once it listens, or leaves
    command = [sys.executable, "-m", "flows.cli.runner_process", "--key", key]
    command += ["--listening-fd", str(tell)]
    if profile and store:
        command += ["--profile", profile, "--store", store]
    home().mkdir(parents=True, exist_ok=True)
    fd = os.open(_log(), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    try:
        with os.fdopen(fd, "ab") as log:
            subprocess.Popen(
                command,
                cwd=home(),
                env=dict(environ),
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # it outlives this command and its terminal
                pass_fds=(tell,),
            )
    finally:
        os.close(tell)
    with os.fdopen(listening, "rb", buffering=0) as told:
        select.select([told], [], [], wire.HANDSHAKE_S)


def stop() -> int | None:
    """End the runner; its pid, or None when none ran."""
    state = _read_state()
    _state().unlink(missing_ok=True)
    if state is None or not _process(state).signal(signal.SIGTERM):
        return None
    return state["pid"]


def status() -> dict | None:
    """The runner's pid, start time and the time of its last command, when one runs."""
    return _read_state()
