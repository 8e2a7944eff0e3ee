"""GPU check: speed and GPU memory of the ``cuda`` profile's stages, with random weights.

Made for an air-gapped machine with one CUDA GPU, Python and PyTorch (no hub, no internet).
Nothing it prints says anything about accuracy: every model has random weights, so the
transcript is gibberish. What it measures is what a production run costs on that GPU, because
the architectures, sizes, on-disk formats, loaders, options and code paths are the production
ones:

1. packages: each module the stages import is looked up (``importlib.util.find_spec``); the
   missing ones are installed from ``--wheels DIR`` (``pip install --no-index --no-deps
   --target SITE``, never into the interpreter's own environment), a folder that
   ``bench/gpu_wheels.sh`` fills on a connected machine; nothing is installed when nothing is
   missing. voxflow itself is the repository this file lives in, put on ``sys.path``. PyAV,
   which faster-whisper imports but the asr backend never uses, is stood in for when missing
   (:func:`stand_in_for_pyav`);
2. models, built with random weights in a temporary folder, at production size (``--small``:
   the same architectures, tiny, for a CPU smoke test):

   * faster-whisper-large-v3: a transformers ``WhisperForConditionalGeneration`` with
     large-v3's configuration (d_model 1280, 32 + 32 layers, 20 heads, FFN 5120, 128 mel bins,
     vocabulary 51866), saved in float16 and converted by CTranslate2's
     ``TransformersConverter`` at float16, with large-v3's token layout (a multilingual-size
     tokenizer made from the shipped tiny.en one: its byte-level BPE, large-v3's special
     tokens and ids) and a ``preprocessor_config.json`` with ``feature_size: 128``;
   * pyannote segmentation-3.0 (PyanNet: SincNet, 4 bidirectional LSTM layers of 128, 2 linear
     layers of 128, 3 speakers in a powerset of at most 2) and wespeaker-voxceleb-resnet34-LM
     (WeSpeakerResNet34 on 80 mel bins), as pyannote Lightning checkpoints, and
     speaker-diarization-3.1's ``config.yaml`` as published;
   * htdemucs: ``demucs.htdemucs.HTDemucs`` with htdemucs' settings (4 sources,
     ``dconv_mode=3``, ``bottom_channels=512``, 7.8 s segment; 42 M parameters), saved by
     ``tasks.separate.demucs.save_repository`` as the backend loads it;

3. a ``--minutes`` recording (16 kHz mono WAV): espeak-ng reading ``bench/long_text.txt`` in
   alternating voices where espeak-ng is installed, else synthetic syllables (harmonic bursts
   at two pitches, with pauses);
4. the stages separate -> vad -> asr -> diarize, each through voxflow's own backend exactly as
   the stage tasks (``tasks/<stage>/stage.py``) call it (``tasks.registry.load_backend`` with
   the profile's stage spec), without Prefect and without the job cache. Models stay in the
   process-wide pool, as in a worker. Two departures, both printed: when VAD finds no speech
   (random weights may), ASR decodes fixed 30 s windows over the whole recording instead; and
   decoding is capped at ``--tokens-per-window`` (128) tokens per 30 s window, through
   faster-whisper's own ``max_new_tokens`` (see :class:`GenerationCap`), because a random
   decoder never emits end-of-text and would run every window to the 224 tokens CTranslate2
   allows. 128 tokens is a window of fast speech (about 4 a second), so the ASR figure is
   that of a dense recording; the tokens decoded are counted and printed. translate is not
   run (it needs an NLLB tokenizer, which cannot be made here).

For each stage it prints load seconds, seconds, real-time factor (seconds / audio seconds)
and memory: ``torch_peak_mib`` is ``torch.cuda.max_memory_allocated`` over the stage (reset at
its start, so it includes earlier stages' resident models; CTranslate2 allocates outside
torch, so it is near 0 for asr); ``gpu_peak_mib`` and ``gpu_after_mib`` are the device's used
memory (all processes, CUDA contexts and every allocator included) from NVML or
``nvidia-smi``, sampled while the stage loads and runs, and after it. The table also goes to
``--out`` as JSON.

Usage::

    bench/gpu_wheels.sh                                          # connected machine, once
    python3 bench/gpu_check.py --wheels bench/out/gpu-wheels     # the GPU machine
    .venv/bin/python bench/gpu_check.py --device cpu --minutes 0.5 --small   # smoke test
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/gpu_check.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.gpu import PROFILE, SAMPLE_RATE  # noqa: E402
from bench.gpu.memory import DeviceMemory  # noqa: E402
from bench.gpu.models import (  # noqa: E402
    build_embedding,
    build_htdemucs,
    build_segmentation,
    build_whisper,
    find_english_tokenizer,
    sizes,
    write_pipeline,
)
from bench.gpu.packages import ensure_packages, importable, wheel_distributions  # noqa: E402
from bench.gpu.recording import make_recording  # noqa: E402
from bench.gpu.report import MEMORY_FIGURES, table, versions  # noqa: E402
from bench.gpu.stages import MAX_TOKENS_PER_WINDOW, PROMPT_TOKENS, Run, run_stages  # noqa: E402

log = logging.getLogger("gpu_check")

OUT = HERE / "out"
RESULT = OUT / "gpu_check.json"
SITE = OUT / "gpu-site"


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--wheels", type=Path, help="wheels folder made by bench/gpu_wheels.sh")
    parser.add_argument("--site", type=Path, default=SITE, help="where wheels are installed")
    parser.add_argument("--device", default="cuda", help="cuda (default), or cpu to smoke-test")
    parser.add_argument("--minutes", type=float, default=10.0, help="recording length")
    parser.add_argument("--small", action="store_true", help="small models, same architectures")
    parser.add_argument(
        "--tokens-per-window",
        type=int,
        default=128,
        help=f"tokens decoded per 30 s window, {PROMPT_TOKENS} to {MAX_TOKENS_PER_WINDOW} (128)",
    )
    parser.add_argument("--out", type=Path, default=RESULT, help="JSON report")
    parser.add_argument("--work", type=Path, help="work folder (a new temporary one if unset)")
    parser.add_argument("--keep", action="store_true", help="keep the work folder")
    parser.add_argument("--debug", action="store_true", help="tracebacks of failed stages")
    parser.add_argument("--print-wheels", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if args.print_wheels:  # for bench/gpu_wheels.sh: one distribution a line
        print("\n".join(wheel_distributions()))
        return 0
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    # Offline, as an inference worker is: no hub look-ups, no pyannote telemetry.
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ.setdefault("PYANNOTE_METRICS_ENABLED", "false")
    if not PROMPT_TOKENS <= args.tokens_per_window <= MAX_TOKENS_PER_WINDOW:
        print(
            f"gpu_check: --tokens-per-window must be {PROMPT_TOKENS} to {MAX_TOKENS_PER_WINDOW}",
            file=sys.stderr,
        )
        return 2
    started = time.perf_counter()

    installed = ensure_packages(args.wheels, args.site.resolve())
    import torch

    cuda = args.device == "cuda"
    if cuda and not torch.cuda.is_available():
        print("gpu_check: --device cuda, but torch sees no CUDA device", file=sys.stderr)
        return 2
    memory = DeviceMemory(torch.cuda.current_device()) if cuda else None
    if cuda:  # the CUDA context is made here, not inside the first stage's figures
        torch.zeros(1, device="cuda")
        torch.cuda.synchronize()
    english = find_english_tokenizer(args.wheels)

    work = args.work or Path(tempfile.mkdtemp(prefix="voxflow-gpu-check-"))
    work.mkdir(parents=True, exist_ok=True)
    report: dict[str, Any] = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "device": args.device,
        "small": args.small,
        "host": f"{platform.node()} {platform.machine()}, {os.cpu_count()} CPU(s)",
        "gpu": memory.describe() if memory else {},
        "gpu_memory_source": memory.source if memory else "none",
        "versions": versions(),
        "installed_from_wheels": installed,
        "pyav": "installed" if importable("av") else "stand-in (not installed)",
        "memory_figures": MEMORY_FIGURES,
    }
    try:
        shape = sizes(args.small)
        models = {
            "separate": work / "models" / "htdemucs",
            "vad": work / "models" / "pyannote-segmentation-3.0",
            "segmentation": work / "models" / "pyannote-segmentation-3.0",
            "embedding": work / "models" / "wespeaker-voxceleb-resnet34-lm",
            "diarize": work / "models" / "pyannote-speaker-diarization-3.1",
            "asr": work / "models" / "faster-whisper-large-v3",
        }
        builders: dict[str, Callable[[], dict[str, Any]]] = {
            "htdemucs": lambda: build_htdemucs(models["separate"], shape),
            "pyannote-segmentation-3.0": lambda: build_segmentation(models["vad"], shape),
            "wespeaker-voxceleb-resnet34-lm": lambda: build_embedding(models["embedding"], shape),
            "pyannote-speaker-diarization-3.1": lambda: write_pipeline(models["diarize"]),
            "faster-whisper-large-v3": lambda: build_whisper(
                models["asr"], english, shape, args.device
            ),
        }
        report["models"] = {}
        unbuilt: dict[str, str] = {}
        for name, build in builders.items():
            log.info("building %s (%s, random weights)", name, "small" if args.small else "full")
            t0 = time.perf_counter()
            try:
                facts = build()
            except Exception as e:  # its stages are reported as not run, the others still run
                unbuilt[name] = f"{type(e).__name__}: {e}"
                facts = {"error": unbuilt[name], "traceback": traceback.format_exc()[-4000:]}
                log.error("building %s failed: %s", name, unbuilt[name])
            report["models"][name] = {"build_s": round(time.perf_counter() - t0, 1), **facts}

        media = work / "recording.wav"
        seconds = args.minutes * 60.0
        log.info("making a %.1f s recording", seconds)
        how = make_recording(media, seconds)
        report["audio"] = {"seconds": seconds, "made_by": how, "sample_rate": SAMPLE_RATE}

        rows = run_stages(
            Run(media, seconds), models, unbuilt, args.device, args.tokens_per_window, memory
        )
    finally:
        if not args.keep and args.work is None:
            shutil.rmtree(work, ignore_errors=True)

    report["stages"] = [dataclasses.asdict(r) for r in rows]
    report["elapsed_s"] = round(time.perf_counter() - started, 1)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(report, indent=1, default=str))

    label = "small models" if args.small else "production-size models"
    print(
        f"\nvoxflow gpu_check: profile {PROFILE} on {args.device} "
        f"({report['gpu'].get('name', platform.processor() or platform.machine())}), "
        f"{label}, random weights: speed and memory, not accuracy"
    )
    source = report["gpu_memory_source"]
    print(f"audio {seconds:.0f} s ({how}); memory in MiB, device figures from {source}")
    print(table(rows, seconds))
    if cuda:
        for name, meaning in MEMORY_FIGURES.items():
            print(f"  {name}: {meaning}")
    built = (
        f"{k} {'FAILED' if 'error' in v else v['build_s']}" + ("" if "error" in v else " s")
        for k, v in report["models"].items()
    )
    print("build: " + ", ".join(built))
    print(f"elapsed {report['elapsed_s']} s; written {args.out}")
    failed = [r for r in rows if r.error]
    if args.debug:
        for r in failed:
            print(f"\n--- {r.stage}\n{r.traceback}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
