"""The test session lists its local servers and runners in a registry of its own, inside its
temporary area, and stops (and names) any that a registry there still lists at its end: the
user's own servers are never listed beside the tests', nor stopped by them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from conftest import ROOT, registries_under, stop_left_running
from flows.cli.processes import ProcessId


@pytest.fixture
def sleeper() -> Iterator[subprocess.Popen]:
    """A process that is no server of voxflow's, which a registry entry may name."""
    process = subprocess.Popen(["sleep", "600"])
    try:
        yield process
    finally:
        process.kill()
        process.wait()


def test_the_sessions_registry_is_in_its_temporary_area(session_registry, tmp_path_factory):
    """What voxflow (here and in a child the tests start) takes as the per-user registry is the
    session's, in its temporary folder: not ``~/.cache/voxflow``, nor the user's runtime
    folder."""
    from flows.cli.processes import registry

    base = tmp_path_factory.getbasetemp().resolve()
    assert registry().resolve() == session_registry.resolve()
    assert session_registry.resolve().is_relative_to(base)
    child = subprocess.run(
        [sys.executable, "-c", "from flows.cli.processes import registry; print(registry())"],
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert Path(child.stdout.strip()).resolve() == session_registry.resolve()
    assert not session_registry.resolve().is_relative_to(Path.home() / ".cache")


def test_what_a_registry_there_still_lists_is_stopped_and_named(tmp_path, sleeper):
    """A runner a test's own registry lists that still runs is ended and named; an entry whose
    pid is another process now (another start time) is dropped and that process left alone."""
    listed = subprocess.Popen(["sleep", "600"])
    try:
        process = ProcessId.of(listed.pid)
        assert process is not None
        folder = tmp_path / "runtime" / "voxflow" / "processes"
        folder.mkdir(parents=True)
        home = tmp_path / "home"
        entries = {
            f"runner-{listed.pid}.json": {"pid": listed.pid, "start": process.start},
            f"server-{sleeper.pid}.json": {"pid": sleeper.pid, "start": "not-its-start"},
        }
        for name, entry in entries.items():
            kind = name.partition("-")[0]
            (folder / name).write_text(json.dumps({"kind": kind, "home": str(home), **entry}))

        assert registries_under(tmp_path) == [tmp_path / "runtime"]
        assert stop_left_running(tmp_path) == [
            f"stopped the local runner (pid {listed.pid}) of {home}"
        ]
        assert listed.wait(timeout=30) == -15
        assert sleeper.poll() is None
        assert list(folder.iterdir()) == []
    finally:
        listed.kill()
        listed.wait()
