"""The local runner runs a command on its caller's behalf: the files it writes get the caller's
umask, as they would in the caller's own process."""

from __future__ import annotations

import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import SAMPLE, no_network_used, run_cli

pytestmark = pytest.mark.slow


def _runner_line(env: dict[str, str]) -> str:
    status = run_cli(["server", "status"], env)
    return status.stdout.strip().splitlines()[-1] if status.returncode == 0 else ""


def _modes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): oct(stat.S_IMODE(p.stat().st_mode))
        for p in sorted(folder.rglob("*"))
    }


def test_a_file_written_through_the_runner_under_umask_077_is_0600(warm_store, local, tmp_path):
    args = ["transcribe", str(SAMPLE), "--profile", "cpu", "--store", warm_store.root]
    first = run_cli([*args, "--output", str(tmp_path / "first")], local)
    assert first.returncode == 0, first.stderr
    deadline = time.monotonic() + 180
    while "0 command(s) run" not in (line := _runner_line(local)):
        assert time.monotonic() < deadline, f"no local runner came up: {line!r}"
        time.sleep(1)

    def through_the_runner(umask: str, output: Path) -> dict[str, str]:
        command = [sys.executable, "-m", "flows.cli", *args, "--output", str(output)]
        done = subprocess.run(
            ["sh", "-c", f'umask {umask} && exec "$@"', "sh", *command],
            env=local, capture_output=True, text=True, timeout=300,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr
        modes = _modes(output)
        assert any(name.endswith("sample.srt") for name in modes), modes
        return modes

    private = tmp_path / "private"
    modes = through_the_runner("077", private)
    assert "1 command(s) run" in _runner_line(local)  # it ran in the runner
    assert modes == {name: "0o700" if (private / name).is_dir() else "0o600" for name in modes}

    # Not the runner's own umask (077 too): the caller's, whatever it is.
    shared = tmp_path / "shared"
    modes = through_the_runner("022", shared)
    assert "2 command(s) run" in _runner_line(local)
    assert modes == {name: "0o755" if (shared / name).is_dir() else "0o644" for name in modes}
    assert no_network_used(tmp_path)
