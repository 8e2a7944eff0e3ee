"""The offline load check: a stage's own backend loads its warmed model and runs on 1 s of audio.

It runs in a child process with the network disabled (a fresh network namespace where the
machine allows one, and always a socket guard plus ``HF_HUB_OFFLINE=1``), so a model that is
cached but still fetches a tokenizer, a processor or a sub-model at load time fails here, during
the warm, instead of later during inference.

Usage (what :func:`run_load_check` spawns): ``python -m tasks.warm.loadcheck '<json request>'``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from profiles import StageSpec
from tasks.asr import AsrBackend
from tasks.asr.garbage import garbage_reason, sample
from tasks.backend import test_audio
from tasks.registry import load_failed
from tasks.transcript import SpeechSpan
from tasks.warm.preflight import ReadyStage
from voxflow.settings import run_environment


@dataclass(frozen=True)
class LoadCheck:
    """Outcome of one stage's load check."""

    stage: str
    backend: str
    model: str
    ok: bool
    seconds: float
    detail: str


def check_in_process(spec: StageSpec, ready: ReadyStage) -> str:
    """Load the stage's backend as inference does (:meth:`ReadyStage.load`) and run its
    self-check; return its summary.

    Raises:
        ModelLoadFailed: The model does not load, or (ASR) decodes the test audio into
            garbage, as damaged weights do (see :func:`check_asr_output`).
    """
    backend = ready.load(spec)
    summary = backend.self_check()
    if isinstance(backend, AsrBackend):
        check_asr_output(spec, ready, backend)
    return summary


def check_asr_output(spec: StageSpec, ready: ReadyStage, backend: AsrBackend) -> None:
    """Refuse a recogniser that decodes a second of test audio into garbage.

    Damaged weights often still load: a CTranslate2 ``model.bin`` with a megabyte overwritten
    turns every input into ``")))))..."``, which the self-check's count of segments cannot
    tell from a healthy model.

    Raises:
        ModelLoadFailed: The text is garbage (:func:`tasks.asr.garbage.garbage_reason`).
    """
    seconds = 1.0
    transcript = backend.transcribe(test_audio(seconds), [SpeechSpan(0.0, seconds)], None)
    text = " ".join(s.text.strip() for s in transcript.segments)
    reason = garbage_reason(text, seconds, [s.avg_logprob for s in transcript.segments])
    if reason is not None:
        raise load_failed(
            spec,
            Path(ready.path),
            f"decodes {seconds:.0f} s of test audio into garbage ({sample(text)}: {reason})",
        )


def _network_namespace_prefix() -> list[str]:
    """``unshare -n`` when this process may create a network namespace, else nothing."""
    unshare = shutil.which("unshare")
    if unshare is None or os.geteuid() != 0:
        return []
    probe = subprocess.run([unshare, "-n", "true"], capture_output=True)
    return [unshare, "-n"] if probe.returncode == 0 else []


def run_load_check(spec: StageSpec, ready: ReadyStage, timeout: float = 600) -> LoadCheck:
    """Run :func:`check_in_process` in a child process with the network disabled.

    Args:
        spec: The profile's stage.
        ready: What preflight found for it (:func:`tasks.warm.preflight.ready_stages`).
        timeout: Seconds the child may take.
    """
    stage, backend, model = spec.stage, spec.backend, ready.model
    request = json.dumps(
        {
            "spec": {
                "stage": spec.stage,
                "backend": spec.backend,
                "model": spec.model,
                "enabled": spec.enabled,
                "options": dict(spec.options),
            },
            "ready": dataclasses.asdict(ready),
        }
    )
    env = {**os.environ, **run_environment()}
    command = [
        *_network_namespace_prefix(),
        sys.executable,
        "-m",
        "tasks.warm.loadcheck",
        request,
    ]
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
        summary = check_in_process(StageSpec(**req["spec"]), ReadyStage(**req["ready"]))
    except Exception as e:  # the parent reports it; the child's only job is to say what broke
        sys.stderr.write(f"{type(e).__name__}: {e}\n")
        return 1
    sys.stdout.write(summary + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
