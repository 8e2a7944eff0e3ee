"""Packages: each module the stages import is looked up, and the missing ones installed.

Installs come from ``--wheels DIR`` (``pip install --no-index --no-deps --target SITE``, never
into the interpreter's own environment), a folder that ``bench/gpu_wheels.sh`` fills on a
connected machine. PyAV is stood in for when missing (:func:`stand_in_for_pyav`), and
CTranslate2's CUDA 12 cuBLAS is looked for (:func:`cublas12_status`).
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib
import importlib.machinery
import importlib.util
import logging
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

log = logging.getLogger("gpu_check")


NEEDED: tuple[tuple[str, str], ...] = (
    # (import name, distribution). What the stages and the model builders import, and what the
    # packages installed from wheels import when they run (they are installed with --no-deps);
    # a package found installed is taken to have its own dependencies. Found by running this
    # check where only the GPU image's packages and these were installed: declared
    # dependencies never imported (pytorch-metric-learning, googleapis-common-protos, torchcodec,
    # SQLAlchemy, PyAV) are left out.
    #
    # PyTorch: the machine's own CUDA build, never installed from wheels
    ("torch", "torch"),
    ("torchaudio", "torchaudio"),
    # voxflow (profiles, tasks) and the model builders
    ("numpy", "numpy"),
    ("yaml", "pyyaml"),
    ("transformers", "transformers"),
    ("lightning", "lightning"),
    # asr: faster-whisper on CTranslate2 (PyAV, imported for file decoding, is stood in for)
    ("ctranslate2", "ctranslate2"),
    ("faster_whisper", "faster-whisper"),
    ("tokenizers", "tokenizers"),
    ("huggingface_hub", "huggingface-hub"),
    ("tqdm", "tqdm"),
    # separate: Demucs
    ("einops", "einops"),
    ("julius", "julius"),
    ("demucs", "demucs"),
    # vad and diarize: pyannote.audio 4, its telemetry (switched off, but imported) and tuner
    ("packaging", "packaging"),
    ("typing_extensions", "typing-extensions"),
    ("requests", "requests"),
    ("google.protobuf", "protobuf"),
    ("scipy", "scipy"),
    ("sklearn", "scikit-learn"),
    ("pandas", "pandas"),
    ("matplotlib", "matplotlib"),
    ("sortedcontainers", "sortedcontainers"),
    ("rich", "rich"),
    ("torchmetrics", "torchmetrics"),
    ("opentelemetry", "opentelemetry-api"),
    ("opentelemetry.sdk", "opentelemetry-sdk"),
    ("opentelemetry.semconv", "opentelemetry-semantic-conventions"),
    ("opentelemetry.proto", "opentelemetry-proto"),
    ("opentelemetry.exporter.otlp.proto.common", "opentelemetry-exporter-otlp-proto-common"),
    ("opentelemetry.exporter.otlp.common", "opentelemetry-exporter-otlp-common"),
    ("opentelemetry.exporter.http.transport", "opentelemetry-exporter-http-transport"),
    ("opentelemetry.exporter.otlp.proto.http", "opentelemetry-exporter-otlp-proto-http"),
    ("colorlog", "colorlog"),
    ("optuna", "optuna"),
    ("asteroid_filterbanks", "asteroid-filterbanks"),
    ("primePy", "primepy"),
    ("torch_pitch_shift", "torch-pitch-shift"),
    ("torch_audiomentations", "torch-audiomentations"),
    ("pyannote.core", "pyannote.core"),
    ("pyannote.database", "pyannote.database"),
    ("pyannote.metrics", "pyannote.metrics"),
    ("pyannote.pipeline", "pyannote.pipeline"),
    ("pyannote.audio", "pyannote.audio"),
)

ON_GPU_IMAGE = frozenset(
    # Distributions of NEEDED that the device machine's image ('cuda') already holds, by its
    # package list in /work/.library/device/KINDS.md (read 2026-11-17); bench/gpu_wheels.sh
    # downloads the others. Its torch is 2.11 for CUDA 13 and its versions are its own.
    "torch torchaudio numpy pyyaml transformers lightning tokenizers huggingface-hub tqdm "
    "einops packaging typing-extensions requests protobuf scipy scikit-learn pandas matplotlib "
    "sortedcontainers rich torchmetrics".split()
)

PREINSTALLED = frozenset({"torch", "torchaudio"})
"""Never installed from wheels: the GPU machine's own builds (CUDA-matched) are used."""


def importable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):  # a parent package missing, or a module without a spec
        return False


def wheel_distributions() -> list[str]:
    """Distributions the wheels folder must hold: those the stages import, less the image's."""
    return [d for _, d in NEEDED if d not in ON_GPU_IMAGE and d not in PREINSTALLED]


def ensure_packages(wheels: Path | None, site: Path) -> list[str]:
    """Make every module in :data:`NEEDED` importable, installing the missing ones.

    ``site`` is put first on ``sys.path`` (a previous run's installs are found there); what is
    still missing is installed into it, in one ``pip install --no-index --no-deps --target``
    call (one call, so namespace packages such as ``pyannote`` and ``opentelemetry`` land in
    one folder).

    Args:
        wheels: Folder of wheels made by ``bench/gpu_wheels.sh``, or None.
        site: Folder installs go to.

    Returns:
        The distributions installed (empty when everything was importable).

    Raises:
        SystemExit: Something is missing and there is no wheels folder, or pip failed.
    """
    if site.is_dir() and str(site) not in sys.path:
        sys.path.insert(0, str(site))
        importlib.invalidate_caches()
    missing = [(m, d) for m, d in NEEDED if not importable(m)]
    if not missing:
        return []
    names = list(dict.fromkeys(d for _, d in missing))
    preinstalled = [d for d in names if d in PREINSTALLED]
    if preinstalled:
        raise SystemExit(
            f"gpu_check: {', '.join(preinstalled)} must already be installed (the machine's own "
            "CUDA build); it is not importable here"
        )
    if wheels is None:
        raise SystemExit(
            f"gpu_check: missing {', '.join(names)}; make a wheels folder with "
            "bench/gpu_wheels.sh on a connected machine and pass --wheels DIR"
        )
    site.mkdir(parents=True, exist_ok=True)
    log.info("installing %d package(s) from %s into %s: %s", len(names), wheels, site, names)
    command = [
        sys.executable,
        "-m",
        "pip",
        "install",
        "--quiet",
        "--disable-pip-version-check",
        "--no-index",
        "--no-deps",
        "--no-compile",
        "--find-links",
        str(wheels),
        "--target",
        str(site),
        *names,
    ]
    proc = subprocess.run(command, capture_output=True, text=True)
    if proc.returncode != 0:
        raise SystemExit(
            f"gpu_check: pip could not install {', '.join(names)} from {wheels}:\n"
            f"{proc.stderr.strip()[-2000:]}\n(a distribution not in the folder: add it to "
            "bench/gpu_wheels.sh's EXTRA, or install it on this machine)"
        )
    if str(site) not in sys.path:
        sys.path.insert(0, str(site))
    importlib.invalidate_caches()
    still = [m for m, _ in missing if not importable(m)]
    if still:
        raise SystemExit(f"gpu_check: installed, but still not importable: {', '.join(still)}")
    return names


def stand_in_for_pyav() -> bool:
    """Register an empty ``av`` module when PyAV is not installed; True when it did.

    faster-whisper imports PyAV at import time for ``decode_audio``, which the asr backend never
    calls (it is given a float32 array). PyAV's 36 MB wheel would not fit the wheels folder's
    60 MB, so the check goes without it; any use of the stand-in raises.
    """
    if importable("av"):
        return False
    module = types.ModuleType("av")
    module.__spec__ = importlib.machinery.ModuleSpec("av", None)

    def __getattr__(name: str) -> Any:  # noqa: N807 (PEP 562 module hook)
        if name.startswith("__"):
            raise AttributeError(name)
        raise ImportError("PyAV is not installed: gpu_check.py only stood in for its import")

    module.__getattr__ = __getattr__  # type: ignore[method-assign]
    sys.modules["av"] = module
    return True


def cublas12_status() -> str | None:
    """Whether CTranslate2's CUDA 12 cuBLAS can be loaded; None when it can, else why not.

    CTranslate2's wheels load ``libcublas.so.12`` when they first multiply on the GPU. A CUDA 12
    torch has already loaded it; elsewhere a pip ``nvidia-cublas-cu12`` on ``sys.path`` is
    preloaded here (glibc then hands CTranslate2 the loaded library by its soname).
    """
    with contextlib.suppress(OSError):
        ctypes.CDLL("libcublas.so.12", mode=ctypes.RTLD_GLOBAL)
        return None
    for entry in sys.path:
        lib = Path(entry) / "nvidia" / "cublas" / "lib"
        if (lib / "libcublas.so.12").is_file():
            with contextlib.suppress(OSError):
                ctypes.CDLL(str(lib / "libcublasLt.so.12"), mode=ctypes.RTLD_GLOBAL)
                ctypes.CDLL(str(lib / "libcublas.so.12"), mode=ctypes.RTLD_GLOBAL)
                return None
    return (
        "libcublas.so.12 is not loadable: ctranslate2's wheels are built for CUDA 12 "
        "(CTranslate2 issue #1933 asks for CUDA 13), so the asr stage is expected to fail here"
    )
