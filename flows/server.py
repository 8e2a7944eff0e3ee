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

Its record, ``<PREFECT_HOME>/voxflow-server.json``, names its process by pid *and* start time
(:class:`ProcessId`): after a reboot, or once the server has ended, its pid may belong to any
process, so nothing is signalled on a record's word unless both still match, and a process
group only when its leader is the recorded process. A record that cannot be read is no server
(one warning line).
"""

from __future__ import annotations

import base64
import json
import logging
import os
import secrets
import signal
import socket
import stat
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from filelock import FileLock

from voxflow.atomic import temp_path, write_json
from voxflow.errors import BadInput, VoxflowError

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
            line = Path(f"/proc/{pid}/stat").read_bytes()
        except OSError:
            return None
        # The command name (field 2) may hold spaces and parentheses: count after its last ")".
        after = line[line.rindex(b")") + 2 :].split()
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

USER = "voxflow"
"""The user name in the local server's credential (``voxflow:<secret>``), as its UI's login
asks for it."""


@dataclass(frozen=True)
class HomePaths:
    """Every file voxflow keeps in a Prefect home for its local server and runner."""

    root: Path

    @property
    def record(self) -> Path:
        """The server's record (:class:`LocalServer`)."""
        return self.root / "voxflow-server.json"

    @property
    def lock(self) -> Path:
        """Held while a server is started, so two commands at once share one."""
        return self.root / "voxflow-server.lock"

    @property
    def log(self) -> Path:
        """What the server prints."""
        return self.root / "voxflow-server.log"

    @property
    def credential(self) -> Path:
        """The server's credential, ``voxflow:<secret>`` (mode 0600)."""
        return self.root / "voxflow-server.credential"

    @property
    def runner_record(self) -> Path:
        """The local runner's record (:mod:`flows.runner`)."""
        return self.root / "voxflow-runner.json"

    @property
    def runner_log(self) -> Path:
        """What the local runner prints."""
        return self.root / "voxflow-runner.log"

    @property
    def private(self) -> tuple[Path, ...]:
        """What only the user may read: Prefect's database (with its journals) and the logs."""
        db = self.root / "prefect.db"
        journals = [db.with_name(f"prefect.db{end}") for end in ("-wal", "-shm", "-journal")]
        return (db, *journals, self.log, self.runner_log)


def home() -> Path:
    """The Prefect home (``$PREFECT_HOME``, else ``~/.prefect``)."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser()


def paths() -> HomePaths:
    """The files of this Prefect home (:func:`home`)."""
    return HomePaths(home())


def network_namespace() -> int | None:
    """This process's network namespace (the inode of ``/proc/self/ns/net``); None where there
    are none. A server started in another one does not answer at this one's 127.0.0.1."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


@dataclass(frozen=True)
class LocalServer:
    """A background server this Prefect home started: its process, address and network
    namespace."""

    pid: int
    port: int
    started_at: float
    start: str = ""
    netns: int | None = None

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


_RECORD = {"port": int, "started_at": (int, float), "netns": (int, type(None))}


def read() -> LocalServer | None:
    """The server this Prefect home recorded, as recorded (its process not looked at); None
    when there is none or its record cannot be read."""
    data = read_record(paths().record, _RECORD, "local server")
    if data is None:
        return None
    return LocalServer(
        data["pid"], data["port"], float(data["started_at"]), data["start"], data["netns"]
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


def running() -> LocalServer | None:
    """The local server, when it is this home's to use (:func:`not_ours`); else None."""
    server = read()
    return server if server is not None and not_ours(server) is None else None


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
    with FileLock(where.lock):  # another command may be starting it
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
    return server if stopped else None


def healthy(api: str, timeout: float = 2.0) -> bool:
    """Whether the Prefect API at ``api`` answers its health check."""
    return _status(f"{api}/health", None, timeout) == 200


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


def read_credential() -> str | None:
    """This home's credential, when its file is a regular file of this user's that only they
    may read (no link followed); else None."""
    try:
        fd = os.open(paths().credential, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        secret = f.read().strip()
    return secret if secret.startswith(f"{USER}:") and len(secret) > len(USER) + 16 else None


def _new_credential(where: HomePaths) -> str:
    """A new random credential, written to the home mode 0600 from its first byte."""
    secret = f"{USER}:{secrets.token_urlsafe(32)}"
    tmp = temp_path(where.credential)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, where.credential)
    finally:
        tmp.unlink(missing_ok=True)
    return secret


def private_home(where: HomePaths) -> None:
    """Make the Prefect home 0700 and the database and logs in it 0600 (what exists of them).

    Raises:
        BadInput: The home belongs to another user.
    """
    where.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.stat(where.root)
    if info.st_uid != os.getuid():
        raise BadInput(
            f"the Prefect home {where.root} belongs to another user (uid {info.st_uid}): its "
            "local server would not be yours alone; set PREFECT_HOME to a folder of your own"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(where.root, 0o700)
    for path in where.private:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(path, 0o600)


def _private_log(path: Path):
    """``path`` opened to append, created mode 0600."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")


def _start(where: HomePaths, say) -> LocalServer:
    secret = read_credential() or _new_credential(where)
    port = DEFAULT_PORT if _free(DEFAULT_PORT) else _any_free_port()
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # It asks every request but its health check for the credential; its own clients send it.
    env.update(PREFECT_SERVER_API_AUTH_STRING=secret, PREFECT_API_AUTH_STRING=secret)
    command = [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1"]
    with _private_log(where.log) as out:
        process = subprocess.Popen(
            [*command, "--port", str(port)],
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            env=env,
            start_new_session=True,  # it outlives this command and its terminal
            umask=0o077,  # its database, journals and logs are the user's alone
        )
    started = ProcessId.of(process.pid)
    server = LocalServer(
        process.pid, port, time.time(), started.start if started else "", network_namespace()
    )
    say(f"starting a local Prefect server for voxflow's runs at {server.url} ...")
    deadline = time.monotonic() + START_TIMEOUT_S
    while _refusal(server, secret, timeout=2.0) is not None:
        if started is None or process.poll() is not None or time.monotonic() > deadline:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGKILL)  # our child, not yet reaped: still it
            raise ServerFailed(
                f"the local Prefect server did not start (see {where.log}); run the command "
                "again, or start one yourself (`prefect server start`) and set PREFECT_API_URL"
            )
        time.sleep(0.5)
    write_json(where.record, asdict(server))
    private_home(where)  # what the first start created, under its umask already
    say(
        f"local Prefect server ready: its UI at {server.url} shows voxflow's runs "
        "(`voxflow server status` says how to log in); later commands reuse it"
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
