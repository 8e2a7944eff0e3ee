"""Local Prefect servers and runners the tests start in temporary Prefect homes, as a user's
`voxflow` commands start them, and the check that none outlives its test.

Each test gets its own Prefect home and its own per-user registry (``XDG_RUNTIME_DIR``), so
`voxflow server stop --all` in its teardown ends what that test started and nothing else; every
process the registry listed is then awaited gone by its process identity (pid and start time),
and one still running fails the test, after being killed.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import time
from pathlib import Path

from conftest import cli_env, run_cli
from flows.cli.processes import ProcessId


def local_env(folder: Path, **extra: str) -> dict[str, str]:
    """A `voxflow` child's environment for the local server: no ``PREFECT_API_URL``, the
    Prefect home ``folder/home``, the registry under ``folder/runtime``, the offline guard."""
    env = cli_env("", guard_log=folder / "blocked.log")
    env.pop("PREFECT_API_URL")
    env.pop("PREFECT_API_AUTH_STRING", None)
    runtime = folder / "runtime"
    runtime.mkdir(mode=0o700, exist_ok=True)
    env.update(PREFECT_HOME=str(folder / "home"), XDG_RUNTIME_DIR=str(runtime), **extra)
    return env


def in_home(env: dict[str, str], home: Path, **extra: str) -> dict[str, str]:
    """``env`` with another Prefect home (the same registry)."""
    return {**env, "PREFECT_HOME": str(home), **extra}


def registry(env: dict[str, str]) -> Path:
    """The folder where the servers and runners started with ``env`` list themselves."""
    return Path(env["XDG_RUNTIME_DIR"]) / "voxflow" / "processes"


def registered(env: dict[str, str]) -> list[ProcessId]:
    """The processes the registry lists (servers and runners, running or not)."""
    found = []
    for path in sorted(registry(env).glob("*.json")) if registry(env).is_dir() else []:
        try:
            entry = json.loads(path.read_text())
            found.append(ProcessId(entry["pid"], entry["start"]))
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return found


def server_record(home: Path) -> dict:
    """The local server's record in ``home``."""
    return json.loads((home / "voxflow-server.json").read_text())


def server_process(home: Path) -> ProcessId:
    """The process the local server's record in ``home`` names."""
    record = server_record(home)
    return ProcessId(record["pid"], record["start"])


def write_server_record(home: Path, process: ProcessId, port: int) -> None:
    """A server record in ``home`` naming ``process`` at ``port`` in this network namespace."""
    record = {
        "pid": process.pid,
        "start": process.start,
        "port": port,
        "started_at": time.time(),
        "netns": os.stat("/proc/self/ns/net").st_ino if os.path.exists("/proc/self") else None,
        "idle_s": 1800.0,
    }
    (home / "voxflow-server.json").write_text(json.dumps(record))


def write_credential(home: Path) -> str:
    """A credential for ``home``, as a server it started before left it (mode 0600)."""
    secret = f"voxflow:{secrets.token_urlsafe(32)}"
    path = home / "voxflow-server.credential"
    path.write_text(secret + "\n")
    path.chmod(0o600)
    return secret


def hold(home: Path, process: ProcessId) -> None:
    """Count ``process`` as a voxflow process that holds the server of ``home``."""
    users = home / "voxflow-server.users"
    users.mkdir(mode=0o700, exist_ok=True)
    (users / str(process.pid)).write_text(process.start)


def gone(process: ProcessId, timeout: float) -> bool:
    """Whether ``process`` has ended within ``timeout`` seconds (polled, by its identity)."""
    deadline = time.monotonic() + timeout
    while process.running():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def leave_nothing(env: dict[str, str]) -> None:
    """Stop every server and runner started with ``env`` (`voxflow server stop --all`), await
    each gone; kill any left and fail, naming them."""
    listed = registered(env)
    stopped = run_cli(["server", "stop", "--all"], env, timeout=180)
    left = [process for process in listed if not gone(process, 60)]
    for process in left:
        process.signal(signal.SIGKILL, group=True)
    assert not left, f"left running: {left}\n{stopped.stdout}{stopped.stderr}" + "".join(
        f"\n--- {log}:\n{log.read_text(errors='replace')[-3000:]}"
        for home in {Path(env["PREFECT_HOME"])}
        for log in home.glob("voxflow-*.log")
    )
