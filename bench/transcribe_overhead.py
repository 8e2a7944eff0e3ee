"""How much does voxflow add on top of bare faster-whisper? One process, one machine, one file.

Generates (and caches under ``bench/out/``) a long English recording spoken by espeak-ng from
``bench/long_text.txt``, encodes it to AAC, decodes it once to a 16 kHz float32 array, then
times, on that same array and with model loading excluded:

* bare faster-whisper: ``BatchedInferencePipeline.transcribe(..., vad_filter=True)`` (its own
  Silero VAD included) and, for reference, the sequential ``WhisperModel.transcribe``;
* voxflow's cpu-profile stages: the VAD backend's ``speech_spans`` and the ASR backend's
  ``transcribe`` (separately and summed);
* diagnostics: the bare batched pipeline fed voxflow's own windows as ``clip_timestamps``
  (separates windowing from wrapper cost), and the windows each side decodes.

Measurements are repeated (``--repeat``), interleaved bare/voxflow with alternating order, and
the median is reported. Word error rates are taken against the spoken text. Finally the whole
``transcribe`` flow runs once under a temporary Prefect server to show what orchestration adds.

Usage::

    .venv/bin/python bench/transcribe_overhead.py [--repeat 3] [--minutes 5.5] [--regenerate]
        [--skip-flow] [--skip-diagnostics]

Results are printed as a table and written to ``bench/out/transcribe_overhead.json``.
"""

from __future__ import annotations

import os

# A script owns its process: no telemetry, and inference must never reach the hub.
os.environ["PREFECT_SERVER_ANALYTICS_ENABLED"] = "false"
os.environ["DO_NOT_TRACK"] = "1"
os.environ["HF_HUB_OFFLINE"] = "1"

import argparse  # noqa: E402
import contextlib  # noqa: E402
import dataclasses  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import logging  # noqa: E402
import platform  # noqa: E402
import random  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import statistics  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
import wave  # noqa: E402
from collections.abc import Callable  # noqa: E402
from datetime import UTC, datetime  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/transcribe_overhead.py` from anywhere
    sys.path.insert(0, str(ROOT))

OUT = HERE / "out"
TEXT_FILE = HERE / "long_text.txt"
MEDIA = OUT / "long_speech.m4a"
MEDIA_META = OUT / "long_speech.json"
DECODED = OUT / "long_speech.16k.wav"
STORE = OUT / "models"
FLOW_OUTPUT = OUT / "flow-output"
RESULT = OUT / "transcribe_overhead.json"
SR = 16_000
FINE_MIN_SILENCE_MS = 160  # faster-whisper's BatchedInferencePipeline VAD default

# Each pass over the text uses the next voice and rate, so repeated paragraphs are not
# byte-identical audio (a decoder could otherwise benefit from exact repeats).
VARIANTS = [("en-us", 150), ("en-us+m3", 140), ("en-us+f2", 160), ("en-us+m7", 145)]

log = logging.getLogger("bench")


# ------------------------------------------------------------------------------- the recording


def paragraphs() -> list[str]:
    """The paragraphs of bench/long_text.txt, whitespace normalised."""
    blocks = re.split(r"\n\s*\n", TEXT_FILE.read_text())
    return [" ".join(b.split()) for b in blocks if b.strip()]


def _speak(text: str, voice: str, rate: int, dest: Path) -> tuple[np.ndarray, int]:
    subprocess.run(
        ["espeak-ng", "-v", voice, "-s", str(rate), "-w", str(dest), text],
        check=True,
        capture_output=True,
    )
    with wave.open(str(dest), "rb") as f:
        if f.getnchannels() != 1 or f.getsampwidth() != 2:
            raise RuntimeError(f"espeak-ng wrote an unexpected WAV format: {dest}")
        return np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16), f.getframerate()


def generate_recording(minutes: float) -> dict[str, Any]:
    """Speak paragraphs (cycling voices) until ``minutes`` is reached; encode to AAC in .m4a.

    Returns:
        The recording's metadata, also written to ``long_speech.json`` beside it.
    """
    for tool in ("espeak-ng", "ffmpeg"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is missing: run scripts/system-deps.sh")
    OUT.mkdir(parents=True, exist_ok=True)
    texts = paragraphs()
    rng = random.Random(20240611)  # fixed: the same pauses every regeneration
    pieces: list[np.ndarray] = []
    spoken: list[str] = []
    target = minutes * 60
    total = 0
    rate_hz = None
    with tempfile.TemporaryDirectory(dir=OUT) as tmp:
        i = 0
        while total < target * (rate_hz or 22_050):
            voice, wpm = VARIANTS[(i // len(texts)) % len(VARIANTS)]
            samples, sr = _speak(texts[i % len(texts)], voice, wpm, Path(tmp) / f"{i}.wav")
            if rate_hz is None:
                rate_hz = sr
                # Lead-in silence, so the file does not start mid-word.
                pieces.append(np.zeros(int(0.5 * sr), dtype=np.int16))
            elif sr != rate_hz:
                raise RuntimeError(f"espeak-ng changed sample rate ({rate_hz} -> {sr})")
            pieces.append(samples)
            pause = np.zeros(int(rng.uniform(0.5, 1.5) * sr), dtype=np.int16)
            pieces.append(pause)
            total += len(samples) + len(pause)
            spoken.append(texts[i % len(texts)])
            i += 1
        wav = Path(tmp) / "all.wav"
        with wave.open(str(wav), "wb") as f:
            f.setnchannels(1)
            f.setsampwidth(2)
            f.setframerate(rate_hz)
            f.writeframes(np.concatenate(pieces).tobytes())
        tmp_media = Path(tmp) / MEDIA.name
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-y",
                "-i",
                str(wav),
                "-c:a",
                "aac",
                "-b:a",
                "96k",
                str(tmp_media),
            ],
            check=True,
        )
        os.replace(tmp_media, MEDIA)
    meta = {
        "minutes_requested": minutes,
        "text_sha256": hashlib.sha256(TEXT_FILE.read_bytes()).hexdigest(),
        "paragraphs": len(spoken),
        "reference": " ".join(spoken),
        "generated_at": datetime.now(UTC).isoformat(timespec="seconds"),
    }
    MEDIA_META.write_text(json.dumps(meta, indent=1))
    DECODED.unlink(missing_ok=True)
    return meta


def recording(minutes: float, regenerate: bool) -> dict[str, Any]:
    """The cached recording's metadata, generating it when absent, stale or asked to."""
    if not regenerate and MEDIA.is_file() and MEDIA_META.is_file():
        meta = json.loads(MEDIA_META.read_text())
        if (
            meta.get("minutes_requested") == minutes
            and meta.get("text_sha256") == hashlib.sha256(TEXT_FILE.read_bytes()).hexdigest()
        ):
            log.info("using cached %s", MEDIA.relative_to(ROOT))
            return meta
    log.info("generating %.1f min of speech with espeak-ng -> %s", minutes, MEDIA.name)
    return generate_recording(minutes)


# ------------------------------------------------------------------------------------- helpers


def normalise(text: str) -> str:
    """Lower case, punctuation stripped (apostrophes joined, hyphens split), spaces collapsed."""
    text = text.lower().replace("'", "").replace("\u2019", "")
    return " ".join(re.sub(r"[^a-z0-9]+", " ", text).split())


def wer(reference: str, hypothesis: str) -> float:
    import jiwer

    return round(float(jiwer.wer(normalise(reference), normalise(hypothesis))), 4)


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    started = time.perf_counter()
    result = fn()
    return time.perf_counter() - started, result


def row(seconds: float, duration: float) -> dict[str, float]:
    return {
        "seconds": round(seconds, 3),
        "real_time_factor": round(seconds / duration, 4),
        "speed_x": round(duration / seconds, 2),
    }


# ------------------------------------------------------------------------------ the benchmark


def run(args: argparse.Namespace) -> tuple[dict[str, Any], str]:
    """Time bare faster-whisper and voxflow's stages; return the results and the spoken text."""
    from faster_whisper import BatchedInferencePipeline, WhisperModel
    from faster_whisper.vad import VadOptions, collect_chunks, get_speech_timestamps

    from blocks.volume import Volume
    from profiles import load_catalog, load_profile
    from tasks.asr import group_spans
    from tasks.extract import extract_audio, load_wav
    from tasks.registry import load_backend
    from tasks.transcript import SpeechSpan

    meta = recording(args.minutes, args.regenerate)
    reference = meta["reference"]

    # Decode once, outside every timing.
    if not DECODED.is_file():
        extract_audio(MEDIA, DECODED)
    audio = load_wav(DECODED)
    duration = len(audio) / SR
    log.info("audio: %.1f s (%d paragraphs)", duration, meta["paragraphs"])

    profile = load_profile("cpu")
    catalog = load_catalog()
    store = Volume(root=str(STORE))
    for name in profile.models():
        store.warm(catalog[name])
    vad_spec, asr_spec = profile.stages["vad"], profile.stages["asr"]
    vad_path = store.locate(catalog[vad_spec.model])
    asr_path = store.locate(catalog[asr_spec.model])

    # Model loads, timed for the record but excluded from every measurement below.
    load_s: dict[str, float] = {}
    load_s["voxflow_vad"], vad = timed(lambda: load_backend(vad_spec, vad_path))
    load_s["voxflow_asr"], asr = timed(lambda: load_backend(asr_spec, asr_path))
    opts = asr.options  # the profile's parsed options: the bare runs use the same values
    load_s["bare_model"], model = timed(
        lambda: WhisperModel(str(asr_path), device=opts.device, compute_type=opts.compute_type)
    )
    pipeline = BatchedInferencePipeline(model)
    load_s = {k: round(v, 3) for k, v in load_s.items()}

    def bare_batched(clip: np.ndarray, clips: list[dict[str, float]] | None = None) -> str:
        segments, _ = pipeline.transcribe(
            clip,
            batch_size=opts.batch_size,
            beam_size=opts.beam_size,
            word_timestamps=True,
            vad_filter=True,
            clip_timestamps=clips,
        )
        return " ".join(s.text.strip() for s in segments)

    def bare_sequential(clip: np.ndarray) -> str:
        segments, _ = model.transcribe(
            clip, beam_size=opts.beam_size, word_timestamps=True, vad_filter=True
        )
        return " ".join(s.text.strip() for s in segments)

    def vox_vad(clip: np.ndarray) -> list[SpeechSpan]:
        return vad.speech_spans(clip, SR)

    def vox_asr(clip: np.ndarray, spans: list[SpeechSpan]) -> str:
        return asr.transcribe(clip, spans, None).text

    # Warm-up on the first second: first-call costs (Silero session, CTranslate2 allocations).
    one = audio[:SR]
    bare_batched(one)
    bare_sequential(one)
    vox_asr(one, vox_vad(one) or [SpeechSpan(0.0, 1.0)])

    # The windows each side decodes. Bare batched: its VAD options, then collect_chunks.
    bare_vad = VadOptions(max_speech_duration_s=30, min_silence_duration_ms=160)
    bare_ts = get_speech_timestamps(audio, bare_vad)
    bare_chunks, _ = collect_chunks(audio, bare_ts, max_duration=30)
    spans = vox_vad(audio)
    windows = group_spans(spans)
    vox_clips = [{"start": w.start, "end": w.end} for w in windows]
    chunks = {
        "bare_batched": {
            "vad_spans": len(bare_ts),
            "vad_speech_seconds": round(sum(t["end"] - t["start"] for t in bare_ts) / SR, 1),
            "windows": len(bare_chunks),
            "window_seconds": round(sum(len(c) for c in bare_chunks) / SR, 1),
            "encoder_batches": -(-len(bare_chunks) // opts.batch_size),
        },
        "voxflow": {
            "vad_spans": len(spans),
            "vad_speech_seconds": round(sum(s.end - s.start for s in spans), 1),
            "windows": len(windows),
            "window_seconds": round(sum(w.end - w.start for w in windows), 1),
            "encoder_batches": -(-len(windows) // opts.batch_size),
        },
    }
    # Diagnostic: the same VAD with faster-whisper's batched min_silence (160 ms). Finer spans
    # pack into fuller 30 s windows; the ASR backend itself is unchanged.
    fine_spans: list[SpeechSpan] = []
    if not args.skip_diagnostics:
        fine_spec = dataclasses.replace(
            vad_spec, options={**vad_spec.options, "min_silence_ms": FINE_MIN_SILENCE_MS}
        )
        fine_spans = load_backend(fine_spec, vad_path).speech_spans(audio, SR)
        fine_windows = group_spans(fine_spans)
        chunks[f"voxflow_min_silence_{FINE_MIN_SILENCE_MS}"] = {
            "vad_spans": len(fine_spans),
            "vad_speech_seconds": round(sum(s.end - s.start for s in fine_spans), 1),
            "windows": len(fine_windows),
            "window_seconds": round(sum(w.end - w.start for w in fine_windows), 1),
            "encoder_batches": -(-len(fine_windows) // opts.batch_size),
        }
    log.info("windows: %s", json.dumps(chunks))

    measures: dict[str, Callable[[], Any]] = {
        "bare_batched": lambda: bare_batched(audio),
        "bare_sequential": lambda: bare_sequential(audio),
        "voxflow_vad": lambda: vox_vad(audio),
        "voxflow_asr": lambda: vox_asr(audio, spans),
    }
    if not args.skip_diagnostics:
        measures["diag_bare_batched_on_voxflow_windows"] = lambda: bare_batched(audio, vox_clips)
        measures["diag_voxflow_asr_min_silence_160"] = lambda: vox_asr(audio, fine_spans)
    bare_names = [k for k in measures if k.startswith("bare")]
    vox_names = [k for k in measures if not k.startswith("bare")]
    times: dict[str, list[float]] = {k: [] for k in measures}
    texts: dict[str, str] = {}
    for rep in range(args.repeat):
        # Alternate which side goes first, so drift (thermal, page cache) hits both alike.
        order = bare_names + vox_names if rep % 2 == 0 else vox_names + bare_names
        for name in order:
            seconds, result = timed(measures[name])
            times[name].append(round(seconds, 3))
            if isinstance(result, str):
                texts[name] = result
            log.info("run %d/%d  %-40s %7.2f s", rep + 1, args.repeat, name, seconds)

    med = {k: statistics.median(v) for k, v in times.items()}
    med["voxflow_vad_plus_asr"] = statistics.median(
        a + b for a, b in zip(times["voxflow_vad"], times["voxflow_asr"], strict=True)
    )
    results: dict[str, Any] = {
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": {
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
        },
        "versions": _versions(),
        "audio": {
            "file": str(MEDIA.relative_to(ROOT)),
            "seconds": round(duration, 2),
            "paragraphs": meta["paragraphs"],
            "reference_words": len(normalise(reference).split()),
        },
        "profile": {
            "name": profile.name,
            "asr_model": asr_spec.model,
            "asr_options": dict(asr_spec.options),
            "vad_model": vad_spec.model,
            "vad_options": dict(vad_spec.options),
        },
        "repeat": args.repeat,
        "model_load_seconds": load_s,
        "timings": {k: {**row(v, duration), "runs": times.get(k)} for k, v in med.items()},
        "ratios": {
            "voxflow_asr / bare_batched": round(med["voxflow_asr"] / med["bare_batched"], 3),
            "voxflow_vad_plus_asr / bare_batched": round(
                med["voxflow_vad_plus_asr"] / med["bare_batched"], 3
            ),
        },
        "windows": chunks,
        "wer": {k: wer(reference, v) for k, v in texts.items()},
    }
    if "diag_bare_batched_on_voxflow_windows" in med:
        results["ratios"]["voxflow_asr / diag_bare_batched_on_voxflow_windows"] = round(
            med["voxflow_asr"] / med["diag_bare_batched_on_voxflow_windows"], 3
        )
        results["ratios"]["diag_voxflow_asr_min_silence_160 / bare_batched"] = round(
            med["diag_voxflow_asr_min_silence_160"] / med["bare_batched"], 3
        )
    # Paired per-run ratios: less sensitive to drift than a ratio of medians.
    results["ratios"]["voxflow_asr / bare_batched, per run"] = [
        round(v / b, 3) for v, b in zip(times["voxflow_asr"], times["bare_batched"], strict=True)
    ]
    return results, reference


def flow_overhead(load_s: dict[str, float], reference: str) -> dict[str, Any]:
    """Run the transcribe flow once under a temporary Prefect server; split its wall time.

    The models are already in voxflow's process pool (loaded above), so the flow's stages do no
    model loading: what remains beyond vad + asr is extraction, hashing, preflight, writing and
    Prefect's orchestration.
    """
    started = time.perf_counter()
    from prefect.testing.utilities import prefect_test_harness

    from flows.transcribe import transcribe

    import_s = time.perf_counter() - started
    shutil.rmtree(FLOW_OUTPUT, ignore_errors=True)  # no stage cache: every stage really runs
    with contextlib.ExitStack() as stack:
        started = time.perf_counter()
        stack.enter_context(prefect_test_harness(server_startup_timeout=180))
        server_s = time.perf_counter() - started
        log.info("prefect server up in %.1f s; running the flow", server_s)
        flow_s, record = timed(
            lambda: transcribe(
                str(MEDIA), profile="cpu", output_dir=str(FLOW_OUTPUT), store=str(STORE)
            )
        )
        started = time.perf_counter()
    stop_s = time.perf_counter() - started
    from tasks.transcript import Transcript

    transcript = Transcript.load(next(FLOW_OUTPUT.glob("*/records/transcript.json")))
    stages = {k: v["seconds"] for k, v in record["stages"].items()}
    vad_asr = stages.get("vad", 0.0) + stages.get("asr", 0.0)
    in_flow = record["wall_seconds"]
    return {
        "import_seconds": round(import_s, 3),
        "server_start_seconds": round(server_s, 3),
        "server_stop_seconds": round(stop_s, 3),
        "flow_call_seconds": round(flow_s, 3),
        "record_wall_seconds": in_flow,
        "stage_seconds": stages,
        "vad_plus_asr_seconds": round(vad_asr, 3),
        "overhead": {
            # Everything the flow call costs beyond the two model stages.
            "flow_call_minus_vad_asr": round(flow_s - vad_asr, 3),
            # Of which: extraction, hashing, preflight, writing, inside the flow body.
            "in_flow_minus_vad_asr": round(in_flow - vad_asr, 3),
            "extract_stage": stages.get("extract"),
            "in_flow_other": round(in_flow - vad_asr - stages.get("extract", 0.0), 3),
            # Prefect creating and finishing the flow run around the body.
            "engine_outside_body": round(flow_s - in_flow, 3),
            # A one-file run in a fresh process also pays for the server start.
            "including_server_start": round(flow_s - vad_asr + server_s, 3),
        },
        "models_preloaded": True,
        "model_load_seconds_not_included": round(load_s["voxflow_vad"] + load_s["voxflow_asr"], 3),
        "wer": wer(reference, transcript.text),
    }


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("faster-whisper", "ctranslate2", "onnxruntime", "prefect", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out


# ------------------------------------------------------------------------------------- output


LABELS = {
    "bare_batched": "bare batched (incl. its VAD)",
    "bare_sequential": "bare sequential (incl. its VAD)",
    "voxflow_vad": "voxflow vad",
    "voxflow_asr": "voxflow asr",
    "voxflow_vad_plus_asr": "voxflow vad+asr",
    "diag_bare_batched_on_voxflow_windows": "diag: bare batched, voxflow windows",
    "diag_voxflow_asr_min_silence_160": "diag: voxflow asr, vad min_silence 160",
}


def print_report(r: dict[str, Any]) -> None:
    a = r["audio"]
    print()
    print(
        f"voxflow transcribe overhead  ({r['date']}, {r['machine']['cpus']} CPUs, "
        f"median of {r['repeat']})"
    )
    print(
        f"audio: {a['seconds']:.1f} s ({a['seconds'] / 60:.2f} min), {a['paragraphs']} "
        f"paragraphs, {a['reference_words']} words; model {r['profile']['asr_model']} "
        f"{r['profile']['asr_options']}"
    )
    print()
    print(f"{'measurement':<40} {'seconds':>8} {'RTF':>7} {'speed':>8} {'WER':>7}")
    print("-" * 74)
    wers = r["wer"]
    for key, label in LABELS.items():
        t = r["timings"].get(key)
        if t is None:
            continue
        w = wers.get(key)
        w_text = f"{100 * w:6.2f}%" if w is not None else ""
        print(
            f"{label:<38} {t['seconds']:8.2f} {t['real_time_factor']:7.4f} "
            f"{t['speed_x']:7.1f}x {w_text:>7}"
        )
    print()
    for name, value in r["ratios"].items():
        if isinstance(value, list):
            print(f"ratio {name:<52} {' '.join(f'{v:.3f}' for v in value)}")
            continue
        target = "  (target <= 1.05)" if name == "voxflow_asr / bare_batched" else ""
        print(f"ratio {name:<52} {value:6.3f}{target}")
    print()
    print("windows decoded (count, seconds of audio in them, encoder batches):")
    for side, w in r["windows"].items():
        print(
            f"  {side:<24} vad spans {w['vad_spans']:4d} ({w['vad_speech_seconds']:6.1f} s)  "
            f"windows {w['windows']:3d} ({w['window_seconds']:6.1f} s)  "
            f"batches {w['encoder_batches']}"
        )
    print(f"model load (excluded): {r['model_load_seconds']}")
    print(f"written to {RESULT.relative_to(ROOT)}")


def print_flow(f: dict[str, Any]) -> None:
    o = f["overhead"]
    print()
    print("flow (one run, temporary Prefect server, models already loaded):")
    print(f"  import prefect + flow module      {f['import_seconds']:8.2f} s")
    print(f"  server start                      {f['server_start_seconds']:8.2f} s")
    print(f"  flow call wall                    {f['flow_call_seconds']:8.2f} s")
    print(f"  flow body (record wall_seconds)   {f['record_wall_seconds']:8.2f} s")
    print(f"  stages                            {f['stage_seconds']}")
    print(
        f"  overhead = flow call - (vad+asr)  {o['flow_call_minus_vad_asr']:8.2f} s  "
        f"(server start excluded)"
    )
    print(
        f"            + server start          {o['including_server_start']:8.2f} s  "
        f"(server start included)"
    )
    print(f"    of which extract stage          {o['extract_stage']:8.2f} s")
    print(f"    hashing/preflight/write/tasks   {o['in_flow_other']:8.2f} s")
    print(f"    engine around the flow body     {o['engine_outside_body']:8.2f} s")
    print(f"  flow transcript WER               {100 * f['wer']:7.2f} %")
    print(f"flow figures added to {RESULT.relative_to(ROOT)}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="timed runs per measurement")
    parser.add_argument("--minutes", type=float, default=5.5, help="length of the recording")
    parser.add_argument("--regenerate", action="store_true", help="re-speak the recording")
    parser.add_argument("--skip-flow", action="store_true", help="do not run the Prefect flow")
    parser.add_argument(
        "--skip-diagnostics",
        action="store_true",
        help="do not time the bare pipeline on voxflow's windows",
    )
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s bench: %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False

    results, reference = run(args)
    # Saved and shown before the flow runs, so a failing flow does not lose the timings.
    RESULT.write_text(json.dumps(results, indent=1))
    print_report(results)
    if not args.skip_flow:
        results["flow"] = flow_overhead(results["model_load_seconds"], reference)
        RESULT.write_text(json.dumps(results, indent=1))
        print_flow(results["flow"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
