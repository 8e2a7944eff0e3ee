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
import json  # noqa: E402
import logging  # noqa: E402
import sys  # noqa: E402
from pathlib import Path  # noqa: E402

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/transcribe_overhead.py` from anywhere
    sys.path.insert(0, str(ROOT))

from bench.overhead import RESULT  # noqa: E402
from bench.overhead.compare import run  # noqa: E402
from bench.overhead.flow import flow_overhead  # noqa: E402
from bench.overhead.report import print_flow, print_report  # noqa: E402

log = logging.getLogger("bench")


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
