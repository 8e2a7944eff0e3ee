"""The local Prefect server the ``voxflow`` command runs its flows against.

With ``PREFECT_API_URL`` set, the command uses that server. Otherwise it uses one local
server per Prefect home: started in the background on first use (``prefect server start`` on
127.0.0.1, in a session of its own, its output in ``<PREFECT_HOME>/voxflow-server.log``) and
reused by every later command, so no command pays for a throwaway server, and the runs, logs
and artifacts of local runs stay in one UI. ``voxflow server status`` says where it is,
``voxflow server stop`` ends it. Starting is done under a file lock, so two commands at once
share one server.

Its record, ``<PREFECT_HOME>/voxflow-server.json``, names its process by pid *and* start time
(:class:`ProcessId`): after a reboot, or once the server has ended, its pid may belong to any
process, so nothing is signalled on a record's word unless both still match, and a process
group only when its leader is the recorded process. A record that cannot be read is no server
(one warning line).
"""

from __future__ import annotations

import json
import logging
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from filelock import FileLock

from voxflow.atomic import write_json
from voxflow.errors import VoxflowError

log = logging.getLogger("voxflow.server")

DEFAULT_PORT = 4200
START_TIMEOUT_S = 240.0  # the first start runs the database migrations; a busy machine is slow
STOP_TIMEOUT_S = 20.0  # how long a stopped process has to end before it is killed


class ServerFailed(VoxflowError):
    """The local Prefect server did not start."""

    exit_code = 1


# ---- which process a record names -------------------------------------------------------------


@cache
def _boot_id() -> str | None:
    try:
        return Path("/proc/sys/kernel/random/boot_id").read_text().strip() or None
    except OSError:
        return None


def process_start(pid: int) -> str | None:
    """When the process with this pid started, as a string no later process with the pid shares:
    on Linux the boot id and the start time in clock ticks after boot (field 22 of
    ``/proc/<pid>/stat``); elsewhere what ``ps -o lstart=`` says. None when no such process
    runs (a zombie has ended) or its start cannot be read."""
    if not isinstance(pid, int) or isinstance(pid, bool) or pid <= 0:
        return None
    if sys.platform.startswith("linux"):
        try:
            stat = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: count after its last ")".
        after = stat[stat.rindex(b")") + 2 :].split()
        if len(after) < 20 or after[0] in (b"Z", b"X") or _boot_id() is None:
            return None
        return f"{_boot_id()}:{int(after[19])}"
    try:
        ps = subprocess.run(
            ["ps", "-o", "stat=,lstart=", "-p", str(pid)],
            capture_output=True,
            text=True,
            timeout=10,
            env={"LC_ALL": "C", "PATH": "/bin:/usr/bin"},
        )
    except (OSError, subprocess.SubprocessError):
        return None
    state, _, start = ps.stdout.strip().partition(" ")
    if not state or state.startswith("Z"):
        return None
    return " ".join(start.split()) or None


@dataclass(frozen=True)
class ProcessId:
    """A process as records name it: its pid and when it started (:func:`process_start`)."""

    pid: int
    start: str

    @classmethod
    def of(cls, pid: int) -> ProcessId | None:
        """The process that has this pid now; None when none runs."""
        start = process_start(pid)
        return cls(pid, start) if start else None

    @classmethod
    def me(cls) -> ProcessId:
        """This process."""
        found = cls.of(os.getpid())
        if found is None:
            raise ServerFailed(f"cannot read this process's start time (pid {os.getpid()})")
        return found

    def running(self) -> bool:
        """Whether this very process still runs (not another that got its pid since)."""
        return bool(self.start) and process_start(self.pid) == self.start

    def signal(self, signum: int, group: bool = False) -> bool:
        """Send ``signum`` to this process (to its process group with ``group``, when it leads
        one), only when it is still this process; whether a signal was sent."""
        if not self.running():
            return False
        try:
            if group and os.getpgid(self.pid) == self.pid:
                os.killpg(self.pid, signum)
            else:
                os.kill(self.pid, signum)
        except (ProcessLookupError, PermissionError):
            return False
        return True

    def end(self, group: bool = False, timeout: float = STOP_TIMEOUT_S) -> bool:
        """SIGTERM, then SIGKILL after ``timeout`` s, each only while it is still this process;
        whether it was running."""
        if not self.signal(signal.SIGTERM, group):
            return False
        deadline = time.monotonic() + timeout
        while self.running() and time.monotonic() < deadline:
            time.sleep(0.1)
        self.signal(signal.SIGKILL, group)
        return True


def parse_record(data: object, fields: dict[str, type | tuple[type, ...]]) -> dict:
    """A record's fields, each of its type, with a pid and a start time that name a process.

    Raises:
        ValueError: A field is missing or of another type (the message says which).
    """
    if not isinstance(data, dict):
        raise ValueError("not a JSON object")
    if not isinstance(data.get("start"), str) or not data["start"]:
        raise ValueError("it names no process start time (an older voxflow wrote it)")
    for name, kind in {"pid": int, **fields}.items():
        value = data.get(name)
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ValueError(f"its {name} is {value!r}")
    if data["pid"] <= 0:
        raise ValueError(f"its pid is {data['pid']}")
    return data


_warned: set[tuple[str, int]] = set()


def read_record(path: Path, fields: dict[str, type | tuple[type, ...]], what: str) -> dict | None:
    """A record voxflow keeps of one of its processes (see :func:`parse_record`); None when
    there is none, or when it cannot be read: then one warning line (per process and version
    of the file) says so, and nothing is done on its word.

    Args:
        path: The record.
        fields: Its fields besides ``pid`` and ``start``, with their types.
        what: What it records, for the warning ("local server").
    """
    try:
        return parse_record(json.loads(path.read_text()), fields)
    except FileNotFoundError:
        return None
    except (OSError, ValueError) as e:
        try:
            seen = (str(path), path.stat().st_mtime_ns)
        except OSError:
            seen = (str(path), 0)
        if seen not in _warned:
            _warned.add(seen)
            log.warning(
                "cannot read the %s's record %s (%s): taken as no %s, nothing is signalled on "
                "its word",
                what, path, e, what,
            )  # fmt: skip
        return None


# ---- the local server ---------------------------------------------------------------------------


@dataclass(frozen=True)
class LocalServer:
    """A background server this Prefect home started: its process and address."""

    pid: int
    port: int
    started_at: float
    start: str = ""

    @property
    def url(self) -> str:
        """The UI's address."""
        return f"http://127.0.0.1:{self.port}"

    @property
    def api(self) -> str:
        """What ``PREFECT_API_URL`` is set to."""
        return f"{self.url}/api"

    @property
    def process(self) -> ProcessId:
        """Its process."""
        return ProcessId(self.pid, self.start)


_RECORD = {"port": int, "started_at": (int, float)}


def home() -> Path:
    """The Prefect home (``$PREFECT_HOME``, else ``~/.prefect``)."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def _state() -> Path:
    return home() / "voxflow-server.json"


def read() -> LocalServer | None:
    """The server this Prefect home recorded, as recorded (its process not looked at); None
    when there is none or its record cannot be read."""
    data = read_record(_state(), _RECORD, "local server")
    if data is None:
        return None
    return LocalServer(data["pid"], data["port"], float(data["started_at"]), data["start"])


def recorded() -> LocalServer | None:
    """The local server this Prefect home recorded, when its process is the recorded one (pid
    and start time; not asked whether it answers); else None."""
    server = read()
    return server if server is not None and server.process.running() else None


def running() -> LocalServer | None:
    """The local server, when its process is the recorded one and it answers; else None."""
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
    """Stop the local server, its process group included, when its process is the recorded one;
    what was stopped (None: nothing ran). The record goes either way: one that names another
    process, or that cannot be read, names no server."""
    server = read()
    stopped = server is not None and server.process.end(group=True)
    _state().unlink(missing_ok=True)
    return server if stopped else None


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
    started = ProcessId.of(process.pid)
    server = LocalServer(process.pid, port, time.time(), started.start if started else "")
    say(f"starting a local Prefect server for voxflow's runs at {server.url} ...")
    deadline = time.monotonic() + START_TIMEOUT_S
    while not healthy(server.api):
        if started is None or process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # our child, not yet reaped: still it
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
