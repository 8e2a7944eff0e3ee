"""The processes voxflow leaves running for later commands (the local server, the runner), as
their records name them: by pid *and* start time (:class:`ProcessId`). After a reboot, or once a
process has ended, its pid may belong to any process, so nothing is signalled on a record's word
unless both still match, and a process group only when its leader is the recorded process. A
record that cannot be read names no process (one warning line).

Each such process lists itself in a per-user registry (:func:`registry`), so
``voxflow server stop --all`` ends every one of them, each checked by its identity.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import stat
import subprocess
import sys
import time
from dataclasses import dataclass
from functools import cache
from pathlib import Path

from voxflow.atomic import write_json
from voxflow.errors import VoxflowError
from voxflow.settings import load_settings

log = logging.getLogger("voxflow.server")

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


def unlink_if_names(path: Path, process: ProcessId) -> None:
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
    unlink_if_names(registry() / f"{kind}-{process.pid}.json", process)
