"""The local Prefect server the ``voxflow`` command runs its flows against.

With ``PREFECT_API_URL`` set, the command uses that server. Otherwise it uses one local
server per Prefect home: started in the background on first use (``prefect server start`` on
127.0.0.1, in a session of its own, its output in ``<PREFECT_HOME>/voxflow-server.log``) and
reused by every later command, so no command pays for a throwaway server, and the runs, logs
and artifacts of local runs stay in one UI. ``voxflow server status`` says where it is,
``voxflow server stop`` ends it. Its address is kept in ``<PREFECT_HOME>/voxflow-server.json``;
starting is done under a file lock, so two commands at once share one server.
"""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from voxflow.atomic import write_json
from voxflow.errors import VoxflowError

DEFAULT_PORT = 4200
START_TIMEOUT_S = 240.0  # the first start runs the database migrations; a busy machine is slow


class ServerFailed(VoxflowError):
    """The local Prefect server did not start."""

    exit_code = 1


@dataclass(frozen=True)
class LocalServer:
    """A background server this Prefect home started: its process and address."""

    pid: int
    port: int
    started_at: float

    @property
    def url(self) -> str:
        """The UI's address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        """What ``PREFECT_API_URL`` is set to."""
        return f"{self.url}/api"


def home() -> Path:
    """The Prefect home (``$PREFECT_HOME``, else ``~/.prefect``)."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def _state() -> Path:
    return home() / "voxflow-server.json"


def recorded() -> LocalServer | None:
    """The local server this Prefect home recorded, when its process is alive (not asked
    whether it answers); else None."""
    try:
        server = LocalServer(**json.loads(_state().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    return server if alive(server.pid) else None


def running() -> LocalServer | None:
    """The local server, when its process is alive and it answers; else None."""
    server = recorded()
    return server if server is not None and healthy(server.api) else None


def ensure(say=print) -> tuple[LocalServer, bool]:
    """The local server, started in the background when there is none.

    Returns:
        The server, and whether this call started it.

    Raises:
        ServerFailed: It did not answer within ``START_TIMEOUT_S`` (names its log).
    """
    found = running()
    if found:
        return found, False
    home().mkdir(parents=True, exist_ok=True)
    with FileLock(home() / "voxflow-server.lock"):
        found = running()  # another command may have started it meanwhile
        if found:
            return found, False
        server = _start(say)
    return server, True


def stop() -> LocalServer | None:
    """Stop the local server; return what was stopped (None: nothing ran)."""
    try:
        server = LocalServer(**json.loads(_state().read_text()))
    except (OSError, ValueError, TypeError):
        return None
    if alive(server.pid):
        os.killpg(server.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        while alive(server.pid) and time.monotonic() < deadline:
            time.sleep(0.2)
        if alive(server.pid):
            os.killpg(server.pid, signal.SIGKILL)
    _state().unlink(missing_ok=True)
    return server


def healthy(api: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api`` answers its health check."""
    try:
        with urllib.request.urlopen(f"{api}/health", timeout=timeout) as response:
            return response.status == 200
    except OSError:
        return False


def _start(say) -> LocalServer:
    port = DEFAULT_PORT if _free(DEFAULT_PORT) else _any_free_port()
    log = home() / "voxflow-server.log"
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with open(log, "ab") as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # it outlives this command and its terminal
        )
    server = LocalServer(process.pid, port, time.time())
    say(f"starting a local Prefect server for voxflow's runs at {server.url} ...")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthy(server.api):
        if process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)
            raise ServerFailed(
                f"the local Prefect server did not start (see {log}); run the command again, "
                "or start one yourself (`prefect server start`) and set PREFECT_API_URL"
            )
        time.sleep(0.5)
    write_json(_state(), asdict(server))
    say(
        f"local Prefect server ready: its UI at {server.url} shows voxflow's runs; later "
        "commands reuse it (`voxflow server status`, `voxflow server stop`)"
    )
    return server


def alive(pid: int) -> bool:
    """Whether a process with this pid runs (one of another user's counts)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _free(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def _any_free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]
