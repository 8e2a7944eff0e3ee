"""`voxflow check` trusts no file: bad times and empty cues are faults at their real lines,
every file is checked, the exit status is the worst, and --json reports for pipelines."""

from __future__ import annotations

import json

from tasks.subtitles.check import check_file
from tasks.subtitles.rules import rule_set
from tests.conftest import run_cli

BROKEN = (
    "1\n00:00:01,000 --> 00:00:03,000\nA cue that keeps every rule.\n\n"
    "2\n99:99:99,999 --> 100:00:00,000\nFields out of range.\n\n"
    "3\n00:00:05,000 --> 00:00:06,000\n\n"
    "4\n00:00:07,000 --> 00:00:06,500\nEnds before it starts.\n\n"
    "5\n00:00:08,000 --> 00:00:09,500\nOverlapping the next.\n\n"
    "6\n00:00:09,000 --> 00:00:10,500\nThe next one.\n\n"
    "7\n00:00:11,000 --> 00:00:13,000\nA minute of 60 below.\n\n"
    "8\n00:60:00,000 --> 01:00:01,000\nMinutes at sixty.\n"
)


def test_bad_times_and_empty_cues_are_faults_at_their_lines(tmp_path) -> None:
    path = tmp_path / "broken.srt"
    path.write_text(BROKEN, encoding="utf-8")
    count, found = check_file(path, rule_set("netflix-en"))
    assert count == 8
    faults = {(v.cue, v.line, v.rule) for v in found}
    assert {
        (2, 6, "timestamp"),
        (3, 10, "empty"),
        (4, 13, "timestamp"),
        (5, 17, "overlap"),
        (8, 29, "timestamp"),
    } <= faults
    assert not any(v.cue in (1, 6, 7) for v in found)
    assert BROKEN.splitlines()[5].startswith("99:99") and BROKEN.splitlines()[28].startswith(
        "00:60"
    )


def test_voxflow_check_checks_every_file_and_exits_with_the_worst(env, tmp_path) -> None:
    bad = tmp_path / "broken.srt"
    bad.write_text(BROKEN, encoding="utf-8")
    good = tmp_path / "fine.vtt"
    good.write_text("WEBVTT\n\n00:01.000 --> 00:03.500\n<v Ann>Take your time.\n")
    out = run_cli(["check", str(bad), str(good)], env, timeout=120)
    assert out.returncode == 1, out.stderr
    assert "cue 2 (line 6): '99:99:99,999' is not a time" in out.stdout
    assert "cue 3 (line 10): no text" in out.stdout
    assert "fine.vtt: 1 cues, rules netflix-en: no violations" in out.stdout
    missing = tmp_path / "missing.srt"
    out = run_cli(["check", str(missing), str(bad), str(good)], env, timeout=120)
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert out.stderr.strip().splitlines() == [
        f"voxflow: error: {missing} does not exist or is not a file; expected an .srt or .vtt file"
    ]
    assert "broken.srt: 8 cues" in out.stdout and "fine.vtt: 1 cues" in out.stdout


def test_voxflow_check_json_reports_each_file_for_pipelines(env, tmp_path) -> None:
    bad = tmp_path / "broken.srt"
    bad.write_text(BROKEN, encoding="utf-8")
    good = tmp_path / "fine.vtt"
    good.write_text("WEBVTT\n\n00:01.000 --> 00:03.500\nTake your time.\n")
    out = run_cli(["check", "--json", str(good), str(bad)], env, timeout=120)
    assert out.returncode == 1, out.stderr
    report = json.loads(out.stdout)
    assert report["exit_code"] == 1 and [f["file"] for f in report["files"]] == [
        str(good),
        str(bad),
    ]
    fine, broken = report["files"]
    assert fine["violations"] == 0 and fine["cues"] == 1
    assert broken["by_rule"]["timestamp"] == [2, 4, 8] and broken["by_rule"]["empty"] == [3]
    assert {"cue": 3, "rule": "empty", "detail": "no text: the cue shows nothing", "line": 10} in (
        broken["details"]
    )
