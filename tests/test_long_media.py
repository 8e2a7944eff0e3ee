"""Long recordings in bounded memory: `voxflow transcribe` of an hour takes about the peak
memory of five minutes, because extraction, VAD and ASR stream the audio."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE, cli_env

pytestmark = pytest.mark.slow


def recording(minutes: int, dest: Path) -> Path:
    """The sample's speech once every five minutes over quiet pink noise, AAC in .m4a."""
    piece = dest.with_suffix(".piece.wav")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(SAMPLE),
         "-f", "lavfi", "-t", "300", "-i", "anoisesrc=color=pink:amplitude=0.003:r=16000",
         "-filter_complex", "[0:a]aresample=16000,pan=mono|c0=c0,apad[s];[s][1:a]amix=inputs=2:"
         "duration=shortest:normalize=0", "-ac", "1", "-ar", "16000", str(piece)],
        check=True, timeout=120,
    )  # fmt: skip
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(minutes // 5 - 1), "-i", str(piece),
         "-c:a", "aac", "-b:a", "32k", str(dest)],
        check=True, timeout=300,
    )  # fmt: skip
    return dest


def peak_mib(args: list[str], env: dict[str, str]) -> float:
    """Run a command to its end; the kernel's peak resident memory of it, in MiB."""
    proc = subprocess.Popen(args, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    _, status, usage = os.wait4(proc.pid, 0)
    output = proc.stdout.read().decode(errors="replace")
    assert os.waitstatus_to_exitcode(status) == 0, output[-3000:]
    return usage.ru_maxrss / 1024


def test_an_hour_takes_about_the_memory_of_five_minutes(prefect_api, warm_store, tmp_path):
    env = cli_env(prefect_api, guard_log=tmp_path / "blocked.log")
    peaks = {}
    for minutes in (5, 60):
        media = recording(minutes, tmp_path / f"talk {minutes} min.m4a")
        peaks[minutes] = peak_mib(
            [sys.executable, "-m", "flows.cli", "transcribe", str(media), "--profile", "cpu",
             "--store", warm_store.root, "--output", str(tmp_path / "out"), "--format", "srt"],
            env,
        )  # fmt: skip

    # The hour's 16 kHz audio alone is 220 MiB as float32: holding it would show.
    assert peaks[60] <= 1.2 * peaks[5], peaks
    srt = next((tmp_path / "out").glob("talk 60 min-*/talk 60 min.srt")).read_text()
    assert srt.count(" --> ") >= 12 * 3  # the speech of every five minutes has its cues
