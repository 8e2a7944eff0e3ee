"""Long recordings in bounded memory: `voxflow transcribe` of 25 minutes takes about the peak
memory of five, because extraction and VAD stream the audio and ASR holds one batch of
windows at a time."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import SAMPLE, cli_env

pytestmark = pytest.mark.slow


def recording(minutes: int, dest: Path, every: int = 35) -> Path:
    """The sample's 27 s of speech once every ``every`` seconds over quiet pink noise, AAC in
    .m4a: five minutes of it already fill a batch of ASR windows."""
    piece = dest.with_suffix(".piece.wav")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(SAMPLE),
         "-f", "lavfi", "-t", str(every), "-i", "anoisesrc=color=pink:amplitude=0.003:r=16000",
         "-filter_complex", "[0:a]aresample=16000,pan=mono|c0=c0,apad[s];[s][1:a]amix=inputs=2:"
         "duration=shortest:normalize=0", "-ac", "1", "-ar", "16000", str(piece)],
        check=True, timeout=120,
    )  # fmt: skip
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(minutes * 60 // every - 1),
         "-i", str(piece), "-c:a", "aac", "-b:a", "32k", str(dest)],
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


def test_five_times_longer_takes_about_the_same_peak_memory(prefect_api, warm_store, tmp_path):
    env = cli_env(prefect_api, guard_log=tmp_path / "blocked.log")
    peaks = {}
    for minutes in (5, 25):
        media = recording(minutes, tmp_path / f"talk {minutes} min.m4a")
        peaks[minutes] = peak_mib(
            [sys.executable, "-m", "flows.cli", "transcribe", str(media), "--profile", "cpu",
             "--store", warm_store.root, "--output", str(tmp_path / "out"), "--format", "srt"],
            env,
        )  # fmt: skip

    # Holding the 25 minutes whole (92 MiB of float32, its features, its decoded windows at
    # once) would show; a batch of windows at a time does not grow with the length.
    assert peaks[25] <= 1.2 * peaks[5], peaks
    srt = next((tmp_path / "out").glob("talk 25 min-*/talk 25 min.srt")).read_text()
    assert srt.count(" --> ") >= 42 * 3  # every one of the 42 times the sample is spoken
