"""The offline load check: a stage's own backend loads its warmed model and runs on 1 s of audio.

It runs in a child process with the network disabled (a fresh network namespace where the
machine allows one, and always a socket guard plus ``HF_HUB_OFFLINE=1``), so a model that is
cached but still fetches a tokenizer, a processor or a sub-model at load time fails here, during
the warm, instead of later during inference.

Usage (what :func:`run_load_check` spawns): ``python -m tasks.loadcheck '<json request>'``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np


@dataclass(frozen=True)
class LoadCheck:
    """Outcome of one stage's load check."""

    stage: str
    backend: str
    model: str | None
    ok: bool
    seconds: float
    detail: str


def _test_audio(seconds: float = 1.0, rate: int = 16_000) -> np.ndarray:
    """A second of quiet noise with a tone: enough to drive every stage's code path."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def check_in_process(
    stage: str,
    backend: str,
    options: dict[str, Any],
    model_path: str | None,
    submodels: dict[str, str] | None = None,
) -> str:
    """Load the backend from the local model path and run it once; return a short summary.

    ``submodels`` maps option keys naming catalog models (pyannote's ``segmentation_model``)
    to their local folders, as at inference.
    """
    from profiles import StageSpec
    from tasks.registry import load_backend
    from tasks.transcript import SpeechSpan

    spec = StageSpec(stage=stage, backend=backend, model=None, enabled=True, options=options)
    impl = load_backend(spec, Path(model_path) if model_path else None, submodels)
    audio = _test_audio()
    if stage == "vad":
        spans = impl.speech_spans(audio, 16_000)
        return f"{len(spans)} speech span(s) in 1 s of test audio"
    if stage == "asr":
        transcript = impl.transcribe(audio, [SpeechSpan(0.0, 1.0)], None)
        return f"decoded 1 s of test audio ({len(transcript.segments)} segment(s))"
    if stage == "separate":
        stem = impl.separate(audio, 16_000)
        return f"separated the {impl.stem} stem of 1 s of test audio ({stem.size} samples)"
    if stage == "diarize":
        from tasks.diarize import SpeakerCount

        diarization = impl.diarize(audio, 16_000, SpeakerCount())
        return f"{len(diarization.turns)} speaker turn(s) in 1 s of test audio"
    if stage == "translate":
        source, target = impl.supported_pairs()[0]
        text = impl.translate(["Hello, world."], source, target)[0]
        return f"translated a test sentence {source}->{target} ({len(text)} characters)"
    raise ValueError(f"no load check for stage {stage!r}")


def _network_namespace_prefix() -> list[str]:
    """``unshare -n`` when this process may create a network namespace, else nothing."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return []
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
    return [unshare, "-n"] if probe.returncode == 0 else []


def run_load_check(
    stage: str,
    backend: str,
    options: dict[str, Any],
    model: str | None,
    model_path: str | None,
    timeout: float = 600,
    submodels: dict[str, str] | None = None,
) -> LoadCheck:
    """Run :func:`check_in_process` in a child process with the network disabled."""
    request = json.dumps(
        {
            "stage": stage,
            "backend": backend,
            "options": options,
            "model_path": model_path,
            "submodels": submodels or {},
        }
    )
    env = dict(
        os.environ,
        HF_HUB_OFFLINE="1",
        TRANSFORMERS_OFFLINE="1",
        HF_DATASETS_OFFLINE="1",
        PYANNOTE_METRICS_ENABLED="0",
    )
    command = [*_network_namespace_prefix(), sys.executable, "-m", "tasks.loadcheck", request]
    started = time.perf_counter()
    try:
        proc = subprocess.run(command, capture_output=True, text=True, env=env, timeout=timeout)
    except subprocess.TimeoutExpired:
        return LoadCheck(stage, backend, model, False, timeout, f"timed out after {timeout:.0f} s")
    seconds = round(time.perf_counter() - started, 2)
    if proc.returncode == 0:
        detail = proc.stdout.strip().splitlines()[-1] if proc.stdout.strip() else "ok"
        return LoadCheck(stage, backend, model, True, seconds, detail)
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    return LoadCheck(stage, backend, model, False, seconds, tail)


def main(argv: list[str]) -> int:
    """Child-process entry point: guard the network, then check."""
    from voxflow import netguard

    netguard.install(allow_loopback=False)
    req = json.loads(argv[0])
    try:
        summary = check_in_process(
            req["stage"], req["backend"], req["options"], req["model_path"], req.get("submodels")
        )
    except Exception as e:  # the parent reports it; the child's only job is to say what broke
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        return 1
    sys.stdout.write(summary + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
