"""pyannote.audio from the model volume only: local checkpoints, no hub ids, no telemetry.

Both pyannote backends (segmentation VAD and speaker diarization) load through here, so the rules
that keep pyannote offline live in one place:

* a model is loaded from the ``pytorch_model.bin`` inside its local snapshot folder, never from a
  string pyannote could mistake for a hub id;
* pyannote 4's usage telemetry (an OpenTelemetry exporter to otel.pyannote.ai, on by default) is
  switched off before any model or pipeline is built;
* audio goes in as an in-memory waveform, so pyannote never decodes files itself.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import numpy as np

from voxflow.errors import BackendUnavailable, ModelNotWarmed

log = logging.getLogger(__name__)

CHECKPOINT = "pytorch_model.bin"
"""The file name pyannote gives a model checkpoint (``AssetFileName.Model``)."""

REQUIRES: tuple[tuple[str, str], ...] = (
    ("torch", "torch"),
    ("pyannote.audio", "pyannote.audio"),
)


def import_pyannote(stage: str) -> Any:
    """``pyannote.audio``, with its telemetry switched off.

    pyannote 4 reports every model load and pipeline run to otel.pyannote.ai unless
    ``PYANNOTE_METRICS_ENABLED`` is false. Its own switch, ``set_telemetry_metrics(False)``,
    does that through the process environment; that breaks our rule that library code leaves
    ``os.environ`` alone, but the alternative is a network call from an inference stage, which
    the offline guarantee rules out. The CLI and the load check set the variable themselves.

    Raises:
        BackendUnavailable: pyannote.audio is not installed.
    """
    try:
        import pyannote.audio
        from pyannote.audio.telemetry import set_telemetry_metrics
        from pyannote.audio.telemetry.metrics import is_metrics_enabled
    except ImportError as e:
        raise BackendUnavailable(
            stage, "pyannote", "pyannote.audio", "install it with `pip install pyannote.audio`"
        ) from e
    if is_metrics_enabled():
        log.info("switching pyannote telemetry off: inference stays offline")
        set_telemetry_metrics(False)
    return pyannote.audio


def checkpoint_file(folder: str | Path, model: str) -> Path:
    """The checkpoint inside a model's snapshot folder (or the file itself).

    Args:
        folder: A local snapshot folder holding ``pytorch_model.bin``, or that file.
        model: What to call the model in errors (an option name or catalog name).

    Raises:
        ModelNotWarmed: There is no such local file.
    """
    path = Path(folder)
    file = path / CHECKPOINT if path.is_dir() else path
    if not file.is_file():
        raise ModelNotWarmed(
            model,
            str(path),
            f"no pyannote checkpoint {CHECKPOINT} there",
            "voxflow warm",
        )
    return file


def load_model(folder: str | Path, model: str, device: str, stage: str) -> Any:
    """A pyannote ``Model`` from a local snapshot folder, in eval mode on ``device``.

    Args:
        folder: The model's snapshot folder (or its checkpoint file).
        model: What to call the model in errors.
        device: A torch device name (``cpu``, ``cuda``, ``mps``).
        stage: The stage loading it, for errors.

    Raises:
        ModelNotWarmed: The folder holds no checkpoint.
        BackendUnavailable: pyannote.audio is not installed.
    """
    audio = import_pyannote(stage)
    import torch

    file = checkpoint_file(folder, model)
    loaded = audio.Model.from_pretrained(str(file), map_location=torch.device(device))
    loaded.eval()
    return loaded.to(torch.device(device))


def waveform_input(audio: np.ndarray, sample_rate: int) -> dict[str, Any]:
    """pyannote's in-memory audio: ``{"waveform": (1, samples) float tensor, "sample_rate"}``."""
    import torch

    samples = np.ascontiguousarray(audio, dtype=np.float32).reshape(1, -1)
    return {"waveform": torch.from_numpy(samples), "sample_rate": sample_rate}
