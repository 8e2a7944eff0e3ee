"""The nightly self-test: each stage of the profile on the bundled sample, timed against the
host's last runs; a stage markedly slower on a busy machine fails the run naming it and the host."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterKey
from prefect.client.schemas.sorting import ArtifactSort

from flows.self_test import Regression, self_test


@contextmanager
def busy_machine() -> Iterator[None]:
    """Six busy processes per core while the block runs: whatever else runs on the machine, a
    stage gets a small share of it."""
    processes = 6 * (os.cpu_count() or 2)
    hogs = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(processes)]
    time.sleep(0.5)  # they are running before the night starts
    try:
        yield
    finally:
        for hog in hogs:
            hog.kill()
            hog.wait()


def latest_rows() -> list[dict]:
    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(key=ArtifactFilterKey(any_=["self-test-cpu"])),
            sort=ArtifactSort.CREATED_DESC,
            limit=1,
        )
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


@pytest.mark.usefixtures("prefect_api")
def test_a_stage_slowed_by_a_busy_machine_fails_the_night_naming_stage_and_host(warm_store):
    host = socket.gethostname()

    first = self_test(profile="cpu", store=warm_store.root)

    assert [r["stage"] for r in first] == ["extract", "shots", "vad", "asr", "guard"]
    assert all(r["host"] == host and r["verdict"] == "first run" for r in first), first
    assert all(r["rtf"] > 0 and r["peak_mib"] > 50 for r in first), first
    assert latest_rows() == first

    with busy_machine(), pytest.raises(Regression, match=rf"asr on {host} ran at real-time"):
        self_test(profile="cpu", store=warm_store.root)
    slow = {r["stage"]: r for r in latest_rows()}
    assert slow["asr"]["verdict"] == "regression" and slow["asr"]["slower_by_pct"] > 25
    assert slow["asr"]["runs_compared"] == 1

    quiet = self_test(profile="cpu", store=warm_store.root)  # the median of two nights now
    assert {r["verdict"] for r in quiet} == {"ok"}, quiet
    assert {r["runs_compared"] for r in quiet} == {2}
