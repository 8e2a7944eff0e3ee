"""Translation throughput: voxflow's transformers backend against its CTranslate2 backend.

One run builds one small random-weight NLLB-architecture model (M2M100 layers, NLLB tokenizer;
the test suite's builder at a larger size), converts it with CTranslate2's own converter, and
then, for each backend, in a fresh child process (so peak memory is that backend's alone):
loads it through ``tasks.registry.load_backend``, translates one warm-up batch, and times
``translate()`` over the same generated sentences. Reported: sentences per second, peak
resident memory of the child (``ru_maxrss``) and what loading plus translating added to the
resident memory measured just before loading (the libraries' import cost excluded), and the
ratios against transformers float32.

Random weights decode to gibberish of arbitrary length, so every backend is held to the same
``max_length`` and the output tokens per sentence are printed beside the timings.

Usage::

    .venv/bin/python bench/translate_throughput.py [--sentences 256] [--threads 1]
        [--d-model 256] [--layers 3] [--batch-size 16] [--beam-size 4] [--max-length 64]
        [--device cpu]

Results are printed and written to ``bench/out/translate_throughput.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import subprocess
import sys
import time
from datetime import UTC, datetime
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
for path in (ROOT, ROOT / "tests"):  # the tiny-model builders live with the tests
    if str(path) not in sys.path:
        sys.path.insert(0, str(path))

# (label, backend, options): what each child runs. float32 CTranslate2 is the same arithmetic
# as transformers; int8 is what the cpu profile uses.
CPU_RUNS = [
    ("transformers float32", "transformers", {"dtype": "float32"}),
    ("ctranslate2 float32", "ctranslate2", {"compute_type": "float32"}),
    ("ctranslate2 int8", "ctranslate2", {"compute_type": "int8"}),
]
CUDA_RUNS = [
    ("transformers float16", "transformers", {"dtype": "float16"}),
    ("ctranslate2 float16", "ctranslate2", {"compute_type": "float16"}),
    ("ctranslate2 int8_float16", "ctranslate2", {"compute_type": "int8_float16"}),
]


def _status_kb(field: str) -> int:
    """A ``/proc/self/status`` memory figure in KiB: VmRSS now, VmHWM the peak.

    VmHWM, unlike ``ru_maxrss``, starts afresh at exec: a child forked from this (large)
    parent would otherwise report the parent's peak as its own.
    """
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def child(request: dict) -> dict:
    """Load one backend, warm it up, time it; runs in its own process."""
    from translation_models import corpus

    from profiles import StageSpec
    from tasks.registry import load_backend

    torch = None
    if request["backend"] == "transformers":  # only its own libraries count in its memory
        import torch

        torch.set_num_threads(request["threads"])
    sentences = corpus(request["sentences"], seed=1)
    options = {
        "device": request["device"],
        "batch_size": request["batch_size"],
        "beam_size": request["beam_size"],
        "max_length": request["max_length"],
        **request["options"],
    }
    if request["backend"] == "ctranslate2":
        options["cpu_threads"] = request["threads"]
    spec = StageSpec("translate", request["backend"], "bench", options=options)
    before = _status_kb("VmRSS")
    started = time.perf_counter()
    impl = load_backend(spec, Path(request["model"]))
    load_s = time.perf_counter() - started
    impl.translate(sentences[: request["batch_size"]], "en", "fr")  # warm-up
    started = time.perf_counter()
    out = impl.translate(sentences, "en", "fr")
    seconds = time.perf_counter() - started
    if torch is not None and request["device"].startswith("cuda"):
        peak_gpu = torch.cuda.max_memory_allocated() / 2**20
    else:
        peak_gpu = None
    peak = _status_kb("VmHWM")
    return {
        "seconds": round(seconds, 3),
        "sentences_per_s": round(len(sentences) / seconds, 2),
        "load_s": round(load_s, 2),
        "peak_rss_mb": round(peak / 1024, 1),
        "added_rss_mb": round((peak - before) / 1024, 1),
        "peak_torch_cuda_mb": peak_gpu,
        "output_chars_per_sentence": round(sum(map(len, out)) / len(out), 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sentences", type=int, default=256)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--d-model", type=int, default=256)
    parser.add_argument("--layers", type=int, default=3)
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--beam-size", type=int, default=4)
    parser.add_argument("--max-length", type=int, default=64)
    parser.add_argument("--device", default="cpu", help="cpu or cuda")
    parser.add_argument("--out", type=Path, default=HERE / "out")
    parser.add_argument("--child", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.child:
        sys.stdout.write(json.dumps(child(json.loads(args.child))) + "\n")
        return 0

    import ctranslate2
    import transformers
    from translation_models import Size, build_nllb, convert_ct2

    size = Size(d_model=args.d_model, layers=args.layers, heads=4, ffn=4 * args.d_model, vocab=400)
    models = args.out / f"translate-nllb-d{size.d_model}-l{size.layers}"
    if not (models / "ct2" / "model.bin").exists():
        build_nllb(models / "hf", size)
        convert_ct2(models / "hf", models / "ct2", quantization=None)  # type chosen at load
    runs = CUDA_RUNS if args.device.startswith("cuda") else CPU_RUNS
    results = []
    for label, backend, options in runs:
        request = {
            "backend": backend,
            "options": options,
            "model": str(models / ("hf" if backend == "transformers" else "ct2")),
            "device": args.device,
            "threads": args.threads,
            "sentences": args.sentences,
            "batch_size": args.batch_size,
            "beam_size": args.beam_size,
            "max_length": args.max_length,
        }
        proc = subprocess.run(
            [sys.executable, __file__, "--child", json.dumps(request)],
            capture_output=True,
            text=True,
            check=False,
            env=dict(os.environ, HF_HUB_OFFLINE="1"),
        )
        if proc.returncode != 0:
            sys.stderr.write(proc.stderr[-3000:])
            return 1
        results.append({"label": label, **json.loads(proc.stdout.strip().splitlines()[-1])})

    base = results[0]
    print(
        f"model: NLLB architecture, d_model {size.d_model}, {size.layers}+{size.layers} layers, "
        f"random weights; {args.sentences} sentences, batch {args.batch_size}, beam "
        f"{args.beam_size}, max_length {args.max_length}, {args.threads} thread(s), "
        f"{args.device}"
    )
    header = (
        "| backend | sent/s | vs transformers | peak RSS MB | added RSS MB | load s | chars out |"
    )
    print(header + "\n|---|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['label']} | {r['sentences_per_s']:.1f} | "
            f"{r['sentences_per_s'] / base['sentences_per_s']:.2f}x | {r['peak_rss_mb']:.0f} | "
            f"{r['added_rss_mb']:.0f} | {r['load_s']:.2f} | {r['output_chars_per_sentence']:.0f} |"
        )
    args.out.mkdir(parents=True, exist_ok=True)
    record = {
        "finished_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()}, {os.cpu_count()} CPUs",
        "versions": {
            "transformers": transformers.__version__,
            "ctranslate2": ctranslate2.__version__,
        },
        "settings": {k: v for k, v in vars(args).items() if k not in ("out", "child")},
        "results": results,
    }
    (args.out / "translate_throughput.json").write_text(json.dumps(record, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
