"""Backends behind one small interface per stage, picked by name from a registry.

The profile names a backend per stage; this module turns the name into a class, the profile's
option mapping into the backend's frozen options dataclass (refusing unknown keys), and keeps one
loaded model per (backend, model path, options) for the life of the process.
"""

from __future__ import annotations

import dataclasses
import gc
import importlib
import importlib.util
import logging
import os
import shlex
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from profiles import STAGES, StageSpec, backends
from profiles.catalog import repo_label
from tasks.backend import Backend
from voxflow.errors import BackendUnavailable, ModelLoadFailed, ProfileError, VoxflowError

log = logging.getLogger(__name__)


def backend_class(stage: str, name: str) -> type[Backend]:
    """The class registered for a stage's backend.

    Raises:
        ProfileError: The name is not a backend of that stage.
        BackendUnavailable: The backend is known but not implemented in this version.
    """
    if stage not in STAGES:
        raise ProfileError(f"unknown stage {stage!r}", allowed=list(STAGES))
    entry = backends.backend_entry(stage, name)
    if entry is None:
        raise ProfileError(
            f"unknown backend {name!r} for stage {stage!r}",
            key_path=f"stages.{stage}.backend",
            allowed=list(backends.known_backends(stage)),
        )
    if entry.implementation is None and entry.needs:
        raise BackendUnavailable(stage, name, entry.needs, entry.why or "not implemented")
    if entry.implementation is None:
        implemented = [e.name for e in backends.BACKENDS if e.stage == stage and e.implementation]
        raise BackendUnavailable(
            stage,
            name,
            f"voxflow-{stage}-{name}",
            "this backend is declared but not implemented in this version of voxflow; "
            "disable the stage in the profile or choose one of: "
            + ", ".join(sorted(implemented) or ["(none yet)"]),
        )
    target = entry.implementation
    module_name, _, attr = target.partition(":")
    return getattr(importlib.import_module(module_name), attr)


def parse_options(options_type: type, values: Mapping[str, Any], where: str) -> Any:
    """Build a backend's options dataclass from a profile mapping, refusing unknown keys.

    Args:
        options_type: The backend's frozen options dataclass.
        values: The ``options`` mapping from the profile.
        where: Key path for errors, e.g. ``stages.asr.options``.
    """
    fields = {f.name: f for f in dataclasses.fields(options_type)}
    for key, value in values.items():
        if key not in fields:
            raise ProfileError(
                f"unknown option {key!r}", key_path=f"{where}.{key}", allowed=sorted(fields)
            )
        default = getattr(options_type(), key)
        if default is not None and value is not None and not _same_kind(default, value):
            raise ProfileError(
                f"expected {type(default).__name__}, found {type(value).__name__} {value!r}",
                key_path=f"{where}.{key}",
            )
    return options_type(**dict(values))


def _same_kind(default: Any, value: Any) -> bool:
    if isinstance(default, bool) or isinstance(value, bool):
        return isinstance(default, bool) and isinstance(value, bool)
    if isinstance(default, float):
        return isinstance(value, int | float)
    return isinstance(value, type(default))


def missing_packages(cls: type[Backend], options: Any = None) -> list[str]:
    """pip requirements of a backend whose modules cannot be found here (no import is done).

    Args:
        cls: The backend class.
        options: Its parsed options, where they pick a package (Silero's ``runtime``); None
            checks the class's own :attr:`~tasks.backend.Backend.requires`.
    """
    pairs = cls.requires if options is None else cls.required_packages(options)
    return [pip for module, pip in pairs if importlib.util.find_spec(module) is None]


def resolve(spec: StageSpec) -> tuple[type[Backend], Any]:
    """Class and parsed options for a profile's stage, checking its packages are installed.

    Raises:
        ProfileError: Unknown backend or option.
        BackendUnavailable: A package the backend needs is missing.
    """
    cls = backend_class(spec.stage, spec.backend)
    options = parse_options(cls.Options, spec.options, f"stages.{spec.stage}.options")
    missing = missing_packages(cls, options)
    if missing:
        raise BackendUnavailable(
            spec.stage,
            spec.backend,
            missing[0],
            f"install it with `pip install {' '.join(missing)}`",
        )
    return cls, options


def unavailable_reason(spec: StageSpec) -> str | None:
    """Why this machine cannot run a stage's backend, or None when it can (hardware aside).

    Nothing is imported but the backend's own module; packages are only looked up.

    Returns:
        ``not implemented yet`` (or ``not implemented: it would need <package>`` for one left
        out on purpose), ``pip install <packages>`` or ``bad options: <why>``; None
        when the backend is implemented, its options parse and its packages are installed.
    """
    try:
        cls = backend_class(spec.stage, spec.backend)
    except BackendUnavailable as e:
        entry = backends.backend_entry(spec.stage, spec.backend)
        if entry is not None and entry.needs:
            return f"not implemented: it would need {e.package}"
        return "not implemented yet"
    try:
        options = parse_options(cls.Options, spec.options, f"stages.{spec.stage}.options")
    except ProfileError as e:
        return f"bad options: {e}"
    missing = missing_packages(cls, options)
    return f"pip install {' '.join(missing)}" if missing else None


class ModelPool:
    """One loaded backend per (backend, model path, options), so a batch loads each model once.

    Attributes:
        loads: ``stage:backend`` of every model loaded since the pool was made, in order.
    """

    def __init__(self) -> None:
        self._items: dict[tuple[Any, ...], Backend] = {}
        self._lock = threading.Lock()
        self.loads: list[str] = []

    def get(self, key: tuple[Any, ...], factory: Callable[[], Backend]) -> Backend:
        """The pooled backend for key, built by factory on first use."""
        with self._lock:
            if key not in self._items:
                log.info("loading %s", key[0])
                self._items[key] = factory()
                self.loads.append(key[0])
            return self._items[key]

    def __len__(self) -> int:
        return len(self._items)

    def release(self) -> int:
        """Drop every loaded model and hand accelerator memory back; how many were dropped."""
        with self._lock:
            dropped = len(self._items)
            self._items.clear()
        gc.collect()
        free_accelerator_memory()
        if dropped:
            log.info("released %d loaded model(s)", dropped)
        return dropped

    @contextmanager
    def session(self) -> Iterator[list[str]]:
        """Models loaded inside the block stay loaded for all of it and are released at its end
        (a batch of files); yields the list of what was loaded meanwhile, filled as it goes."""
        start = len(self.loads)
        loaded: list[str] = []
        try:
            yield loaded
        finally:
            loaded.extend(self.loads[start:])
            self.release()


def free_accelerator_memory() -> None:
    """Return cached GPU memory to the device (PyTorch's CUDA cache, MLX's Metal cache), for the
    frameworks this process has imported; nothing is imported here."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        torch.cuda.empty_cache()
    mlx = sys.modules.get("mlx.core")
    clear = getattr(mlx, "clear_cache", None) if mlx is not None else None
    if clear is not None:
        clear()


POOL = ModelPool()


def load_backend(
    spec: StageSpec, model_path: Path, submodels: Mapping[str, str] | None = None
) -> Backend:
    """A ready backend for a profile's stage, from the pool.

    Args:
        spec: The profile's stage.
        model_path: Local snapshot folder of the stage's model.
        submodels: Option key -> local folder; replaces catalog names in options such as
            ``segmentation_model`` so the backend only ever sees local paths.

    Raises:
        ModelLoadFailed: The backend's constructor failed on the model's files (a damaged
            CTranslate2 ``model.bin`` raises RuntimeError or UnicodeDecodeError); it names the
            model and the commands that find and repair damaged files.
    """
    if submodels:
        spec = dataclasses.replace(spec, options={**spec.options, **submodels})
    cls, options = resolve(spec)
    # An absolute path: the local runner runs commands from different folders. The files'
    # identity too: a warm that repaired the model (a new blob, renamed into place) must not
    # be answered with the copy loaded from the damaged one.
    key = (
        f"{spec.stage}:{spec.backend}",
        os.path.abspath(model_path),
        options,
        _files_identity(model_path),
    )
    return POOL.get(key, lambda: _construct(cls, spec, model_path, options))


def _construct(cls: type[Backend], spec: StageSpec, model_path: Path, options: Any) -> Backend:
    """``cls(model_path, options)``, with a failure of the model's files named as such."""
    try:
        return cls(model_path, options)
    except (VoxflowError, ImportError, MemoryError):
        raise  # ours say what to run already; a missing package or memory is not the files
    except Exception as e:
        raise load_failed(spec, model_path, f"failed to load ({first_line(e)})") from e


def load_failed(spec: StageSpec, model_path: Path, problem: str) -> ModelLoadFailed:
    """The error for a stage's model that does not load or run, naming the model, its volume
    and the commands that find and repair damaged files."""
    from blocks.volume import volume_root

    root = volume_root(model_path)
    return ModelLoadFailed(
        spec.model or repo_label(model_path),
        str(model_path),
        problem,
        store=shlex.quote(str(root)) if root is not None else None,
    )


def first_line(error: BaseException) -> str:
    """``Type: first line of the message``: a backend's error, short enough for one line."""
    lines = str(error).strip().splitlines()
    return f"{type(error).__name__}: {lines[0]}" if lines else type(error).__name__


def _files_identity(folder: Path) -> tuple[tuple[str, int, int, int], ...]:
    """(name, inode, size, mtime) of each file in a model folder, links followed."""
    out = []
    try:
        entries = sorted(os.scandir(folder), key=lambda e: e.name)
    except OSError:  # not a folder (a backend given a file) or gone: the backend will say
        return ()
    for entry in entries:
        try:
            st = entry.stat()
        except OSError:
            continue
        out.append((entry.name, st.st_ino, st.st_size, st.st_mtime_ns))
    return tuple(out)
