"""The tables printed: the timings, ratios and windows, then the flow's figures."""

from __future__ import annotations

from typing import Any

from bench.overhead import RESULT, ROOT

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
