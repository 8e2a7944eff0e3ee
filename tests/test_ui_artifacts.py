"""What the Prefect UI's Artifacts tab shows of a run, and the bar a terminal shows (issue 21,
point 6 and the terminal half of point 2).

Real flows run against the session's real Prefect server, and their artifacts are read back
with the Prefect client: the transcript preview (languages, models with revisions, links to the
outputs, a cached rerun's real-time factor), table cells that render as the text they hold, run
ids that link to their runs, ``verified`` filled by a warm's load check. The terminal's bar is
read from a real pseudo-terminal on a `voxflow transcribe` child process.
"""

from __future__ import annotations

import json
import os
import pty
import re
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import pytest
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId
from prefect.settings import PREFECT_UI_URL
from test_ui_logs import wait_for

from blocks.volume import Volume
from blocks.volume.inventory import cache_report
from conftest import SAMPLE, cli_env
from flows.inbox.flow import inbox
from flows.transcribe import transcribe
from flows.warm_cache import warm_cache
from profiles import load_profile

pytestmark = pytest.mark.usefixtures("prefect_api")

PROFILE = "cpu-en"
"""The smallest profile (tiny.en): these tests are about what is shown, not what is heard."""

CELL_SPLIT = re.compile(r"(?<!\\)\|")
"""A Markdown table row's cell borders: the ``|`` not escaped."""


def artifacts(flow_run_id: Any, *keys: str) -> dict[str, Any]:
    """The run's artifacts by key, once every key in ``keys`` is there."""

    def find() -> dict[str, Any] | None:
        with get_client(sync_client=True) as client:
            found = client.read_artifacts(
                artifact_filter=ArtifactFilter(
                    flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])
                )
            )
        by_key = {a.key: a for a in found if a.key}
        return by_key if all(k in by_key for k in keys) else None

    return wait_for(f"artifacts {', '.join(keys)} of run {flow_run_id}", find)


def table(artifact: Any) -> list[dict[str, Any]]:
    """A table artifact's rows (the API returns its data as JSON text)."""
    return json.loads(artifact.data) if isinstance(artifact.data, str) else artifact.data


def link_to(flow_run_id: Any) -> str:
    """A Markdown link to a flow run's page in the session server's UI."""
    return f"[{flow_run_id}]({PREFECT_UI_URL.value().rstrip('/')}/runs/flow-run/{flow_run_id})"


@pytest.fixture(scope="module")
def checked_store(tmp_path_factory) -> tuple[str, Any]:
    """The cpu-en profile warmed with its offline load checks; the store and the warm's run."""
    root = str(tmp_path_factory.mktemp("models-checked"))
    state = warm_cache(profile=PROFILE, store=root, load_checks=True, return_state=True)
    assert state.is_completed(), state.message
    return root, state.state_details.flow_run_id


def test_verified_is_filled_right_after_a_warms_load_check(checked_store):
    root, run_id = checked_store
    found = artifacts(run_id, f"model-cache-report-{PROFILE}", f"model-cache-{PROFILE}")

    report = table(found[f"model-cache-report-{PROFILE}"])
    assert {r["model"] for r in report} == {"faster-whisper-tiny.en", "silero-vad-v6"}
    for row in report:
        assert row["state"] == "warmed", row
        assert re.fullmatch(r"ok, loads offline \d{4}-\d\d-\d\dT[\d:]+\+00:00", row["verified"])
        assert row["missing"] == "—", row  # nothing missing: an em dash, never a bullet's "-"
    warmed = table(found[f"model-cache-{PROFILE}"])
    assert all(r["load_check"].startswith("ok (") for r in warmed), warmed

    # `voxflow cache report` reads the same record: the next report shows it too
    again = cache_report(Volume(root=root), load_profile(PROFILE)).rows()
    assert [r["verified"] for r in again] == [r["verified"] for r in report]


def test_the_preview_names_languages_and_models_and_links_outputs(checked_store, tmp_path):
    root, _ = checked_store
    media = tmp_path / "-take_1 | final.mp4"  # a list marker, emphasis and a cell border
    media.write_bytes(SAMPLE.read_bytes())
    run = dict(profile=PROFILE, store=root, output_dir=str(tmp_path / "out"), return_state=True)
    first = transcribe(str(media), **run)
    assert first.is_completed(), first.message
    record = first.result()
    preview = artifacts(first.state_details.flow_run_id, "transcript-preview")
    text = preview["transcript-preview"].data

    assert text.startswith("# \\-take\\_1 \\| final.mp4\n")
    assert f"Language heard: en ({record['languages']['en']:.1f} s)" in text
    assert {"asr", "vad"} <= set(record["models"])
    for stage, model in record["models"].items():
        row = f"| {stage} | {model['model']} | {model['backend']} | {model['revision']} |"
        assert row in text, (row, text)
    assert record["outputs"]
    lines = [line.rstrip() for line in text.splitlines()]  # a line's hard break is two spaces
    for path in record["outputs"].values():  # one link a line, the full path its text
        shown = path.replace("_", "\\_").replace("|", "\\|")
        assert f"[{shown}]({Path(path).as_uri()})" in lines, (path, text)
    for line in text.splitlines():
        assert not re.match(r"\s*[-*+]\s", line), f"a line that renders as a bullet: {line!r}"
        if line.startswith("|"):  # every row of a table has its header's cells
            assert len(CELL_SPLIT.split(line)) in (5, 6), line

    again = transcribe(str(media), **run)
    assert again.is_completed(), again.message
    rerun = again.result()
    assert rerun["cached"] and all(s["cached"] for s in rerun["stages"].values())
    assert rerun["real_time_factor"] == record["real_time_factor"] > 0
    shown = artifacts(again.state_details.flow_run_id, "transcript-preview")
    assert f"real-time factor {record['real_time_factor']} (cached:" in (
        shown["transcript-preview"].data
    )


def test_the_inbox_table_links_its_runs_and_shows_names_as_they_are(checked_store, tmp_path):
    root, _ = checked_store
    box = tmp_path / "inbox"
    box.mkdir()
    (box / "#1 - take_2.mp4").write_bytes(SAMPLE.read_bytes())  # a heading and emphasis
    state = inbox(
        str(box), profile=PROFILE, output_dir=str(tmp_path / "out"), store=root, min_age_s=0,
        return_state=True,
    )  # fmt: skip
    assert state.is_completed(), state.message
    assert state.result()["done"] == ["#1 - take_2.mp4"]
    run_id = state.state_details.flow_run_id

    found = artifacts(run_id, f"inbox-{PROFILE}")[f"inbox-{PROFILE}"]
    [row] = table(found)
    assert row["file"] == "\\#1 - take\\_2.mp4"
    assert row["claimed by"] == link_to(run_id)
    assert row["outcome"] == "done" and row["note"] == "—"
    assert link_to(run_id) in found.description


def test_a_command_on_a_terminal_draws_one_bar_and_elsewhere_logs_lines(
    checked_store, prefect_api, tmp_path
):
    root, _ = checked_store
    env = cli_env(prefect_api, guard_log=tmp_path / "blocked.log", NO_COLOR="1")
    args = ["transcribe", str(SAMPLE), "--profile", PROFILE, "--store", root]

    on_terminal = on_a_terminal([*args, "--output", str(tmp_path / "tty")], env)
    bars = re.findall(r"\rasr · sample\.mp4 \[[#-]{24}\] +(\d+)% \(", on_terminal)
    assert bars and bars[-1] == "100", on_terminal
    assert "asr · sample.mp4: 100%" not in on_terminal  # the bar replaces the 10 % lines

    piped = subprocess.run(
        [sys.executable, "-m", "flows.cli", *args, "--output", str(tmp_path / "pipe")],
        env=env, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert piped.returncode == 0, piped.stderr
    assert "asr · sample.mp4: 100% (" in piped.stderr and "\r" not in piped.stderr


def on_a_terminal(args: list[str], env: dict[str, str], timeout: float = 300) -> str:
    """Run `voxflow ARGS` with its stderr on a pseudo-terminal; what the terminal received."""
    leader, follower = pty.openpty()
    received: list[bytes] = []

    def read() -> None:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: every end of the terminal's other side is closed
                return
            if not chunk:
                return
            received.append(chunk)

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    try:
        done = subprocess.run(
            [sys.executable, "-m", "flows.cli", *args],
            env=env, stdout=subprocess.PIPE, stderr=follower, timeout=timeout,
        )  # fmt: skip
    finally:
        os.close(follower)
    reader.join(timeout=30)
    os.close(leader)
    said = b"".join(received).decode("utf-8", "replace")
    assert done.returncode == 0, said
    return said
