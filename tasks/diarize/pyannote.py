"""pyannote speaker diarization (3.1's structure) with every sub-model from the model volume.

A pipeline snapshot holds only ``config.yaml``; its segmentation and embedding models are hub ids
(3.1: ``pyannote/segmentation-3.0``, ``pyannote/wespeaker-voxceleb-resnet34-LM``) or ``$model/...``
folders of the same repository (community-1). Loaded as is, pyannote would fetch them at run time.
So the config is read from the local snapshot and rewritten before pyannote sees it:

* ``segmentation`` and ``embedding`` point at the checkpoints of the ``segmentation_model`` and
  ``embedding_model`` options (which arrive as local snapshot folders), or at ``$model/...``
  folders inside the snapshot; any other reference is refused, naming the option to set;
* ``plda``: pyannote 4 loads one for every pipeline, by default from the hub repository of
  community-1, even when the clustering (3.1's agglomerative clustering) never uses it. It comes
  from ``plda_model`` or the snapshot when given; otherwise, for clustering that does not use
  it, an inert one is built in memory, and VBx clustering without one is refused.

Models are passed as ``{"checkpoint": <local file>}`` mappings, never as strings: pyannote picks
an embedding loader by substrings of a string ("wespeaker", "speechbrain", "nvidia"), which a
local path may well contain.
"""

from __future__ import annotations

import copy
import io
import logging
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from tasks.diarize import Diarization, DiarizeBackend, SpeakerCount, SpeakerTurn
from tasks.diarize.pyannote_local import REQUIRES, checkpoint_file, import_pyannote, waveform_input
from voxflow.errors import BadInput, ModelNotWarmed, ProfileError

log = logging.getLogger(__name__)

PIPELINE_FILE = "config.yaml"
_WHERE = "stages.diarize.options"
_MODEL_PARAMS = {"segmentation": "segmentation_model", "embedding": "embedding_model"}
_SNAPSHOT_PREFIX = "$model/"
_PLDA_FILES = ("plda.npz", "xvec_transform.npz")
_CLUSTERING_WITH_PLDA = "VBxClustering"


@dataclass(frozen=True)
class PyannoteDiarizeOptions:
    """pyannote speaker-diarization options.

    Attributes:
        device: Torch device the pipeline runs on (``cpu``, ``cuda``, ``mps``).
        segmentation_model: The segmentation model. In a profile, a catalog name; the backend
            receives its local snapshot folder. Empty: the pipeline snapshot's own folder.
        embedding_model: The speaker-embedding model, likewise.
        plda_model: A folder with ``plda.npz`` and ``xvec_transform.npz`` (or a ``plda/``
            folder holding them), for VBx clustering (community-1); likewise.
        segmentation_batch_size: Chunks per segmentation forward pass (None: the config's).
        embedding_batch_size: Chunks per embedding forward pass (None: the config's).
        num_speakers: Exact number of speakers, when known (a run's own count wins).
        min_speakers: At least this many speakers.
        max_speakers: At most this many speakers.
    """

    device: str = "cpu"
    segmentation_model: str | None = None
    embedding_model: str | None = None
    plda_model: str | None = None
    segmentation_batch_size: int | None = None
    embedding_batch_size: int | None = None
    num_speakers: int | None = None
    min_speakers: int | None = None
    max_speakers: int | None = None

    def __post_init__(self) -> None:
        for key in ("segmentation_batch_size", "embedding_batch_size"):
            value = getattr(self, key)
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise ProfileError(
                    f"expected a whole number, found {value!r}", key_path=f"{_WHERE}.{key}"
                )
            if value is not None and value < 1:
                raise ProfileError(
                    f"expected a batch size >= 1, found {value}", key_path=f"{_WHERE}.{key}"
                )
        try:
            self.speakers()
        except BadInput as e:
            raise ProfileError(str(e), key_path=f"{_WHERE}.num_speakers") from e

    def speakers(self) -> SpeakerCount:
        """The profile's default speaker count."""
        return SpeakerCount(self.num_speakers, self.min_speakers, self.max_speakers)


class PyannoteDiarize(DiarizeBackend):
    """pyannote's ``SpeakerDiarization`` pipeline, built from a rewritten local config."""

    name = "pyannote"
    Options = PyannoteDiarizeOptions
    requires = REQUIRES

    def __init__(self, model_path: Path, options: PyannoteDiarizeOptions) -> None:
        super().__init__(model_path, options)
        audio = import_pyannote("diarize")
        import torch

        folder = Path(str(model_path))
        config = local_pipeline_config(read_pipeline_config(folder), folder, options)
        self._pipeline = audio.Pipeline.from_pretrained(config)
        self._pipeline.to(torch.device(options.device))

    def diarize(self, audio: np.ndarray, sample_rate: int, speakers: SpeakerCount) -> Diarization:
        """Speaker turns of the audio; ``speakers`` overrides the profile's count when set."""
        count = speakers.or_else(self.options.speakers())
        # rounded down, so a rounded turn never ends past the audio's last sample
        duration = math.floor(1000 * len(audio) / sample_rate) / 1000
        if len(audio) == 0:
            return Diarization()
        output = self._pipeline(
            waveform_input(audio, sample_rate),
            num_speakers=count.num,
            min_speakers=count.min,
            max_speakers=count.max,
        )
        # pyannote 4 returns turns and exclusive turns; a pipeline built with legacy=True only
        # the annotation.
        full = getattr(output, "speaker_diarization", output)
        exclusive = getattr(output, "exclusive_speaker_diarization", None)
        turns = _turns(full, duration)
        labels = _labels_by_first_turn(turns)
        return Diarization(
            turns=_relabel(turns, labels),
            exclusive=_relabel(_turns(exclusive, duration), labels) if exclusive else (),
        )


def read_pipeline_config(folder: Path) -> dict[str, Any]:
    """The pipeline's ``config.yaml`` from its local snapshot.

    Raises:
        ModelNotWarmed: It is not there.
        ProfileError: It is not a pyannote pipeline config.
    """
    file = folder / PIPELINE_FILE
    if not file.is_file():
        raise ModelNotWarmed(
            "pyannote pipeline", str(folder), f"no {PIPELINE_FILE} there", "voxflow warm"
        )
    config = yaml.safe_load(file.read_text(encoding="utf-8"))
    if not isinstance(config, dict) or not isinstance(config.get("pipeline"), dict):
        raise ProfileError("not a pyannote pipeline config (no 'pipeline' mapping)", file=str(file))
    return config


def local_pipeline_config(
    config: dict[str, Any], folder: Path, options: PyannoteDiarizeOptions
) -> dict[str, Any]:
    """The pipeline config with every model, and the PLDA, loaded from local files.

    Args:
        config: The pipeline's ``config.yaml``, as read (not modified).
        folder: The pipeline's snapshot folder (``$model/...`` references resolve inside it).
        options: The backend's options; ``*_model`` options are local folders by now.

    Returns:
        A new config for ``Pipeline.from_pretrained``.

    Raises:
        ProfileError: A model is only named by a hub id and no option gives a local one, or
            VBx clustering has no PLDA.
        ModelNotWarmed: A local folder lacks the files it should hold.
    """
    config = copy.deepcopy(config)
    params = config["pipeline"].setdefault("params", {})
    for param, option in _MODEL_PARAMS.items():
        local = getattr(options, option)
        folder_or_file = Path(local) if local else _snapshot_ref(params.get(param), folder, option)
        params[param] = {"checkpoint": str(checkpoint_file(folder_or_file, option))}

    clustering = params.get("clustering", _CLUSTERING_WITH_PLDA)
    if options.plda_model:
        params["plda"] = str(_plda_folder(Path(options.plda_model)))
    elif "plda" in params:
        params["plda"] = str(_plda_folder(_snapshot_ref(params["plda"], folder, "plda_model")))
    elif clustering != _CLUSTERING_WITH_PLDA:
        params["plda"] = _inert_plda()
    else:
        raise ProfileError(
            f"{clustering} clustering needs a PLDA and the pipeline config names none; set "
            "plda_model to a catalog model holding plda.npz and xvec_transform.npz",
            key_path=f"{_WHERE}.plda_model",
        )
    for key in ("segmentation_batch_size", "embedding_batch_size"):
        if getattr(options, key) is not None:
            params[key] = getattr(options, key)
    # The profile's device option decides where it runs, not the snapshot.
    config.pop("device", None)
    return config


def _snapshot_ref(value: Any, folder: Path, option: str) -> Path:
    """A ``$model/<sub>`` reference as a folder of the snapshot; anything else is refused."""
    ref = value.get("checkpoint") if isinstance(value, dict) else value
    subfolder = value.get("subfolder") if isinstance(value, dict) else None
    if isinstance(ref, str) and ref.startswith(_SNAPSHOT_PREFIX):
        sub = ref.removeprefix(_SNAPSHOT_PREFIX).split("@", 1)[0]
        return folder / sub / (subfolder or "")
    raise ProfileError(
        f"the pipeline config loads it from {ref!r}, which would be fetched at run time; "
        f"set {option} to the catalog name of a local copy",
        key_path=f"{_WHERE}.{option}",
    )


def _plda_folder(folder: Path) -> Path:
    for candidate in (folder, folder / "plda"):
        if all((candidate / name).is_file() for name in _PLDA_FILES):
            return candidate
    raise ModelNotWarmed(
        "pyannote PLDA", str(folder), f"no {' and '.join(_PLDA_FILES)} there", "voxflow warm"
    )


def _inert_plda() -> Any:
    """A PLDA that clustering other than VBx never reads, built in memory through the public
    constructor (which reads two ``.npz`` files: identity transforms here)."""
    from pyannote.audio.core.plda import PLDA

    def npz(**arrays: np.ndarray) -> io.BytesIO:
        buffer = io.BytesIO()
        np.savez(buffer, **arrays)
        buffer.seek(0)
        return buffer

    dim = 2
    zeros, eye = np.zeros(dim), np.eye(dim)
    return PLDA(
        npz(mean1=zeros, mean2=zeros, lda=eye),
        npz(mu=zeros, tr=eye, psi=np.ones(dim)),
        lda_dimension=dim,
    )


def _turns(annotation: Any, duration: float) -> list[SpeakerTurn]:
    """Turns of a pyannote Annotation, clipped to the audio, in time order."""
    turns = []
    for segment, _, label in annotation.itertracks(yield_label=True):
        start, end = round(max(segment.start, 0.0), 3), min(round(segment.end, 3), duration)
        if end > start:
            turns.append(SpeakerTurn(start, end, str(label)))
    return sorted(turns, key=lambda t: (t.start, t.end, t.speaker))


def _labels_by_first_turn(turns: list[SpeakerTurn]) -> dict[str, str]:
    """pyannote's labels -> SPEAKER_00, SPEAKER_01, … in the order the speakers first talk."""
    order = list(dict.fromkeys(t.speaker for t in turns))
    return {label: f"SPEAKER_{i:02d}" for i, label in enumerate(order)}


def _relabel(turns: list[SpeakerTurn], labels: dict[str, str]) -> tuple[SpeakerTurn, ...]:
    # An exclusive turn's speaker always has a full turn too; keep any stray label visible.
    return tuple(SpeakerTurn(t.start, t.end, labels.get(t.speaker, t.speaker)) for t in turns)
