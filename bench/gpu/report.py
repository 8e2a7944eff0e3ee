"""Report: the stage table as text, what the memory figures mean, the packages' versions."""

from __future__ import annotations

import contextlib
import platform
from typing import Any

from bench.gpu.stages import StageRow

COLUMNS = (
    "stage",
    "load_s",
    "seconds",
    "rtf",
    "torch_start_mib",
    "torch_peak_mib",
    "gpu_peak_mib",
    "gpu_after_mib",
)


def table(rows: list[StageRow], duration: float) -> str:
    """The stage table as text, with a total line, then each stage's note or error."""

    def cell(value: Any) -> str:
        return "-" if value is None else str(value)

    lines = [[cell(getattr(r, c)) for c in COLUMNS] for r in rows]
    ran = [r for r in rows if r.seconds is not None]
    seconds = round(sum(r.seconds or 0.0 for r in ran), 2)
    load = round(sum(r.load_s or 0.0 for r in ran), 2)
    lines.append(["total", str(load), str(seconds), str(round(seconds / duration, 4))] + ["-"] * 4)
    widths = [max(len(c), *(len(line[i]) for line in lines)) for i, c in enumerate(COLUMNS)]

    def joined(values: list[str] | tuple[str, ...]) -> str:
        # the stage name left-aligned, the figures right-aligned
        return "  ".join(
            value.rjust(width) if i else value.ljust(width)
            for i, (value, width) in enumerate(zip(values, widths, strict=True))
        )

    out = [joined(COLUMNS), *(joined(line) for line in lines)]
    for r in rows:
        text = f"ERROR {r.error}" if r.error else r.note
        out.append(f"  {r.stage} ({r.backend}, {r.model}): {text}")
    return "\n".join(out)


MEMORY_FIGURES = {
    "torch_peak_mib": "torch.cuda.max_memory_allocated over the stage, reset at its start (so it "
    "includes earlier stages' resident models, torch_start_mib); torch's allocator only: "
    "CTranslate2 (asr) allocates outside it",
    "torch_reserved_peak_mib": "torch.cuda.max_memory_reserved over the stage (its cache)",
    "gpu_before_mib / gpu_peak_mib / gpu_after_mib": "the device's used memory (every process "
    "and allocator, CUDA contexts included) before the stage, the highest sampled while it "
    "loaded and ran, and after it with its model still loaded (as in a worker)",
}


def versions() -> dict[str, str]:
    """Versions of the packages the stages use, and of Python."""
    import importlib.metadata as md

    import torch

    out = {"python": platform.python_version(), "torch_cuda": str(torch.version.cuda)}
    for name in (
        "torch",
        "torchaudio",
        "numpy",
        "transformers",
        "ctranslate2",
        "faster-whisper",
        "pyannote.audio",
        "demucs",
    ):
        with contextlib.suppress(md.PackageNotFoundError):
            out[name] = md.version(name)
    return out
