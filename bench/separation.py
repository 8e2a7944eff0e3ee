"""Separation: real-time factor and peak memory of voxflow's Demucs stage against bare demucs.

No Demucs weights are reachable here, so the models are random, in the library's own checkpoint
format: a tiny HTDemucs (what the tests use) and a full-size HTDemucs with htdemucs' settings
(``dconv_mode=3, bottom_channels=512``, 7.8 s segment: 42.0 M parameters, the size of the
official 81 MB half-precision checkpoint, so the same compute). Each measurement runs in its own
child process, so peak RSS (``ru_maxrss``) belongs to that one job:

* voxflow: ``DemucsSeparator.separate_file`` on the 16 kHz mono WAV, window by window;
* bare demucs: what ``demucs.separate`` does with a track: the whole recording as one 44.1 kHz
  stereo tensor, normalised, ``apply_model(split=True)`` (its own segmenting), the vocals stem
  mixed down and resampled back to 16 kHz in one piece.

Runs are repeated (``--repeat``), interleaved in alternating order, and the median time and
the largest memory growth are reported. Model loading is excluded from the times; "growth" is
peak RSS minus RSS after loading and separating one second (first-call allocations: kernels,
thread pools), i.e. what separating this recording needed on top. The input is a synthetic
recording (tones, noise bursts; compute does not depend on content).

Usage::

    .venv/bin/python bench/separation.py [--minutes 5] [--window-s 60] [--full-seconds 30]
        [--repeat 3]

``--full-seconds 0`` skips the full-size model. Results go to ``bench/out/separation.json``.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/separation.py` from anywhere
    sys.path.insert(0, str(ROOT))

OUT = HERE / "out"
RESULT = OUT / "separation.json"
SR = 16_000
SOURCES = ["drums", "bass", "other", "vocals"]


def _rss_kb() -> int:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def make_recording(path: Path, seconds: float) -> None:
    """Tones and noise bursts, written a minute at a time."""
    rng = np.random.default_rng(7)
    with wave.open(str(path), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        done = 0
        total = int(seconds * SR)
        while done < total:
            n = min(60 * SR, total - done)
            t = (done + np.arange(n)) / SR
            tone = 0.2 * np.sin(2 * np.pi * (180 + 40 * np.sin(t / 3)) * t)
            burst = (np.sin(2 * np.pi * t / 5) > 0.6) * 0.1 * rng.standard_normal(n)
            f.writeframes((np.clip(tone + burst, -1, 1) * 32767).astype("<i2").tobytes())
            done += n


def make_model(kind: str, folder: Path) -> None:
    """A random-weight HTDemucs as a Demucs repository folder (``<name>.yaml`` + ``.th``)."""
    from fractions import Fraction

    import torch
    from demucs.htdemucs import HTDemucs

    from tasks.separate.demucs import save_repository

    torch.manual_seed(0)
    if kind == "tiny":
        model = HTDemucs(
            sources=SOURCES, channels=4, depth=2, nfft=1024, t_layers=0, dconv_mode=0, segment=4
        )
    else:  # htdemucs' architecture (demucs/grids/mmi.py): 42.0 M parameters, like its 81 MB .th
        model = HTDemucs(
            sources=SOURCES, dconv_mode=3, bottom_channels=512, segment=Fraction(39, 5)
        )
    save_repository(folder, kind, [model])


# ------------------------------------------------------------------------------- child processes


def child_voxflow(repo: Path, source: Path, dest: Path, window_s: float) -> dict[str, Any]:
    from tasks.separate.demucs import DemucsOptions, DemucsSeparator

    sep = DemucsSeparator(repo, DemucsOptions(window_s=window_s))
    sep.separate(np.zeros(SR, dtype=np.float32), SR)  # first-call allocations, as in bare
    loaded = _rss_kb()
    started, cpu = time.perf_counter(), time.process_time()
    result = sep.separate_file(source, dest)
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "loaded_kb": loaded,
        "peak_kb": _rss_kb(),
        "windows": result.windows,
    }


def child_bare(repo: Path, source: Path, dest: Path, window_s: float) -> dict[str, Any]:
    del window_s  # bare demucs has no windows: the whole track is one tensor
    import julius
    import torch
    from demucs.apply import apply_model
    from demucs.pretrained import get_model

    model = get_model(repo.name, repo=repo)  # demucs' own loader for a local repository
    with torch.inference_mode():  # first-call allocations (kernels, thread pools) go here
        apply_model(model, torch.zeros(1, 2, model.samplerate), shifts=0, split=True)
    loaded = _rss_kb()
    started, cpu = time.perf_counter(), time.process_time()
    with wave.open(str(source), "rb") as f:
        pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
    with torch.inference_mode():
        mono = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
        wav = julius.resample_frac(mono, SR, model.samplerate).expand(2, -1)
        ref = wav.mean(0)
        wav = (wav - ref.mean()) / (ref.std() + 1e-8)
        sources = apply_model(model, wav[None], shifts=0, split=True, overlap=0.25)[0]
        vocals = sources[model.sources.index("vocals")].mean(0) * ref.std() + ref.mean()
        out = julius.resample_frac(vocals, model.samplerate, SR, output_length=len(pcm))
    with wave.open(str(dest), "wb") as f:
        f.setnchannels(1)
        f.setsampwidth(2)
        f.setframerate(SR)
        f.writeframes((out.clamp(-1, 1) * 32767).numpy().astype("<i2").tobytes())
    return {
        "seconds": time.perf_counter() - started,
        "cpu_s": time.process_time() - cpu,
        "loaded_kb": loaded,
        "peak_kb": _rss_kb(),
    }


CHILDREN = {"voxflow": child_voxflow, "bare": child_bare}


def run_child(which: str, repo: Path, source: Path, dest: Path, window_s: float) -> dict:
    request = json.dumps([which, str(repo), str(source), str(dest), window_s])
    proc = subprocess.run(
        [sys.executable, __file__, "--child", request], capture_output=True, text=True, cwd=ROOT
    )
    if proc.returncode != 0:
        sys.exit(f"{which} separation failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


# ------------------------------------------------------------------------------------ the report


def measure(
    kind: str, seconds: float, window_s: float, repeat: int, tmp: Path
) -> list[dict[str, Any]]:
    repo = tmp / kind
    make_model(kind, repo)
    source = tmp / f"{kind}-{seconds:.0f}s.wav"
    make_recording(source, seconds)
    runs: dict[str, list[dict[str, Any]]] = {which: [] for which in CHILDREN}
    for i in range(repeat):  # interleaved, alternating order: a busy machine hits both alike
        for which in list(CHILDREN)[:: 1 if i % 2 == 0 else -1]:
            runs[which].append(run_child(which, repo, source, tmp / f"{kind}-o.wav", window_s))
    rows = []
    for which, results in runs.items():
        took = statistics.median(r["seconds"] for r in results)
        growth = max(r["peak_kb"] - r["loaded_kb"] for r in results)
        rows.append(
            {
                "model": kind,
                "impl": which,
                "audio_s": seconds,
                "seconds": round(took, 2),
                "rtf": round(took / seconds, 3),
                "cpu_s": round(statistics.median(r["cpu_s"] for r in results), 2),
                "peak_mb": round(max(r["peak_kb"] for r in results) / 1024, 1),
                "growth_mb": round(growth / 1024, 1),
                "windows": results[0].get("windows", 1),
            }
        )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--minutes", type=float, default=5.0, help="audio for the tiny model")
    parser.add_argument("--window-s", type=float, default=60.0, help="voxflow's window")
    parser.add_argument("--repeat", type=int, default=3, help="runs per measurement (median)")
    parser.add_argument(
        "--full-seconds", type=float, default=30.0, help="audio for the full-size model; 0 skips"
    )
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        which, repo, source, dest, window_s = json.loads(args.child)
        result = CHILDREN[which](Path(repo), Path(source), Path(dest), window_s)
        sys.stdout.write(json.dumps(result) + "\n")
        return

    OUT.mkdir(parents=True, exist_ok=True)
    rows: list[dict[str, Any]] = []
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        rows += measure("tiny", args.minutes * 60, args.window_s, args.repeat, Path(tmp))
        if args.full_seconds > 0:
            rows += measure("full", args.full_seconds, args.window_s, args.repeat, Path(tmp))

    columns = [
        "model",
        "impl",
        "audio_s",
        "seconds",
        "rtf",
        "cpu_s",
        "peak_mb",
        "growth_mb",
        "windows",
    ]
    widths = {c: max(len(c), *(len(str(r[c])) for r in rows)) for c in columns}
    print("  ".join(c.rjust(widths[c]) for c in columns))
    for r in rows:
        print("  ".join(str(r[c]).rjust(widths[c]) for c in columns))
    for kind in dict.fromkeys(r["model"] for r in rows):
        vox, bare = (r for i in CHILDREN for r in rows if (r["model"], r["impl"]) == (kind, i))
        print(
            f"{kind}: voxflow/bare time {vox['seconds'] / bare['seconds']:.2f}x "
            f"(CPU time {vox['cpu_s'] / bare['cpu_s']:.2f}x), "
            f"separation memory (growth) {vox['growth_mb']} MB vs {bare['growth_mb']} MB"
        )
    RESULT.write_text(
        json.dumps(
            {
                "machine": f"{platform.machine()} {platform.processor()}, {_cpus()} CPU(s)",
                "window_s": args.window_s,
                "repeat": args.repeat,
                "rows": rows,
            },
            indent=1,
        )
    )
    print(f"written {RESULT}")


def _cpus() -> int:
    import os

    return len(os.sched_getaffinity(0))


if __name__ == "__main__":
    main()
