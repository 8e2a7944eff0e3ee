"""The local Prefect server the ``voxflow`` command runs its flows against.

With ``PREFECT_API_URL`` set, the command uses that server. Otherwise it uses one local
server per Prefect home: started in the background on first use (``prefect server start`` on
127.0.0.1, in a session of its own, its output in ``<PREFECT_HOME>/voxflow-server.log``) and
reused by every later command, so no command pays for a throwaway server, and the runs, logs
and artifacts of local runs stay in one UI. ``voxflow server status`` says where it is and how
to log in, ``voxflow server stop`` ends it. Starting is done under a file lock, so two commands
at once share one server.

It is its home's and its user's alone. The home is made 0700; the server runs under umask 077
(its database, journals and log 0600) and asks every request but its health check for a random
credential, ``voxflow:<secret>``, that the home keeps in ``voxflow-server.credential`` (0600);
voxflow's commands and runner send it (``PREFECT_API_AUTH_STRING``). A recorded server is used
only when its process is the recorded one, in this network namespace, and the server answering
at its address accepts this credential and refuses a request without one (:func:`not_ours`).

Its record, ``<PREFECT_HOME>/voxflow-server.json``, names its process by pid and start time
(:class:`~flows.cli.processes.ProcessId`): nothing is signalled on its word unless both match.
It does not outlive its use: a watchdog in its process (:mod:`flows.cli.server_process`) ends
it once no voxflow process has held it (:func:`hold`) for ``VOXFLOW_SERVER_IDLE_S`` (30 min; 0
keeps it up), and at once when its home is removed or replaced or its record names another
process; the next command starts it again.
"""

from __future__ import annotations

import base64
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from pathlib import Path

from filelock import FileLock

from flows.cli.home import (
    HomePaths,
    network_namespace,
    new_credential,
    paths,
    private_home,
    private_log,
    read_credential,
)
from flows.cli.processes import (
    ProcessId,
    ServerFailed,
    process_start,
    read_record,
    registry,
    unlink_if_names,
    unregister,
)
from voxflow.atomic import write_json, write_text
from voxflow.settings import load_settings

ROOT = Path(__file__).resolve().parents[2]
DEFAULT_PORT = 4200
START_TIMEOUT_S = 240.0  # the first start runs the database migrations; a busy machine is slow


@dataclass(frozen=True)
class LocalServer:
    """A background server this Prefect home started: its process, address and network
    namespace."""

    pid: int
    port: int
    started_at: float
    start: str = ""
    netns: int | None = None
    idle_s: float = 0.0

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


_RECORD = {
    "port": int,
    "started_at": (int, float),
    "netns": (int, type(None)),
    "idle_s": (int, float),
}


def read() -> LocalServer | None:
    """The server this Prefect home recorded, as recorded (its process not looked at); None
    when there is none or its record cannot be read."""
    data = read_record(paths().record, _RECORD, "local server")
    if data is None:
        return None
    return LocalServer(
        data["pid"],
        data["port"],
        float(data["started_at"]),
        data["start"],
        data["netns"],
        float(data["idle_s"]),
    )


def recorded() -> LocalServer | None:
    """The local server this Prefect home recorded, when its process is the recorded one (pid
    and start time) and runs in this network namespace (not asked whether it answers)."""
    server = read()
    if server is None or server.netns != network_namespace() or not server.process.running():
        return None
    return server


def not_ours(server: LocalServer) -> str | None:
    """Why the recorded server is not this Prefect home's to use from here; None when it is:
    its process is the recorded one, in this network namespace, and the server answering at
    its address accepts this home's credential and refuses a request without one (any other
    server there, another home's or another user's, would not)."""
    if not server.process.running():
        if process_start(server.pid) is None:
            return f"its process (pid {server.pid}) has ended"
        return f"pid {server.pid} is another process now (its start time is not the record's)"
    if server.netns != network_namespace():
        return "it runs in another network namespace, where 127.0.0.1 is not this one's"
    secret = read_credential()
    if secret is None:
        return f"{paths().credential} is missing, or others may read it"
    return _refusal(server, secret)


def ensure(say=print) -> tuple[LocalServer, bool]:
    """The local server, started in the background when there is none that is this home's
    (saying, in one line, why a recorded one is not used).

    Returns:
        The server, and whether this call started it.

    Raises:
        BadInput: The Prefect home belongs to another user.
        ServerFailed: It did not answer within ``START_TIMEOUT_S`` (names its log).
    """
    where = paths()
    private_home(where)
    hold(where)  # first: a server that sees this process holding it does not end now
    with FileLock(where.lock):  # another command may be starting it, or the server ending
        server = read()
        if server is not None:
            why = not_ours(server)
            if why is None:
                return server, False
            say(f"not using the local server recorded in {where.record}: {why}")
        return _start(where, say), True


def client_environment(server: LocalServer) -> dict[str, str]:
    """What a client of the local server sets: ``PREFECT_API_URL`` and the home's credential as
    ``PREFECT_API_AUTH_STRING``.

    Raises:
        ServerFailed: The credential went missing meanwhile.
    """
    secret = read_credential()
    if secret is None:
        raise ServerFailed(
            f"{paths().credential} went missing or became readable by others; run the command "
            "again: it starts a server with a new credential"
        )
    return {"PREFECT_API_URL": server.api, "PREFECT_API_AUTH_STRING": secret}


def stop() -> LocalServer | None:
    """Stop the local server, its process group included, when its process is the recorded one;
    what was stopped (None: nothing ran). The record goes either way: one that names another
    process, or that cannot be read, names no server."""
    server = read()
    stopped = server is not None and server.process.end(group=True)
    paths().record.unlink(missing_ok=True)
    if server is not None:
        unregister("server", server.process)
    return server if stopped else None


# No proxy for loopback: a proxy named in the environment would otherwise see the credential.
_LOOPBACK = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def _status(url: str, secret: str | None, timeout: float) -> int | None:
    """The HTTP status of a GET of ``url`` (with ``secret`` as basic auth); None: no answer."""
    headers = {}
    if secret is not None:
        headers["Authorization"] = "Basic " + base64.b64encode(secret.encode()).decode()
    try:
        with _LOOPBACK.open(urllib.request.Request(url, headers=headers), timeout=timeout) as r:
            return r.status
    except urllib.error.HTTPError as e:
        e.close()
        return e.code
    except (OSError, ValueError):
        return None


def _refusal(server: LocalServer, secret: str, timeout: float = 5.0) -> str | None:
    """Why the server at ``server.url`` is not the one that has ``secret``; None when it is."""
    probe = f"{server.api}/admin/version"  # any route but the health check asks for it
    answer = _status(probe, secret, timeout)
    if answer is None:
        return f"nothing answers at {server.url}"
    if answer != 200:
        return f"the server at {server.url} refuses this home's credential (HTTP {answer})"
    if _status(probe, None, timeout) != 401:
        return f"the server at {server.url} answers without a credential, so it is not this home's"
    return None


def _start(where: HomePaths, say) -> LocalServer:
    secret = read_credential() or new_credential(where)
    idle_s = load_settings().server_idle_s
    port = DEFAULT_PORT if _free(DEFAULT_PORT) else _any_free_port()
    say(f"starting a local Prefect server for voxflow's runs at http://127.0.0.1:{port} ...")
    for attempt in range(3):
        server, process = _spawn(where, port, secret, idle_s)
        deadline = time.monotonic() + START_TIMEOUT_S
        while _refusal(server, secret, timeout=2.0) is not None:
            if process.poll() is not None or not server.start or time.monotonic() > deadline:
                break
            time.sleep(0.5)
        else:
            break
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)  # our child, not yet reaped: still it
        elif attempt < 2 and not _free(port):  # another process took the port meanwhile
            port = _any_free_port()
            say(f"its port was taken meanwhile: starting it at http://127.0.0.1:{port} ...")
            continue
        raise ServerFailed(
            f"the local Prefect server did not start (see {where.log}); run the command "
            "again, or start one yourself (`prefect server start`) and set PREFECT_API_URL"
        )
    write_json(where.record, asdict(server))
    private_home(where)  # what the first start created, under its umask already
    ends = f"it ends after {duration(idle_s)} unused" if idle_s > 0 else "it stays up"
    say(
        f"local Prefect server ready: its UI at {server.url} shows voxflow's runs "
        f"(`voxflow server status` says how to log in); later commands reuse it, {ends}"
    )
    return server


def _spawn(
    where: HomePaths, port: int, secret: str, idle_s: float
) -> tuple[LocalServer, subprocess.Popen]:
    """Start the server's process (:func:`flows.cli.server_process.serve`) in the background;
    what its record will be."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # It asks every request but its health check for the credential; its own clients send it.
    env.update(PREFECT_SERVER_API_AUTH_STRING=secret, PREFECT_API_AUTH_STRING=secret)
    env["PREFECT_HOME"] = str(where.root)
    # This very code runs its watchdog (the record it reads is the one this code writes).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "flows.cli.server_process", "--port", str(port)]
    command += ["--idle-s", str(idle_s)]
    with private_log(where.log) as out:
        process = subprocess.Popen(
            command,
            cwd=where.root,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # it outlives this command and its terminal
            umask=0o077,  # its database, journals and logs are the user's alone
        )
    started = ProcessId.of(process.pid)
    start = started.start if started else ""
    server = LocalServer(process.pid, port, time.time(), start, network_namespace(), idle_s)
    return server, process


def duration(seconds: float) -> str:
    """A time span as a line says it: ``42 s``, ``12 min``, ``3.5 h``."""
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"


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


# ---- who uses it, and when it ends ----------------------------------------------------------


@dataclass(frozen=True)
class Usage:
    """Who holds the local server, and when a command last used it."""

    holders: tuple[ProcessId, ...]
    last_used: float


def hold(where: HomePaths | None = None) -> None:
    """Count this process as a user of the home's server until it ends or calls
    :func:`release`: the server does not end for idleness meanwhile."""
    where = where or paths()
    me = ProcessId.me()
    where.users.mkdir(mode=0o700, exist_ok=True)
    write_text(where.users / str(me.pid), me.start)
    where.used.touch()


def release(where: HomePaths | None = None) -> None:
    """This process no longer uses the server (the runner, after each command): its idle time
    counts from now."""
    where = where or paths()
    me = ProcessId.me()
    held = where.users / str(me.pid)
    try:
        if held.read_text().strip() == me.start:
            held.unlink()
            where.used.touch()
    except FileNotFoundError:  # it did not hold the server: nothing to release
        return


def usage(where: HomePaths | None = None, prune: bool = False) -> Usage:
    """The processes that hold the server now (each checked by pid and start time), and its last
    use: the latest command's, or the end of the last holder that ``prune`` saw gone (it
    removes their files)."""
    where = where or paths()
    try:
        last = where.used.stat().st_mtime
    except FileNotFoundError:
        last = 0.0
    holders = []
    try:
        entries = sorted(where.users.iterdir())
    except FileNotFoundError:
        entries = []
    for entry in entries:
        if not entry.name.isdigit():  # a writer's temp file
            continue
        try:
            held = ProcessId(int(entry.name), entry.read_text().strip())
        except OSError:
            continue
        if held.running():
            holders.append(held)
        elif prune:
            entry.unlink(missing_ok=True)
            where.used.touch()
            last = time.time()
    return Usage(tuple(holders), last)


def stop_all(say=print) -> int:
    """End every runner, then every server, that the registry lists, each only while its process
    is the listed one (pid and start time; a server with its process group); how many ended.
    Entries that name no such process are dropped, with nothing signalled."""
    entries = []
    for path in sorted(registry().glob("*.json")):
        entry = read_record(path, {"kind": str, "home": str}, "registered process")
        if entry is not None:
            entries.append((path, entry))
    ended = 0
    for kind in ("runner", "server"):
        for path, entry in entries:
            if entry["kind"] != kind:
                continue
            process = ProcessId(entry["pid"], entry["start"])
            where = HomePaths(Path(entry["home"]))
            if process.end(group=kind == "server"):
                ended += 1
                what = "runner" if kind == "runner" else f"Prefect server at {entry.get('url')}"
                say(f"stopped the local {what} (pid {process.pid}) of {where.root}")
            unlink_if_names(where.record if kind == "server" else where.runner_record, process)
            path.unlink(missing_ok=True)
    return ended
