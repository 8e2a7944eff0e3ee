"""Demucs source separation, loaded from a local Demucs repository folder in the model volume.

The folder holds what ``demucs.pretrained.get_model(name, repo=folder)`` reads: a bag-of-models
descriptor ``<name>.yaml`` (``models: [<sig>, ...]``, optional ``weights`` and ``segment``) and
one checkpoint ``<sig>-<sha256 prefix>.th`` (or ``<sig>.th``) per model; or a single checkpoint,
which demucs loads by its signature (a bag of one). We read it the same way, but unpickle each
checkpoint with ``torch.load(weights_only=True)`` and only the Demucs model classes allowed,
where demucs itself would run arbitrary pickle code; nothing is ever downloaded.

Demucs works on 44.1 kHz stereo: each window of the 16 kHz mono job audio is resampled up,
normalised with the whole recording's mean and deviation (as ``demucs.separate`` does per
track), separated, and the chosen stem is mixed to mono and resampled back to 16 kHz.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from fractions import Fraction
from pathlib import Path
from typing import Any

import numpy as np

from tasks.separate import SAMPLE_RATE, SeparateBackend, Separated, stream_windows, wav_stats
from voxflow.errors import BadModel, ProfileError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class DemucsOptions:
    """Demucs options.

    Attributes:
        device: Torch device the model runs on (``cpu``, ``cuda``, ``mps``).
        stem: The source to keep; one of the model's sources (``vocals`` for voice).
        segment_s: Seconds the model sees at once (Demucs' own split); the model's training
            segment when unset, and never more than it for transformer models.
        shifts: Random time shifts averaged per segment (better quality, ``shifts`` times
            slower); 0 for none.
        overlap: Overlap between Demucs' segments, as a fraction.
        window_s: Seconds of audio read, separated and written at a time; bounds memory.
        crossfade_s: Overlap of neighbouring windows, crossfaded in the output.
    """

    device: str = "cpu"
    stem: str = "vocals"
    segment_s: float | None = None
    shifts: int = 0
    overlap: float = 0.25
    window_s: float = 60.0
    crossfade_s: float = 2.0

    def __post_init__(self) -> None:
        where = "stages.separate.options"
        if self.shifts < 0:
            raise ProfileError(
                f"expected 0 or more, found {self.shifts}", key_path=f"{where}.shifts"
            )
        if not 0.0 <= self.overlap < 1.0:
            raise ProfileError(
                f"expected a fraction in [0, 1), found {self.overlap}", key_path=f"{where}.overlap"
            )
        if self.segment_s is not None and self.segment_s <= 0:
            raise ProfileError(
                f"expected seconds > 0, found {self.segment_s}", key_path=f"{where}.segment_s"
            )
        if self.crossfade_s < 0 or self.window_s <= 2 * self.crossfade_s:
            raise ProfileError(
                f"window_s ({self.window_s} s) must exceed twice crossfade_s "
                f"({self.crossfade_s} s), which must not be negative",
                key_path=f"{where}.window_s",
            )


def _checkpoints(folder: Path) -> dict[str, tuple[Path, str | None]]:
    """Signature -> (checkpoint, checksum prefix), scanned as ``demucs.repo.LocalRepo`` does."""
    found: dict[str, tuple[Path, str | None]] = {}
    for file in sorted(folder.glob("*.th")):
        sig, _, checksum = file.stem.partition("-")
        if sig in found:
            raise BadModel(str(folder), f"two checkpoints for signature {sig!r}")
        found[sig] = (file, checksum or None)
    return found


def _safe_globals() -> list[Any]:
    """What a Demucs checkpoint may reference besides tensors: its model class, fractions."""
    from demucs.demucs import Demucs
    from demucs.hdemucs import HDemucs
    from demucs.htdemucs import HTDemucs

    return [Demucs, HDemucs, HTDemucs, Fraction]


def load_repository(folder: Path) -> tuple[str, Any]:
    """The bag of models of a local Demucs repository folder.

    Args:
        folder: Holds one ``<name>.yaml`` bag descriptor and the ``.th`` checkpoints it names,
            or a single ``.th`` checkpoint (a bag of one, loaded by its signature).

    Returns:
        (bag name, ``demucs.apply.BagOfModels`` in eval mode on the CPU).

    Raises:
        BadModel: Several descriptors (or none and several checkpoints), a missing checkpoint,
            a checksum mismatch, or a checkpoint that needs more than tensors and Demucs
            classes to unpickle.
    """
    import torch
    import yaml
    from demucs.apply import BagOfModels
    from demucs.repo import ModelLoadingError, check_checksum
    from demucs.states import load_model

    bags = sorted(folder.glob("*.yaml"))
    checkpoints = _checkpoints(folder)
    if not bags and len(checkpoints) == 1:
        # A lone checkpoint is loaded by its signature, as get_model(sig, repo=folder) does;
        # htdemucs.yaml is exactly such a bag of one (models: ['955717e8']).
        name = next(iter(checkpoints))
        bag, descriptor = {"models": [name]}, f"{name}.th"
    elif len(bags) == 1:
        name, descriptor = bags[0].stem, bags[0].name
        try:
            bag = yaml.safe_load(bags[0].read_text(encoding="utf-8"))
            list(bag["models"])
        except (OSError, yaml.YAMLError, KeyError, TypeError) as e:
            raise BadModel(str(folder), f"{descriptor} is not a Demucs bag ({e!r})") from e
    else:
        raise BadModel(
            str(folder),
            f"expected one bag-of-models .yaml (or a single .th checkpoint), found "
            f"{[b.name for b in bags] or 'no .yaml'} and {len(checkpoints)} checkpoint(s); list "
            "the bag's .yaml in the catalog entry's files beside its .th checkpoints",
        )
    signatures = list(bag["models"])
    models = []
    for sig in signatures:
        if sig not in checkpoints:
            raise BadModel(
                str(folder),
                f"{descriptor} names model {sig!r} but there is no {sig}-*.th checkpoint "
                f"(found {sorted(checkpoints) or 'none'})",
            )
        file, checksum = checkpoints[sig]
        try:
            if checksum:
                check_checksum(file, checksum)
            with torch.serialization.safe_globals(_safe_globals()):
                package = torch.load(file, map_location="cpu", weights_only=True)
            models.append(load_model(package))
        except ModelLoadingError as e:
            raise BadModel(str(folder), str(e)) from e
        except Exception as e:  # torch raises UnpicklingError, RuntimeError, KeyError, ...
            raise BadModel(str(folder), f"{file.name}: {type(e).__name__}: {e}") from e
    try:
        model = BagOfModels(models, bag.get("weights"), bag.get("segment"))
    except AssertionError as e:
        raise BadModel(str(folder), f"{descriptor}: models or weights do not fit together") from e
    return name, model.eval()


def save_repository(
    folder: Path,
    name: str,
    models: list[Any],
    weights: list[list[float]] | None = None,
    segment: float | None = None,
) -> list[Path]:
    """Write models as a local Demucs repository folder that :func:`load_repository` reads.

    Checkpoints are saved the way ``demucs.states.serialize_model`` and ``save_with_checksum``
    save them (``{klass, args, kwargs, state, training_args}``, half-precision state, file
    ``<sig>-<sha256 prefix>.th``), so a fine-tuned or test model goes into the volume in the
    library's own format.

    Args:
        folder: Created if needed; should hold nothing else.
        name: The bag's name (``<name>.yaml``).
        models: Demucs, HDemucs or HTDemucs instances (their constructor arguments are kept).
        weights: Per-model, per-source weights of the bag, or None for equal weights.
        segment: The bag's segment override, or None.

    Returns:
        The files written: the descriptor first, then one checkpoint per model.
    """
    import hashlib
    import io

    import torch
    import yaml
    from demucs.states import get_state

    folder.mkdir(parents=True, exist_ok=True)
    checkpoints, signatures = [], []
    for model in models:
        args, kwargs = model._init_args_kwargs  # recorded by demucs' @capture_init
        package = {
            "klass": type(model),
            "args": args,
            "kwargs": kwargs,
            "state": get_state(model, None, half=True),
            "training_args": {},
        }
        buffer = io.BytesIO()
        torch.save(package, buffer)
        data = buffer.getvalue()
        sig = hashlib.sha1(data).hexdigest()[:8]
        path = folder / f"{sig}-{hashlib.sha256(data).hexdigest()[:8]}.th"
        path.write_bytes(data)
        checkpoints.append(path)
        signatures.append(sig)
    bag: dict[str, Any] = {"models": signatures}
    if weights is not None:
        bag["weights"] = weights
    if segment is not None:
        bag["segment"] = segment
    descriptor = folder / f"{name}.yaml"
    descriptor.write_text(yaml.safe_dump(bag), encoding="utf-8")
    return [descriptor, *checkpoints]


class DemucsSeparator(SeparateBackend):
    """Demucs (v2-v4 models: Demucs, HDemucs, HTDemucs) through ``demucs.apply.apply_model``."""

    name = "demucs"
    Options = DemucsOptions
    requires = (("demucs", "demucs"), ("torch", "torch"), ("julius", "julius"))

    def __init__(self, model_path: Path, options: DemucsOptions) -> None:
        super().__init__(model_path, options)
        import julius

        self.bag_name, self._model = load_repository(Path(model_path))
        sources = list(self._model.sources)
        if options.stem not in sources:
            raise ProfileError(
                f"model {self.bag_name!r} has no stem {options.stem!r}",
                key_path="stages.separate.options.stem",
                allowed=sources,
            )
        self._stem = sources.index(options.stem)
        self._model.to(options.device)
        self.samplerate = int(self._model.samplerate)
        self._up = julius.ResampleFrac(SAMPLE_RATE, self.samplerate)
        self._down = julius.ResampleFrac(self.samplerate, SAMPLE_RATE)
        limit = self._model.max_allowed_segment  # inf unless a transformer model is in the bag
        segment = options.segment_s if options.segment_s is not None else limit
        self._segment = None if math.isinf(segment) else min(segment, limit)
        log.info(
            "demucs %s: %d model(s), sources %s, %d Hz, segment %s s, on %s",
            self.bag_name,
            len(self._model.models),
            sources,
            self.samplerate,
            self._segment,
            options.device,
        )

    @property
    def stem(self) -> str:
        """The source it keeps."""
        return self.options.stem

    def _separate(self, audio: np.ndarray, mean: float, std: float) -> np.ndarray:
        import torch
        from demucs.apply import apply_model

        n = len(audio)
        if n == 0:
            return np.zeros(0, dtype=np.float32)
        with torch.inference_mode():
            mono = torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32))
            mix = self._up(mono).sub_(mean).div_(std + 1e-8)
            # mono to the model's channels as a view: one copy of the window in memory
            mix = mix.expand(self._model.audio_channels, -1)[None]
            sources = apply_model(
                self._model,
                mix,
                shifts=self.options.shifts,
                split=True,
                overlap=self.options.overlap,
                segment=self._segment,
                device=self.options.device,
            )
            stem = sources[0, self._stem].mean(dim=0).mul_(std + 1e-8).add_(mean)
            del sources
            out = self._down(stem.cpu(), output_length=n)
        return out.numpy().astype(np.float32, copy=False)

    def separate(self, audio: np.ndarray, sample_rate: int) -> np.ndarray:
        """The stem of a short 16 kHz clip, normalised by the clip's own statistics."""
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"separation expects 16 kHz audio, found {sample_rate} Hz")
        audio = np.asarray(audio, dtype=np.float32)
        if audio.size == 0:
            return audio
        return self._separate(audio, float(audio.mean()), float(audio.std()))

    def separate_file(self, source: Path, dest: Path) -> Separated:
        """The stem of a 16 kHz mono WAV of any length into ``dest``, window by window."""
        mean, std, _ = wav_stats(source)
        duration, count = stream_windows(
            source,
            dest,
            lambda window: self._separate(window, mean, std),
            self.options.window_s,
            self.options.crossfade_s,
        )
        return Separated(str(dest), self.options.stem, round(duration, 3), count)
