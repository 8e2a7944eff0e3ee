"""Real processes on loopback for the end-to-end tests: PostgreSQL, a Prefect server, a worker.

Each is started the way an operator would start it (`prefect server start`, `pg_ctl start`,
`prefect worker start`), bound to 127.0.0.1 on a free port, and stopped with its whole process
group. Python children get the offline guard through ``cli_env``.
"""

from __future__ import annotations

import glob
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

PREFECT = [sys.executable, "-m", "prefect"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _tail(path: Path, lines: int = 40) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@contextmanager
def process(
    args: list[str], env: dict[str, str], log: Path, cwd: Path
) -> Iterator[subprocess.Popen]:
    """Run a long-lived child in its own process group; stop the group on exit."""
    with open(log, "ab") as out:
        proc = subprocess.Popen(
            args, env=env, cwd=cwd, stdout=out, stderr=subprocess.STDOUT, start_new_session=True
        )
    try:
        yield proc
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


def wait_for(url: str, proc: subprocess.Popen, log: Path, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args} exited with {proc.returncode}:\n{_tail(log)}")
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            time.sleep(0.5)
    pytest.fail(f"{url} did not answer within {timeout:.0f} s:\n{_tail(log)}")


@contextmanager
def prefect_server(
    home: Path, env: dict[str, str], port: int | None = None
) -> Iterator[tuple[str, dict[str, str]]]:
    """`prefect server start` on a loopback port (a free one unless given); yields (API URL,
    env for clients).

    ``env`` may carry ``PREFECT_API_DATABASE_CONNECTION_URL``; SQLite in ``home`` otherwise, so
    a server started again on the same home and port is the same server after a restart.
    The scheduler is off so the deployments' schedules add no runs while a test runs.
    """
    port = port or free_port()
    api = f"http://127.0.0.1:{port}/api"
    env = {
        **env,
        "PREFECT_HOME": str(home),
        "PREFECT_API_URL": api,
        "PREFECT_SERVER_SERVICES_SCHEDULER_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "PREFECT_UI_SHOW_PROMOTIONAL_CONTENT": "false",
    }
    log = home / "server.log"
    args = [*PREFECT, "server", "start", "--host", "127.0.0.1", "--port", str(port)]
    with process(args, env, log, home) as proc:
        wait_for(f"{api}/health", proc, log)
        yield api, env


@contextmanager
def prefect_worker(
    pool: str, env: dict[str, str], home: Path, name: str | None = None, limit: int | None = None
) -> Iterator[subprocess.Popen]:
    """`prefect worker start --pool POOL [--limit N]`, polling every second, from outside the
    checkout."""
    env = {**env, "PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    name = name or f"{pool}-test"
    args = [*PREFECT, "worker", "start", "--pool", pool, "--name", name]
    if limit is not None:
        args += ["--limit", str(limit)]
    with process(args, env, home / f"worker-{name}.log", home) as proc:
        yield proc


def _pg_bin(name: str) -> str:
    found = shutil.which(name) or next(
        iter(sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), reverse=True)), None
    )
    if found is None:
        pytest.fail(f"{name} is missing: run scripts/system-deps.sh (apt-get install postgresql)")
    return found


@contextmanager
def postgres() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a loopback port; yields an asyncpg URL.

    As root the cluster runs as the ``postgres`` user (the server refuses root), so it lives
    under a fresh folder in the system temp dir rather than root's private pytest folder.
    """
    as_user: list[str] = []
    folder = Path(tempfile.mkdtemp(prefix="voxflow-pg-"))
    if os.geteuid() == 0:
        shutil.chown(folder, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    data, port = folder / "data", free_port()
    try:
        subprocess.run(
            [*as_user, _pg_bin("initdb"), "-D", str(data), "-A", "trust", "-U", "postgres",
             "--no-sync", "-E", "UTF8"],
            check=True, capture_output=True, timeout=120,
        )  # fmt: skip
        options = f"-F -p {port} -k {folder} -c listen_addresses=127.0.0.1"
        subprocess.run(
            [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-l", str(folder / "pg.log"),
             "-o", options, "-w", "-t", "60", "start"],
            check=True, capture_output=True, timeout=90,
        )  # fmt: skip
        try:
            yield f"postgresql+asyncpg://postgres@127.0.0.1:{port}/postgres"
        finally:
            subprocess.run(
                [*as_user, _pg_bin("pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                capture_output=True, timeout=60,
            )  # fmt: skip
    finally:
        shutil.rmtree(folder, ignore_errors=True)
