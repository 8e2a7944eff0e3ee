"""Bare faster-whisper against voxflow's cpu-profile vad and asr stages, on one decoded array,
model loading excluded, repeated and interleaved; the windows each side decodes."""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import statistics
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from bench.overhead import DECODED, MEDIA, ROOT, SR, STORE
from bench.overhead.measure import normalise, row, timed, wer
from bench.overhead.recording import recording

FINE_MIN_SILENCE_MS = 160  # faster-whisper's BatchedInferencePipeline VAD default

log = logging.getLogger("bench")


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


def _versions() -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for pkg in ("faster-whisper", "ctranslate2", "onnxruntime", "prefect", "numpy"):
        try:
            out[pkg] = version(pkg)
        except PackageNotFoundError:
            out[pkg] = "missing"
    return out
