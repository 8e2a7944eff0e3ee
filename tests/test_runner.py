"""The local runner: a later `voxflow transcribe` runs in a process that has Prefect imported and
the models loaded, with the caller's folder, environment, output, exit code and Ctrl-C."""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from conftest import SAMPLE, cli_env, no_network_used, run_cli
from flows.cli import runner


def _runner_line(env: dict[str, str]) -> str:
    status = run_cli(["server", "status"], env)
    return status.stdout.strip().splitlines()[-1] if status.returncode == 0 else ""


def _wait_for_runner(env: dict[str, str], other_than: str = "") -> str:
    """The runner's status line once one is ready, its models loaded, and answers at its socket
    (and is not the one named ``other_than``)."""
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        line = _runner_line(env)
        ready = line.startswith("local runner (pid") and line.endswith("; it answers")
        if ready and (not other_than or other_than not in line):
            return line
        time.sleep(1)
    raise AssertionError(f"no local runner came up: {line!r}")


def _pid(line: str) -> str:
    return re.search(r"\(pid (\d+)\)", line).group(1)


def test_a_later_command_runs_in_the_local_runner_as_it_would_in_its_own_process(
    warm_store, tmp_path
):
    """No PREFECT_API_URL: the first command runs in its own process and leaves a runner with
    its models loaded; the next ones, from another folder with relative paths and an odd file
    name, run there: same transcript, their runs in the local UI, bad input refused in one line,
    Ctrl-C interrupting the run and the next command resuming it. A command with other
    thread settings runs in its own process and replaces the runner."""
    env = cli_env("", guard_log=tmp_path / "blocked.log")
    env.pop("PREFECT_API_URL")
    env["PREFECT_HOME"] = str(tmp_path / "prefect-home")
    store = warm_store.root
    try:
        first = run_cli(
            ["transcribe", str(SAMPLE), "--profile", "cpu", "--store", store, "--output",
             str(tmp_path / "first")], env,
        )  # fmt: skip
        assert first.returncode == 0, first.stderr
        line = _wait_for_runner(env)
        assert "vad:silero, asr:faster-whisper loaded, 0 command(s) run" in line, line

        folder = tmp_path / "a folder (2)"
        folder.mkdir()
        (folder / "talk [final].mp4").write_bytes(SAMPLE.read_bytes())
        second = run_cli(
            ["transcribe", "talk [final].mp4", "--profile", "cpu", "--store", store, "--output",
             "out"], env, cwd=folder,
        )  # fmt: skip
        assert second.returncode == 0, second.stderr
        assert "talk [final].mp4: 27.0 s of audio" in second.stdout
        assert re.search(r"View at http://127\.0\.0\.1:\d+/runs/flow-run/", second.stderr)
        texts = [next(p.glob("*/*.txt")).read_text() for p in (tmp_path / "first", folder / "out")]
        assert texts[0] == texts[1] and texts[0].strip()
        line = _runner_line(env)
        assert "1 command(s) run" in line, line
        log = (tmp_path / "prefect-home" / "voxflow-runner.log").read_text()
        assert "ran `voxflow transcribe talk [final].mp4 --profile cpu" in log

        missing = run_cli(["transcribe", "nowhere.mp4", "--store", store], env, cwd=folder)
        assert missing.returncode == 2
        assert missing.stderr.strip().splitlines() == [
            "voxflow: error: media file not found: nowhere.mp4 (expected an existing audio or "
            "video file)"
        ]
        assert "2 command(s) run" in _runner_line(env)

        # Ctrl-C once its ASR has begun: the run stops there; the next command resumes it.
        long = folder / "long.mp4"
        subprocess.run(
            ["ffmpeg", "-v", "error", "-stream_loop", "9", "-i", str(SAMPLE), "-c", "copy",
             str(long)], check=True,
        )  # fmt: skip
        args = ["transcribe", "long.mp4", "--profile", "cpu", "--store", store, "--output", "out"]
        command = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args],
            env=env,
            cwd=folder,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        said = []
        for said_line in command.stderr:
            said.append(said_line)
            if "vad: done" in said_line:
                command.send_signal(signal.SIGINT)
                break
        said += command.stderr.readlines()
        assert command.wait(timeout=120) == 1, "".join(said)
        assert "voxflow: interrupted; run the same command again to resume" in "".join(said)
        assert "Traceback" not in "".join(said)
        again = run_cli(args, env, cwd=folder)
        assert again.returncode == 0, again.stderr
        assert "vad: cached" in again.stderr
        line = _runner_line(env)
        assert "4 command(s) run" in line, line

        # Thread settings are read when the libraries load: not the runner's, so not there.
        threads = run_cli(args, {**env, "OMP_NUM_THREADS": "1"}, cwd=folder)
        assert threads.returncode == 0, threads.stderr
        replaced = _wait_for_runner(env, other_than=f"(pid {_pid(line)})")
        assert "0 command(s) run" in replaced, replaced
    finally:
        stopped = run_cli(["server", "stop"], env)
    assert "stopped the local runner (pid" in stopped.stdout, stopped.stdout + stopped.stderr
    status = Path(f"/proc/{_pid(stopped.stdout)}/status")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline and status.exists() and "zombie" not in status.read_text():
        time.sleep(0.2)
    assert not status.exists() or "zombie" in status.read_text()
    assert no_network_used(tmp_path)


def test_what_the_libraries_read_at_import_decides_the_runner_not_the_rest_of_the_environment():
    base = {"PATH": "/usr/bin", "HOME": "/home/u", "PREFECT_HOME": "/tmp/p"}
    same = runner.fingerprint(base)
    assert runner.fingerprint({**base, "TERM": "xterm", "PWD": "/elsewhere"}) == same
    assert runner.fingerprint({**base, "PREFECT_API_URL": "http://127.0.0.1:1/api"}) == same
    for differs in ("OMP_NUM_THREADS", "PREFECT_LOGGING_LEVEL", "HF_HOME", "PYTHONPATH"):
        assert runner.fingerprint({**base, differs: "1"}) != same, differs


def test_commands_other_than_transcribe_and_subtitle_and_help_run_in_their_own_process():
    for argv in (["warm"], ["server", "status"], ["transcribe", "--help"], ["profiles"]):
        assert runner.forward(argv) is None, argv
