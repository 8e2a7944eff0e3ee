"""The `voxflow` command as a user runs it: child processes, offline, against a local server."""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import av
import jiwer
import numpy as np
import pytest

from conftest import (
    ROOT,
    SAMPLE,
    SPEECH_TEXT,
    bare_faster_whisper,
    cli_env,
    no_network_used,
    normalise,
    run_cli,
)

pytestmark = pytest.mark.e2e


def to_m4a(wav: Path, dest: Path) -> Path:
    """Re-encode a WAV as AAC in an MP4 container (what a phone recording looks like)."""
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-i",
            str(wav),
            "-c:a",
            "aac",
            "-b:a",
            "96k",
            str(dest),
        ],
        check=True,
    )
    return dest


def transcribe_args(media: Path, store: str | Path, out: Path, *extra: str) -> list[str]:
    """`voxflow transcribe MEDIA` on the cpu profile with a volume and an output folder."""
    return [
        "transcribe",
        str(media),
        "--profile",
        "cpu",
        "--store",
        str(store),
        "--output",
        str(out),
        *extra,
    ]


def test_transcribe_offline_is_as_accurate_as_bare_faster_whisper(
    env, warm_store, speech_wav, tmp_path
):
    media = to_m4a(speech_wav, tmp_path / "speech.m4a")
    done = run_cli(
        transcribe_args(media, warm_store.root, tmp_path / "out", "--format", "json,srt"),
        env,
    )
    assert done.returncode == 0, done.stderr
    assert no_network_used(tmp_path)

    job = next((tmp_path / "out").glob("speech-*"))
    ours = json.loads((job / "speech.json").read_text())["text"]

    bare = bare_faster_whisper(media, tmp_path)

    reference = normalise(SPEECH_TEXT)
    ours_wer = jiwer.wer(reference, normalise(ours))
    bare_wer = jiwer.wer(reference, normalise(bare))
    assert ours_wer <= bare_wer + 0.05, (ours, bare)
    # media named like a record: the outputs take the top, voxflow's records stay apart
    assert sorted(p.name for p in job.iterdir()) == ["records", "speech.json", "speech.srt"]
    assert {"run.json", "speech.json", "transcript.json"} <= {
        p.name for p in (job / "records").iterdir()
    }


RECORD_NAMES = ("audio", "speech", "transcript", "run", "diarization", "vocals", "records")


def test_media_named_like_voxflows_records_keeps_outputs_and_records_apart(
    env, warm_store, speech_wav, tmp_path
):
    names = [to_m4a(speech_wav, tmp_path / f"{name}.m4a") for name in RECORD_NAMES]
    args = ["transcribe", *map(str, names), "--profile", "cpu", "--store", warm_store.root]
    args += ["--output", str(tmp_path / "out")]

    first = run_cli(args, env)
    assert first.returncode == 0, first.stderr
    again = run_cli(args, env)  # records a collision overwrote would not be reused
    assert again.returncode == 0, again.stderr

    for name in RECORD_NAMES:
        job = next((tmp_path / "out").glob(f"{name}-*"))
        assert sorted(p.name for p in job.iterdir()) == sorted(
            ["records", *(f"{name}.{fmt}" for fmt in ("json", "srt", "txt", "vtt"))]
        )
        output = json.loads((job / f"{name}.json").read_text())
        assert "from the store" in normalise(" ".join(s["text"] for s in output["segments"]))
        record = json.loads((job / "records" / "run.json").read_text())
        assert set(record["stages"]) == {"extract", "vad", "asr", "guard"}
        spans = json.loads((job / "records" / "speech.json").read_text())
        assert spans and {"start", "end"} <= set(spans[0])
        assert all(Path(p).parent == job for p in record["outputs"].values())
        assert f"{name}.json" in again.stdout
    assert again.stderr.count(": cached") >= 3 * len(RECORD_NAMES)


LECTURE = (
    "Good morning and welcome to the second lecture of the course. Today we will talk about "
    "rivers, how they begin in the mountains as small streams, how they grow as other streams "
    "join them, and how they carry sand and stones down to the sea. A river is never the same "
    "from one day to the next, because the water that fills it is always moving, and the "
    "banks change with every flood. Farmers have lived beside rivers for thousands of years, "
    "since the water makes the land green and the soil rich. Cities were built where rivers "
    "could be crossed, and bridges became the places where people met to trade. In the first "
    "part of the lecture we will look at maps of three great rivers, and in the second part we "
    "will read what travellers wrote about them long ago. Please take out your notebooks now, "
    "write down the names of the rivers, and keep a page free for the questions at the end."
)


def test_a_long_span_of_continuous_speech_loses_no_text(env, warm_store, tmp_path):
    """A VAD span over 60 s (a profile that never splits) is decoded whole, not its first 30 s."""
    from conftest import speak

    wav = speak(LECTURE, tmp_path / "lecture.wav", rate=120)
    profile = (ROOT / "profiles" / "cpu.yaml").read_text()
    profile = profile.replace(
        "min_silence_ms: 160, speech_pad_ms: 200, max_speech_s: 30",
        "min_silence_ms: 3000, speech_pad_ms: 200, max_speech_s: 600",
    )
    assert "max_speech_s: 600" in profile
    (tmp_path / "lecture.yaml").write_text(profile)
    args = ["transcribe", str(wav), "--profile", str(tmp_path / "lecture.yaml")]
    done = run_cli([*args, "--store", warm_store.root, "--output", str(tmp_path / "out")], env)
    assert done.returncode == 0, done.stderr
    job = next((tmp_path / "out").glob("lecture-*"))
    spans = json.loads((job / "records" / "speech.json").read_text())
    assert max(s["end"] - s["start"] for s in spans) > 60, spans  # one long span, as intended
    ours = (job / "lecture.txt").read_text()

    bare = bare_faster_whisper(wav, tmp_path)
    reference = normalise(LECTURE)
    ours_wer, bare_wer = (
        jiwer.wer(reference, normalise(ours)),
        jiwer.wer(reference, normalise(bare)),
    )
    assert ours_wer <= bare_wer + 0.05, (ours_wer, bare_wer, ours)


def test_a_first_run_on_a_busy_machine_starts_its_own_server_and_succeeds(warm_store, tmp_path):
    """No PREFECT_API_URL and a new Prefect home (the first server start runs the database
    migrations) while every core is busy: the command starts a local server in the background,
    says where its UI is, and the next command reuses it."""
    env = {k: v for k, v in cli_env("", guard_log=tmp_path / "blocked.log").items()}
    env.pop("PREFECT_API_URL")
    env["PREFECT_HOME"] = str(tmp_path / "new-prefect-home")
    burners = [
        subprocess.Popen([sys.executable, "-c", "while True: pass"])
        for _ in range(os.cpu_count() or 2)
    ]
    try:
        try:
            done = run_cli(transcribe_args(SAMPLE, warm_store.root, tmp_path / "out"), env)
        finally:
            for burner in burners:
                burner.kill()
                burner.wait()
        assert done.returncode == 0, done.stderr
        assert "Traceback" not in done.stderr
        assert "local Prefect server ready: its UI at http://127.0.0.1:" in done.stderr
        assert list((tmp_path / "out").glob("sample-*/sample.srt"))
        status = run_cli(["server", "status"], env)
        assert (
            status.returncode == 0 and "local Prefect server at http://127.0.0.1:" in status.stdout
        )
        again = run_cli(transcribe_args(SAMPLE, warm_store.root, tmp_path / "again"), env)
        assert again.returncode == 0, again.stderr
        assert "starting a local Prefect server" not in again.stderr  # the same one, reused
        url = status.stdout.split(" at ")[1].split()[0]
        assert f"View at {url}/runs/flow-run/" in again.stderr + again.stdout  # in its UI
    finally:
        stopped = run_cli(["server", "stop"], env)
    assert stopped.returncode == 0 and "stopped the local Prefect server" in stopped.stdout
    assert run_cli(["server", "status"], env).returncode == 1
    assert no_network_used(tmp_path)


def test_warm_then_transcribe_without_a_profile_use_what_auto_picks_here(env, tmp_path):
    """What a new user types: no --profile anywhere; `auto` must pick a profile that runs."""
    from profiles import auto_profile

    store, out = tmp_path / "models", tmp_path / "out"
    warm = run_cli(["warm", "--store", str(store)], env)
    assert warm.returncode == 0, warm.stderr
    done = run_cli(["transcribe", str(SAMPLE), "--store", str(store), "--output", str(out)], env)
    assert done.returncode == 0, done.stderr
    record = json.loads(next(out.glob("sample-*/records/run.json")).read_text())
    assert record["profile"] == auto_profile()[0]
    assert list(out.glob("sample-*/sample.srt"))


def test_expected_failures_say_one_line_without_a_traceback_unless_debugging(env, tmp_path):
    cold = transcribe_args(SAMPLE, tmp_path / "cold", tmp_path / "out")
    for args in (cold, ["transcribe", str(SAMPLE), "--profile", "tpu"]):
        done = run_cli(args, env)
        assert done.returncode == 2
        errors = [line for line in done.stderr.splitlines() if "error" in line.lower()]
        assert len(errors) == 1 and errors[0].startswith("voxflow: error: "), done.stderr
        assert "Traceback" not in done.stderr
    debug = run_cli(["--debug", *cold], env)
    assert debug.returncode != 0 and "Traceback" in debug.stderr
    assert "Traceback" in run_cli(cold, {**env, "VOXFLOW_DEBUG": "1"}).stderr


def test_missing_file_is_bad_input(env, tmp_path):
    done = run_cli(["transcribe", str(tmp_path / "nope.mp4"), "--profile", "cpu"], env)
    assert done.returncode == 2
    assert "media file not found" in done.stderr and "nope.mp4" in done.stderr


def test_a_file_that_is_not_media_is_bad_input(env, warm_store, tmp_path):
    fake = tmp_path / "notes.mp4"
    fake.write_text("these are meeting notes, not a video\n" * 20)
    done = run_cli(
        transcribe_args(fake, warm_store.root, tmp_path / "out"),
        env,
    )
    assert done.returncode == 2
    assert "is not a media file" in done.stderr and "notes.mp4" in done.stderr
    assert not list((tmp_path / "out").glob("notes-*")), "refused media leave no job folder"


def test_media_without_audio_is_bad_input(env, warm_store, tmp_path):
    video = tmp_path / "silent-film.mp4"
    with av.open(str(video), "w") as out:
        stream = out.add_stream("mpeg4", rate=10)
        stream.width, stream.height, stream.pix_fmt = 64, 48, "yuv420p"
        for _ in range(10):
            frame = av.VideoFrame.from_ndarray(np.zeros((48, 64, 3), np.uint8), format="rgb24")
            out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    done = run_cli(
        transcribe_args(video, warm_store.root, tmp_path / "out"),
        env,
    )
    assert done.returncode == 2
    assert "no usable audio stream" in done.stderr and "video" in done.stderr


def test_unknown_profile_lists_the_known_ones(env):
    done = run_cli(["transcribe", str(SAMPLE), "--profile", "tpu"], env)
    assert done.returncode == 2
    assert "unknown profile 'tpu'" in done.stderr
    assert all(name in done.stderr for name in ("cpu", "cuda", "mlx", "openvino"))


def test_cold_store_says_which_models_and_what_to_run(env, tmp_path):
    done = run_cli(
        transcribe_args(SAMPLE, tmp_path / "cold", tmp_path / "out"),
        env,
    )
    assert done.returncode == 2
    assert "faster-whisper-base" in done.stderr
    assert f"voxflow warm --profile cpu --store {tmp_path / 'cold'}" in done.stderr


def test_silent_file_succeeds_with_an_empty_transcript_and_a_warning(env, warm_store, tmp_path):
    silent = tmp_path / "room-tone.wav"
    with av.open(str(silent), "w") as out:
        stream = out.add_stream("pcm_s16le", rate=16000, layout="mono")
        frame = av.AudioFrame.from_ndarray(
            np.zeros((1, 16000 * 3), np.int16), format="s16", layout="mono"
        )
        frame.sample_rate = 16000
        out.mux(stream.encode(frame))
        out.mux(stream.encode(None))
    done = run_cli(
        transcribe_args(silent, warm_store.root, tmp_path / "out", "--format", "txt"),
        env,
    )
    assert done.returncode == 0, done.stderr
    assert "no speech found" in done.stdout + done.stderr
    txt = next((tmp_path / "out").glob("room-tone-*/room-tone.txt"))
    assert txt.read_text().strip() == ""


def test_bad_format_is_bad_usage(env):
    done = run_cli(["transcribe", str(SAMPLE), "--profile", "cpu", "--format", "srt,docx"], env)
    assert done.returncode == 2 and "docx" in done.stderr and "vtt" in done.stderr


def test_profiles_shows_backends_models_and_what_runs_here(env):
    done = run_cli(["profiles"], env)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    from profiles import auto_profile

    chosen, why = auto_profile()
    assert lines[0].startswith(f"auto picks {chosen!r} here")
    if chosen == "cpu":  # each accelerator it passed over, and why
        assert all(f"not {kind}:" in lines[0] for kind in ("cuda", "mlx", "openvino"))
    cpu_asr = next(line for line in lines if line.split()[:2] == ["cpu", "asr"])
    assert "faster-whisper" in cpu_asr and "faster-whisper-base" in cpu_asr
    assert "99 languages, detected per window" in cpu_asr
    assert cpu_asr.rstrip().endswith("yes")
    english = next(line for line in lines if line.split()[:2] == ["cpu-en", "asr"])
    assert "faster-whisper-tiny.en" in english and "en only" in english
    assert "faster-whisper-large-v3-turbo" in done.stdout, "names a better model to switch to"
    assert any(line.startswith("cuda") and "no:" in line for line in lines)
    mlx_asr = next(line for line in lines if line.split()[:2] == ["mlx", "asr"])
    if importlib.util.find_spec("mlx_whisper") is None:  # says what to install, as well
        assert "pip install mlx-whisper" in mlx_asr


def test_a_reader_that_leaves_early_ends_the_listing_quietly(env):
    """`voxflow profiles | head -1`: the closed pipe is no error."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", "profiles"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    proc.stdout.close()  # the reader is gone before voxflow writes a line
    err = proc.stderr.read()
    proc.wait(timeout=60)
    assert proc.returncode == 0 and "error" not in err


def test_models_lists_the_catalog_with_warm_state(env, warm_store):
    done = run_cli(["models", "--store", warm_store.root], env)
    assert done.returncode == 0, done.stderr
    rows = {line.split()[0]: line for line in done.stdout.splitlines()[1:]}
    base = rows["faster-whisper-base"]
    assert "warmed" in base and "147.9 MB" in base
    assert "cold" in rows["faster-whisper-tiny.en"], "the session warms the cpu profile only"
    assert "cold" in rows["faster-whisper-large-v3"]


def test_warm_verify_corrupt_repair_cycle(env, tmp_path):
    store = tmp_path / "models"
    done = run_cli(["warm", "--profile", "cpu", "--store", str(store)], env)
    assert done.returncode == 0, done.stderr
    assert "model volume ready" in done.stdout
    assert (
        run_cli(["verify", "--profile", "cpu", "--store", str(store), "--deep"], env).returncode
        == 0
    )

    blob = next(p for p in (store / "hub").rglob("model.bin")).resolve()
    data = bytearray(blob.read_bytes())
    data[1000] ^= 0xFF
    blob.write_bytes(bytes(data))
    done = run_cli(["verify", "--profile", "cpu", "--store", str(store), "--deep"], env)
    assert done.returncode == 1
    assert "faster-whisper-base" in done.stdout and "model.bin" in done.stdout
    assert f"voxflow warm --profile cpu --store {store}" in done.stdout

    # A plain warm repairs it: verify noted the bad file, and the blob changed after its manifest.
    assert (
        run_cli(
            ["warm", "--profile", "cpu", "--store", str(store), "--no-load-check"], env
        ).returncode
        == 0
    )
    assert (
        run_cli(["verify", "--profile", "cpu", "--store", str(store), "--deep"], env).returncode
        == 0
    )


def test_a_run_killed_mid_flow_resumes_at_the_unfinished_stage(env, warm_store, tmp_path):
    # Three copies of the sample back to back: long enough that ASR is still running when
    # the VAD record appears and the process is killed.
    long_media = tmp_path / "long.mkv"
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-y",
            "-stream_loop",
            "2",
            "-i",
            str(SAMPLE),
            "-vn",
            "-c:a",
            "aac",
            str(long_media),
        ],
        check=True,
    )
    out = tmp_path / "out"
    args = transcribe_args(long_media, warm_store.root, out, "--format", "srt")
    proc = subprocess.Popen(
        [sys.executable, "-m", "flows.cli", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 120
    while not list(out.glob("long-*/records/stages/vad.json")):
        assert proc.poll() is None and time.monotonic() < deadline, "the run ended early"
        time.sleep(0.02)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    job = next(out.glob("long-*"))
    assert not (job / "records" / "stages" / "asr.json").exists(), "ASR finished before the kill"

    done = run_cli(args, env)
    assert done.returncode == 0, done.stderr
    record = json.loads((job / "records" / "run.json").read_text())
    assert {k: v["cached"] for k, v in record["stages"].items()} == {
        "extract": True,
        "vad": True,
        "asr": False,
        "guard": False,
    }
    assert "vad: cached" in done.stderr + done.stdout


def test_help_names_every_command():
    done = subprocess.run(
        [sys.executable, "-m", "flows.cli", "--help"], capture_output=True, text=True, cwd=ROOT
    )
    assert done.returncode == 0
    for command in ("warm", "verify", "transcribe", "profiles", "models"):
        assert command in done.stdout
