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

It does not outlive its use: a :class:`Watchdog` in its process ends it once no voxflow
process has held it for ``VOXFLOW_SERVER_IDLE_S`` (30 min; 0 keeps it up), and at once when its
home is removed or replaced or its record names another process; the next command starts it
again. Each server and runner lists itself in a per-user registry (:func:`registry`), so
``voxflow server stop --all`` ends every one of them, each checked by its process identity.
"""

from __future__ import annotations

import argparse
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
import threading
import time
import urllib.error
import urllib.request
from dataclasses import asdict, dataclass
from functools import cache
from pathlib import Path

from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from voxflow.atomic import temp_path, write_json, write_text
from voxflow.errors import BadInput, VoxflowError
from voxflow.settings import load_settings

log = logging.getLogger("voxflow.server")

ROOT = Path(__file__).resolve().parents[1]
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
    def used(self) -> Path:
        """Touched by each command that uses the server: its mtime is the last use."""
        return self.root / "voxflow-server.used"

    @property
    def users(self) -> Path:
        """A file per process that holds the server (named by its pid, holding its start time);
        the server does not end for idleness while one of them runs."""
        return self.root / "voxflow-server.users"

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
    """The Prefect home (``$PREFECT_HOME``, else ``~/.prefect``), as an absolute path."""
    return Path(os.environ.get("PREFECT_HOME") or Path.home() / ".prefect").expanduser().absolute()


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
    """Start the server's process (:func:`serve`) in the background; what its record will be."""
    env = {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"}
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")
    # It asks every request but its health check for the credential; its own clients send it.
    env.update(PREFECT_SERVER_API_AUTH_STRING=secret, PREFECT_API_AUTH_STRING=secret)
    env["PREFECT_HOME"] = str(where.root)
    # This very code runs its watchdog (the record it reads is the one this code writes).
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), env.get("PYTHONPATH")) if p)
    command = [sys.executable, "-m", "flows.server", "--port", str(port), "--idle-s", str(idle_s)]
    with _private_log(where.log) as out:
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


class Watchdog:
    """A thread in the local server's own process that ends it: at once when its Prefect home
    is removed or replaced, or its record there names another process (or cannot be read); and
    when no voxflow process has held it (:func:`hold`) for ``idle_s`` seconds (0: never).

    In the server's process rather than beside it: there is one process to identify, signal
    and wait for, nothing outlives it, and it needs no connection to the server. The runner
    could not be it: it is not always there (``VOXFLOW_RUNNER=0``, before a first command ends).
    """

    def __init__(self, where: HomePaths, me: ProcessId, idle_s: float, url: str) -> None:
        self.where, self.me, self.idle_s, self.url = where, me, idle_s, url
        self.tick = 1.0 if idle_s <= 0 else min(1.0, max(0.1, idle_s / 10))
        info = os.stat(where.root)
        self.home_id = (info.st_dev, info.st_ino)
        self.born, self.born_at = time.monotonic(), time.time()
        self.recorded = False

    def begin(self) -> None:
        """List the server in the user's registry; start watching."""
        register("server", self.me, self.where.root, url=self.url)
        threading.Thread(target=self._watch, name="voxflow-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.tick)
            try:
                why = self.reason()
            except OSError as e:  # a passing failure to read: look again at the next tick
                _say(f"the watchdog could not look ({type(e).__name__}: {e})")
                continue
            if why:
                self.end(why)
                return

    def reason(self) -> str | None:
        """Why the server is to end now; None while it is to stay."""
        root = self.where.root
        try:
            info = os.stat(root)
        except FileNotFoundError:
            return f"its Prefect home {root} was removed"
        if (info.st_dev, info.st_ino) != self.home_id:
            return f"its Prefect home {root} was replaced"
        try:
            written = os.stat(self.where.record).st_mtime
            data = json.loads(self.where.record.read_text())
            names = (data.get("pid"), data.get("start")) if isinstance(data, dict) else None
        except FileNotFoundError:
            written, names = 0.0, ()
        except ValueError:
            names = None
        if names != (self.me.pid, self.me.start):
            # The command that started it records it once it answers: until then the record
            # is the one from before it started, if any.
            if not self.recorded and (names == () or written < self.born_at):
                if time.monotonic() - self.born > START_TIMEOUT_S + 60:
                    return "the command that started it never recorded it"
                return None
            if names == ():
                return f"its record {self.where.record} was removed"
            if names is None:
                return f"its record {self.where.record} cannot be read"
            return f"its record names another process (pid {names[0]})"
        self.recorded = True
        if self.idle_s > 0 and self._idle():
            return f"no voxflow command or run used it for {duration(self.idle_s)}"
        return None

    def _idle(self) -> bool:
        """Whether no one has held it for ``idle_s``: then no command finds its record again."""

        def unused(use: Usage) -> bool:
            return not use.holders and time.time() - max(use.last_used, self.born_at) >= self.idle_s

        if not unused(usage(self.where)):
            return False
        try:  # a command holds the server before it takes the lock to look for it
            with FileLock(self.where.lock, timeout=self.tick):
                if not unused(usage(self.where, prune=True)):
                    return False
                _unlink_if_names(self.where.record, self.me)
                return True
        except FileLockTimeout:
            return False

    def end(self, why: str) -> None:
        """End the server: Prefect's own shutdown, then, should that hang, the process."""
        _say(f"the local Prefect server (pid {self.me.pid}) ends: {why}")
        self.leave()
        os.kill(self.me.pid, signal.SIGTERM)  # uvicorn shuts down in the main thread
        time.sleep(STOP_TIMEOUT_S)
        _say(f"it did not end within {STOP_TIMEOUT_S:.0f} s of SIGTERM: leaving now")
        os._exit(1)

    def leave(self) -> None:
        """Take the server's record (when it names this process) and its registry entry."""
        _unlink_if_names(self.where.record, self.me)
        unregister("server", self.me)


def _say(line: str) -> None:
    """A line in the server's log (its stderr): this process is the server's."""
    sys.stderr.write(f"voxflow: {line}\n")
    sys.stderr.flush()


def _unlink_if_names(path: Path, process: ProcessId) -> None:
    """Remove the record at ``path`` when it names ``process`` (pid and start time)."""
    try:
        data = json.loads(path.read_text())
        if isinstance(data, dict) and (data.get("pid"), data.get("start")) == (
            process.pid,
            process.start,
        ):
            path.unlink()
    except (OSError, ValueError):
        pass


def serve(argv: list[str] | None = None) -> int:
    """The local server's process: its :class:`Watchdog`, then ``prefect server start`` on
    127.0.0.1 in this process, with the environment :func:`_start` gave it."""
    parser = argparse.ArgumentParser(prog="python -m flows.server")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-s", type=float, required=True)
    options = parser.parse_args(argv)
    os.umask(0o077)  # this process owns its umask; its files are the user's alone
    where = paths()
    watchdog = Watchdog(where, ProcessId.me(), options.idle_s, f"http://127.0.0.1:{options.port}")
    watchdog.begin()
    sys.argv = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(options.port)]
    from prefect.cli import app

    try:
        app()
    finally:
        watchdog.leave()
    return 0


# ---- every server and runner of this user's -----------------------------------------------------


def registry() -> Path:
    """The folder (0700) listing the local servers and runners this user started, in any Prefect
    home: ``$XDG_RUNTIME_DIR/voxflow``, else ``~/.cache/voxflow``."""
    runtime = load_settings().runtime_dir
    base = runtime / "voxflow" if runtime else Path.home() / ".cache" / "voxflow"
    folder = base / "processes"
    folder.mkdir(parents=True, exist_ok=True, mode=0o700)
    for made in (base, folder):
        if stat.S_IMODE(os.stat(made).st_mode) != 0o700:
            os.chmod(made, 0o700)
    return folder


def register(kind: str, process: ProcessId, root: Path, **extra: str) -> None:
    """List ``process`` (a ``server`` or a ``runner`` of the home ``root``) in the registry."""
    record = {"kind": kind, "pid": process.pid, "start": process.start, "home": str(root)}
    write_json(registry() / f"{kind}-{process.pid}.json", {**record, **extra})


def unregister(kind: str, process: ProcessId) -> None:
    """Take ``process`` off the registry (when its entry names it)."""
    _unlink_if_names(registry() / f"{kind}-{process.pid}.json", process)


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
            _unlink_if_names(where.record if kind == "server" else where.runner_record, process)
            path.unlink(missing_ok=True)
    return ended


if __name__ == "__main__":
    raise SystemExit(serve())
