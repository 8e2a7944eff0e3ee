"""The whole ``transcribe`` flow, once, under a temporary Prefect server: its wall time split
into server start, the model stages and the rest."""

from __future__ import annotations

import contextlib
import logging
import shutil
import time
from typing import Any

from bench.overhead import FLOW_OUTPUT, MEDIA, STORE
from bench.overhead.measure import timed, wer

log = logging.getLogger("bench")


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
