"""One run per job folder at a time: a second run of the same file into the same output waits
for the first, says once for which process, and then reuses the first's stages."""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path

from conftest import ROOT, SAMPLE, no_network_used
from tasks.job import LOCK, hold_job, open_job

WAITING = "waiting for another run of this file"

HOLDER = """
import sys
from tasks.job import hold_job, open_job
job = open_job(sys.argv[1], sys.argv[2])
lock = hold_job(job)  # held while this process lives
print("held", flush=True)
sys.stdin.read()
"""


def await_true(condition: Callable[[], bool], what: str, timeout: float = 180) -> None:
    """Return once ``condition()`` holds; fail naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up after {timeout:.0f} s waiting for {what}")
        time.sleep(0.1)


class Lines(logging.Handler):
    """The messages one logger emits, from any thread."""

    def __init__(self) -> None:
        super().__init__()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())


def test_a_run_waits_for_the_holder_and_takes_the_lock_once_its_process_is_killed(tmp_path):
    """Another process holds the job folder (as a run does); this run waits, says once which
    process it waits for, and goes on as soon as that process is killed: a killed run never
    wedges the next."""
    media = tmp_path / "talk.mp4"
    media.write_bytes(SAMPLE.read_bytes())
    out = tmp_path / "out"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(media), str(out)],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    lines, logger = Lines(), logging.getLogger("tasks.job")
    level = logger.level
    logger.addHandler(lines)
    logger.setLevel(logging.INFO)
    try:
        assert holder.stdout.readline() == "held\n"
        with open_job(media, out) as job:
            held: list[object] = []
            waiter = threading.Thread(target=lambda: held.append(hold_job(job)), daemon=True)
            waiter.start()
            await_true(lambda: any(WAITING in m for m in lines.messages), "the waiting line", 60)
            assert waiter.is_alive() and not held
            holder.kill()
            waiter.join(timeout=60)
            assert held, "the lock was not taken after its holder was killed"
            waits = [m for m in lines.messages if WAITING in m]
            assert len(waits) == 1, waits
            assert f"(process {holder.pid} on " in waits[0]
            lock = job.records / LOCK
            assert lock.read_text().startswith(f"process {os.getpid()} on ")
            held[0].close()
    finally:
        logger.removeHandler(lines)
        logger.setLevel(level)
        holder.kill()
        holder.wait(timeout=30)


def test_two_commands_on_one_file_into_one_output_run_its_stages_once(env, warm_store, tmp_path):
    """Two `voxflow transcribe` of the sample into one output, the second started while the
    first holds the job folder (stopped there, so the overlap does not depend on timing): the
    second says once that it waits for the first's process, then finds every stage done (no
    second ASR) and writes the same transcript."""
    out = tmp_path / "out"
    args = ["transcribe", str(SAMPLE), "--profile", "cpu", "--store", warm_store.root]
    args += ["--output", str(out)]
    env = {**env, "VOXFLOW_RUNNER": "0"}
    first, said_first = start(args, env, tmp_path / "first.log")
    second = None
    try:
        await_true(lambda: "extract: done" in said_first(), "the first run's extract")
        first.send_signal(signal.SIGSTOP)  # it holds the job folder from before extract
        second, said_second = start(args, env, tmp_path / "second.log")
        await_true(lambda: WAITING in said_second(), "the second run to say it waits")
        first.send_signal(signal.SIGCONT)
        assert first.wait(timeout=300) == 0, said_first()
        [job] = out.iterdir()
        asr = job / "records" / "stages" / "asr.json"
        written = asr.stat().st_mtime_ns
        assert second.wait(timeout=300) == 0, said_second()
    finally:
        for process in (first, second):
            if process is not None and process.poll() is None:
                process.send_signal(signal.SIGCONT)
                process.kill()
                process.wait(timeout=30)

    waits = [line for line in said_second().splitlines() if WAITING in line]
    assert len(waits) == 1, waits
    assert f"(process {first.pid} on " in waits[0]
    assert "asr: done" in said_first()
    assert "asr: cached" in said_second() and "asr: done" not in said_second()
    record = json.loads((job / "records" / "run.json").read_text())
    assert record["stages"] and all(s["cached"] for s in record["stages"].values()), record
    assert asr.stat().st_mtime_ns == written, "the second run wrote the ASR record again"
    assert next(job.glob("*.txt")).read_text().strip()
    assert no_network_used(tmp_path)


def start(
    args: list[str], env: dict[str, str], log: Path
) -> tuple[subprocess.Popen[bytes], Callable[[], str]]:
    """Start `voxflow ARGS` writing its stdout and stderr to ``log``; return the process and a
    function that reads what it has said so far."""
    with log.open("wb") as sink:
        process = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", *args], env=env, stdout=sink, stderr=sink
        )
    return process, lambda: log.read_text(errors="replace")
