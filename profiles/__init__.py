"""Hardware profiles and the model catalog: load, validate, detect, resolve.

A profile (``profiles/<name>.yaml``) picks, per pipeline stage, a backend, a catalog model and
that backend's options; ``profiles/models.yaml`` is the catalog those model names refer to. Both
are refused, when wrong, with a :class:`~voxflow.errors.ProfileError` that names the file, the
key path and the values that would have been accepted. ``auto`` is resolved once, at the entry
point, by :func:`resolve_profile`; everything below it works with a concrete profile.
"""

from __future__ import annotations

import dataclasses
import functools
import importlib.util
import platform
import re
import shutil
import subprocess
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

import yaml

from profiles.catalog import ModelSpec
from voxflow.errors import ProfileError

__all__ = [
    "CATALOG_FILE",
    "HARDWARE_ORDER",
    "KNOWN_BACKENDS",
    "PROFILES_DIR",
    "STAGES",
    "ModelSpec",
    "Profile",
    "StageSpec",
    "can_run",
    "Hardware",
    "auto_profile",
    "detect_hardware",
    "probe_hardware",
    "list_profiles",
    "load_catalog",
    "load_profile",
    "resolve_profile",
]

PROFILES_DIR = Path(__file__).parent
CATALOG_FILE = "models.yaml"

STAGES: tuple[str, ...] = ("separate", "vad", "asr", "diarize", "translate")
"""Pipeline stages, in the order they run."""

KNOWN_BACKENDS: dict[str, tuple[str, ...]] = {
    "separate": ("demucs",),
    "vad": ("silero", "pyannote"),
    "asr": ("faster-whisper", "mlx-whisper", "openvino", "transformers"),
    "diarize": ("pyannote",),
    "translate": ("transformers", "ctranslate2", "openvino"),
}
"""Backends each stage may name; the task registry implements (a subset of) exactly these."""

BACKENDS_WITHOUT_MODEL: frozenset[tuple[str, str]] = frozenset()
"""(stage, backend) pairs that need no catalog model. Every backend needs one today."""

HARDWARE_ORDER: tuple[str, ...] = ("cuda", "mlx", "openvino", "cpu")
"""Preference order when ``auto`` picks a profile."""

AUTO = "auto"

PROFILE_KEYS = ("description", "hardware", "stages")
STAGE_KEYS = ("backend", "model", "enabled", "options")
SUBMODEL_SUFFIX = "_model"
"""Option keys ending in this name further catalog models a backend loads (pyannote's
segmentation and embedding models), so preflight and warming see them too."""

CATALOG_KEYS = ("source", "revision", "files", "format", "repo_id", "license", "size_mb", "pinned")
CATALOG_REQUIRED = ("source", "revision", "files", "format")
SOURCE_SCHEMES = (
    "hf",
    "pkg",
    "file",
    "s3",
    "gs",
    "gcs",
    "az",
    "abfs",
    "http",
    "https",
    "sftp",
    "hdfs",
    "memory",
)
"""Source URL schemes the catalog accepts: the hub, Python packages, and common fsspec protocols."""

_HEX40 = re.compile(r"[0-9a-f]{40}")
_REPO_ID = re.compile(r"[A-Za-z0-9][\w.-]*/[A-Za-z0-9][\w.-]*")


@dataclass(frozen=True)
class StageSpec:
    """One stage of a profile, as validated by :func:`load_profile`.

    Attributes:
        stage: Pipeline stage, one of :data:`STAGES`.
        backend: Backend name, one of ``KNOWN_BACKENDS[stage]``.
        model: Catalog name of the model, or None for a backend that needs none.
        enabled: Whether the stage runs.
        options: The backend's options, read-only; the backend validates their keys.
    """

    stage: str
    backend: str
    model: str | None
    enabled: bool = True
    # A read-only view cannot be hashed; the spec compares by value and is never a dict key.
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Copy, then freeze: neither the caller's dict nor a reader can change the spec later.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def catalog_models(self) -> tuple[str, ...]:
        """Catalog names this stage loads: its model, then sub-models named in its options.

        Returns:
            The stage's ``model`` (when set) followed by each string option whose key ends in
            ``_model``, e.g. pyannote's ``segmentation_model`` and ``embedding_model``.
        """
        names = [self.model] if self.model else []
        names += [
            value
            for key, value in self.options.items()
            if key.endswith(SUBMODEL_SUFFIX) and isinstance(value, str)
        ]
        return tuple(dict.fromkeys(names))


@dataclass(frozen=True)
class Profile:
    """A hardware profile: which backend, model and options each stage uses.

    Attributes:
        name: Profile name (the YAML file's stem).
        hardware: The hardware it needs, one of :data:`HARDWARE_ORDER`.
        description: One line for humans.
        stages: Declared stages by name, in pipeline order (read-only).
        file: The YAML file it was loaded from.
        switched_on: Stages the YAML leaves off that a run switched on (see
            :meth:`with_stages`), so warm commands can name them.
    """

    name: str
    hardware: str
    description: str
    stages: Mapping[str, StageSpec] = field(hash=False)
    file: str
    switched_on: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        ordered = {stage: self.stages[stage] for stage in STAGES if stage in self.stages}
        object.__setattr__(self, "stages", MappingProxyType(ordered))

    def enabled_stages(self) -> list[StageSpec]:
        """The stages that run, in pipeline order."""
        return [spec for spec in self.stages.values() if spec.enabled]

    def models(self) -> list[str]:
        """Catalog names of every model the enabled stages load, deduplicated, in order."""
        names: dict[str, None] = {}
        for spec in self.enabled_stages():
            names.update(dict.fromkeys(spec.catalog_models()))
        return list(names)

    def with_stages(self, *stages: str, off: Iterable[str] = ()) -> Profile:
        """This profile with the named declared stages switched on (and ``off`` ones off).

        A run that asks for a stage the YAML leaves off (``--diarize`` on the cpu profile) uses
        the stage's declared backend, model and options.

        Raises:
            ProfileError: The profile does not declare such a stage.
        """
        specs = dict(self.stages)
        changes = [(stage, True) for stage in stages] + [(stage, False) for stage in off]
        for stage, enabled in changes:
            if stage not in specs:
                raise ProfileError(
                    f"profile {self.name!r} declares no {stage!r} stage to switch "
                    + ("on" if enabled else "off"),
                    file=self.file,
                    key_path=f"stages.{stage}",
                    allowed=list(specs),
                )
            specs[stage] = dataclasses.replace(specs[stage], enabled=enabled)
        off_in_yaml = {s for s, spec in self.stages.items() if not spec.enabled}
        off_in_yaml.update(self.switched_on)
        switched_on = tuple(s for s in specs if s in off_in_yaml and specs[s].enabled)
        return dataclasses.replace(self, stages=specs, switched_on=switched_on)


# --------------------------------------------------------------------------- listing and reading


def list_profiles(directory: str | Path | None = None) -> list[str]:
    """Names of the profiles in a directory.

    Args:
        directory: Where to look; defaults to :data:`PROFILES_DIR`.

    Returns:
        Stems of the ``*.yaml`` files other than the catalog, sorted.
    """
    folder = Path(directory) if directory is not None else PROFILES_DIR
    return sorted(p.stem for p in folder.glob("*.yaml") if p.name != CATALOG_FILE)


def _read_yaml(path: Path) -> Any:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ProfileError(f"cannot read: {e.strerror or e}", file=str(path)) from e
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError as e:
        raise ProfileError(f"not valid YAML: {e}", file=str(path)) from e


def _check_keys(
    mapping: Mapping[Any, Any], allowed: tuple[str, ...], file: str, prefix: str, what: str
) -> None:
    for key in mapping:
        if key not in allowed:
            raise ProfileError(
                f"unknown {what} {key!r}", file=file, key_path=f"{prefix}{key}", allowed=allowed
            )


# --------------------------------------------------------------------------------- the catalog


def load_catalog(path: str | Path | None = None) -> dict[str, ModelSpec]:
    """Load and validate the model catalog.

    Parsed catalogs are cached per (file, modification time), so an edited file is re-read.

    Args:
        path: The catalog file; defaults to ``models.yaml`` in :data:`PROFILES_DIR` with the
            extra catalogs of ``$VOXFLOW_CATALOG`` merged over it (later entries win).

    Returns:
        Catalog name -> :class:`ModelSpec`, in file order (a fresh dict each call).

    Raises:
        ProfileError: The file is missing, not YAML, or an entry is invalid; the message names
            the file, the key path (``<model>.<key>``) and the allowed values.
    """
    if path is None:
        from voxflow.settings import load_settings

        merged: dict[str, ModelSpec] = {}
        for extra in (PROFILES_DIR / CATALOG_FILE, *load_settings().catalogs):
            merged.update(load_catalog(extra))
        return merged
    file = Path(path).resolve()
    try:
        mtime = file.stat().st_mtime_ns
    except OSError as e:
        raise ProfileError(f"model catalog not found: {e.strerror or e}", file=str(file)) from e
    return dict(_load_catalog_cached(str(file), mtime))


@functools.lru_cache(maxsize=16)
def _load_catalog_cached(file: str, mtime_ns: int) -> Mapping[str, ModelSpec]:
    del mtime_ns  # part of the cache key only
    data = _read_yaml(Path(file))
    if not isinstance(data, Mapping):
        raise ProfileError("the model catalog must be a mapping of model name to entry", file=file)
    specs = {}
    for name, entry in data.items():
        if not isinstance(name, str):
            raise ProfileError(f"model names must be strings, found {name!r}", file=file)
        specs[name] = _model_spec(name, entry, file)
    return MappingProxyType(specs)


def _model_spec(name: str, entry: Any, file: str) -> ModelSpec:
    if not isinstance(entry, Mapping):
        raise ProfileError(
            "a catalog entry must be a mapping", file=file, key_path=name, allowed=CATALOG_KEYS
        )
    _check_keys(entry, CATALOG_KEYS, file, f"{name}.", "catalog key")
    for key in CATALOG_REQUIRED:
        if key not in entry:
            raise ProfileError(
                f"missing required key {key!r}",
                file=file,
                key_path=f"{name}.{key}",
                allowed=CATALOG_KEYS,
            )
    for key in ("source", "revision", "format", "repo_id", "license"):
        if key in entry and not isinstance(entry[key], str):
            raise ProfileError(
                f"expected a string, found {entry[key]!r} (quote it in the YAML)",
                file=file,
                key_path=f"{name}.{key}",
            )
    pinned = _flag(entry.get("pinned", True), file, f"{name}.pinned")
    size_mb = entry.get("size_mb", 0.0)
    if isinstance(size_mb, bool) or not isinstance(size_mb, int | float) or size_mb < 0:
        raise ProfileError(
            f"expected a size in MB (a number >= 0), found {size_mb!r}",
            file=file,
            key_path=f"{name}.size_mb",
        )

    source, revision = entry["source"], entry["revision"]
    scheme = urlparse(source).scheme
    if scheme and scheme not in SOURCE_SCHEMES:
        raise ProfileError(
            f"unknown source scheme {scheme!r} in {source!r}",
            file=file,
            key_path=f"{name}.source",
            allowed=SOURCE_SCHEMES,
        )
    if not revision:
        raise ProfileError("the revision must not be empty", file=file, key_path=f"{name}.revision")
    repo_id = entry.get("repo_id")
    if scheme == "hf":
        hub_id = source.removeprefix("hf://").strip("/")
        if "@" in hub_id:
            raise ProfileError(
                f"put the revision in the 'revision' key, not in the source {source!r}",
                file=file,
                key_path=f"{name}.source",
            )
        if not _REPO_ID.fullmatch(hub_id):
            raise ProfileError(
                f"a hub source is hf://org/name, found {source!r}",
                file=file,
                key_path=f"{name}.source",
            )
        if pinned and not _HEX40.fullmatch(revision):
            raise ProfileError(
                f"a hub model must pin its revision to a 40-hex commit, found {revision!r}; "
                "copy the commit from the model's 'Files and versions' page, or set "
                "'pinned: false' to accept a moving revision",
                file=file,
                key_path=f"{name}.revision",
                allowed=("<40-hex commit>",),
            )
        repo_id = repo_id or hub_id
    repo_id = repo_id or f"voxflow/{name}"
    if not _REPO_ID.fullmatch(repo_id):
        raise ProfileError(
            f"a repo_id is org/name, found {repo_id!r}", file=file, key_path=f"{name}.repo_id"
        )

    files = entry["files"]
    if not isinstance(files, list) or not files:
        raise ProfileError(
            "expected a non-empty list of file paths", file=file, key_path=f"{name}.files"
        )
    for i, item in enumerate(files):
        parts = PurePosixPath(item).parts if isinstance(item, str) else ()
        if not parts or item.startswith("/") or ".." in parts or "\\" in item:
            raise ProfileError(
                f"expected a relative path inside the model folder, found {item!r}",
                file=file,
                key_path=f"{name}.files[{i}]",
            )
    return ModelSpec(
        name=name,
        source=source,
        revision=revision,
        files=tuple(files),
        format=entry["format"],
        repo_id=repo_id,
        license=entry.get("license", ""),
        size_mb=float(size_mb),
    )


# -------------------------------------------------------------------------------- the profiles


def _profile_path(name_or_path: str | Path, directory: str | Path | None) -> Path:
    text = str(name_or_path)
    if text == AUTO:
        raise ProfileError(
            "'auto' must be resolved before loading: call resolve_profile('auto') first",
            allowed=list_profiles(directory),
        )
    if text.endswith((".yaml", ".yml")):
        path = Path(text)
        if not path.is_file():
            raise ProfileError(f"profile file not found: {text}", file=text)
        return path
    folder = Path(directory) if directory is not None else PROFILES_DIR
    path = folder / f"{text}.yaml"
    if text == Path(CATALOG_FILE).stem or "/" in text or not path.is_file():
        raise ProfileError(f"unknown profile {text!r}", allowed=[*list_profiles(folder), AUTO])
    return path


def load_profile(
    name_or_path: str | Path,
    directory: str | Path | None = None,
    catalog: Mapping[str, ModelSpec] | None = None,
) -> Profile:
    """Load and validate a profile.

    Args:
        name_or_path: A profile name (``cpu``), resolved to ``<directory>/<name>.yaml``, or a
            path ending in ``.yaml`` to a profile a user wrote. Not ``auto``: resolve it first.
        directory: Where profile names are looked up; defaults to :data:`PROFILES_DIR`.
        catalog: The catalog model names must come from; defaults to ``models.yaml`` in
            ``directory``, or to :func:`load_catalog`'s default (shipped + ``$VOXFLOW_CATALOG``).

    Returns:
        The validated :class:`Profile`.

    Raises:
        ProfileError: Unknown profile, or an invalid one; the message names the file, the key
            path (e.g. ``stages.asr.backend``) and the allowed values.
    """
    path = _profile_path(name_or_path, directory)
    if catalog is None:
        catalog = load_catalog(Path(directory) / CATALOG_FILE if directory is not None else None)
    file = str(path)
    data = _read_yaml(path)
    if not isinstance(data, Mapping):
        raise ProfileError(
            "a profile must be a mapping with keys " + ", ".join(PROFILE_KEYS),
            file=file,
            allowed=PROFILE_KEYS,
        )
    _check_keys(data, PROFILE_KEYS, file, "", "key")

    hardware = data.get("hardware")
    if hardware not in HARDWARE_ORDER:
        raise ProfileError(
            f"unknown hardware {hardware!r}", file=file, key_path="hardware", allowed=HARDWARE_ORDER
        )
    description = data.get("description", "")
    if not isinstance(description, str):
        raise ProfileError("expected a string", file=file, key_path="description")

    stages_data = data.get("stages")
    if not isinstance(stages_data, Mapping) or not stages_data:
        raise ProfileError(
            "expected a mapping of stage name to stage settings",
            file=file,
            key_path="stages",
            allowed=STAGES,
        )
    stages = {}
    for stage, settings in stages_data.items():
        if stage not in STAGES:
            raise ProfileError(
                f"unknown stage {stage!r}", file=file, key_path=f"stages.{stage}", allowed=STAGES
            )
        stages[stage] = _stage_spec(stage, settings, file, catalog)
    if "asr" not in stages or not stages["asr"].enabled:
        raise ProfileError(
            "a profile must enable the asr stage",
            file=file,
            key_path="stages.asr",
            allowed=KNOWN_BACKENDS["asr"],
        )
    return Profile(
        name=path.stem, hardware=hardware, description=description.strip(), stages=stages, file=file
    )


def _stage_spec(
    stage: str, settings: Any, file: str, catalog: Mapping[str, ModelSpec]
) -> StageSpec:
    where = f"stages.{stage}"
    if not isinstance(settings, Mapping):
        raise ProfileError(
            "expected a mapping of stage settings", file=file, key_path=where, allowed=STAGE_KEYS
        )
    _check_keys(settings, STAGE_KEYS, file, f"{where}.", "stage key")

    backend = settings.get("backend")
    if backend not in KNOWN_BACKENDS[stage]:
        message = f"unknown backend {backend!r}" if "backend" in settings else "missing backend"
        raise ProfileError(
            f"{message} for stage {stage!r}",
            file=file,
            key_path=f"{where}.backend",
            allowed=KNOWN_BACKENDS[stage],
        )

    enabled = _flag(settings.get("enabled", True), file, f"{where}.enabled")

    options = settings.get("options")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ProfileError(
            f"expected a mapping of option name to value, found {options!r}",
            file=file,
            key_path=f"{where}.options",
        )

    model = settings.get("model")
    if model is None and (stage, backend) not in BACKENDS_WITHOUT_MODEL:
        raise ProfileError(
            f"backend {backend!r} needs a model",
            file=file,
            key_path=f"{where}.model",
            allowed=sorted(catalog),
        )
    # Disabled stages are checked too, so turning one on later cannot surprise.
    refs = [(f"{where}.model", model)] if model is not None else []
    refs += [
        (f"{where}.options.{key}", value)
        for key, value in options.items()
        if isinstance(key, str) and key.endswith(SUBMODEL_SUFFIX)
    ]
    for key_path, ref in refs:
        if not isinstance(ref, str) or ref not in catalog:
            raise ProfileError(
                f"model {ref!r} is not in the catalog",
                file=file,
                key_path=key_path,
                allowed=sorted(catalog),
            )
    return StageSpec(stage=stage, backend=backend, model=model, enabled=enabled, options=options)


# ------------------------------------------------------------------- hardware and 'auto'


@dataclass(frozen=True)
class Hardware:
    """What this machine offers one kind of profile.

    Attributes:
        kind: ``cuda``, ``mlx``, ``openvino`` or ``cpu``.
        runs: Profiles of this kind can run here.
        preferred: ``auto`` may pick this kind: its accelerator is present. It differs from
            ``runs`` for openvino only, whose runtime also runs on a plain CPU, where the cpu
            profile is the better choice: an installed package is not hardware.
        reason: Why, in words fit to show a user.
    """

    kind: str
    runs: bool
    preferred: bool
    reason: str


_INTEL = "0x8086"


def probe_hardware(sys_root: str | Path = "/sys") -> tuple[Hardware, ...]:
    """Look at this machine once per kind of profile, in :data:`HARDWARE_ORDER`.

    Cheap and import-free. cuda: ``nvidia-smi -L`` lists a GPU, or the NVIDIA driver is
    loaded with a device node. mlx: Apple silicon with the ``mlx`` package. openvino: the
    ``openvino`` package runs its profile on any CPU, and ``auto`` prefers it only with an
    Intel GPU (a DRM render node) or NPU (an accel node) whose vendor is Intel.

    Args:
        sys_root: Where sysfs is mounted (the Intel GPU and NPU device nodes are read there).
    """
    cuda = _cuda_device()
    found = [
        Hardware(
            "cuda",
            bool(cuda),
            bool(cuda),
            cuda or "no CUDA device (no NVIDIA driver with a device, no GPU from nvidia-smi)",
        )
    ]
    apple = sys.platform == "darwin" and platform.machine() == "arm64"
    mlx = apple and _findable("mlx")
    if mlx:
        mlx_reason = "Apple silicon with the mlx package"
    elif apple:
        mlx_reason = (
            "Apple silicon, but the mlx package is not installed (pip install 'voxflow[mlx]')"
        )
    else:
        mlx_reason = f"not Apple silicon ({sys.platform} {platform.machine()})"
    found.append(Hardware("mlx", mlx, mlx, mlx_reason))
    ov_package = _findable("openvino")
    devices = _intel_accelerators(Path(sys_root))
    if not ov_package:
        ov_reason = "the openvino package is not installed (pip install 'voxflow[openvino]')"
    elif devices:
        ov_reason = f"openvino with an Intel {' and '.join(devices)}"
    else:
        ov_reason = (
            "openvino is installed but there is no Intel GPU or NPU: on a CPU alone the cpu "
            "profile is the better choice (--profile openvino still runs it)"
        )
    found.append(Hardware("openvino", ov_package, ov_package and bool(devices), ov_reason))
    found.append(Hardware("cpu", True, True, "always"))
    return tuple(found)


@functools.cache
def _probe() -> tuple[Hardware, ...]:
    return probe_hardware()


def detect_hardware() -> tuple[str, ...]:
    """The kinds of profile this machine can run, in :data:`HARDWARE_ORDER`, ending with cpu.

    Cached for the process (``detect_hardware.cache_clear()`` probes again).
    """
    return tuple(h.kind for h in _probe() if h.runs)


detect_hardware.cache_clear = _probe.cache_clear  # type: ignore[attr-defined]


def _findable(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _cuda_device() -> str:
    """Why this machine has a CUDA device, or "" when it has none."""
    smi = shutil.which("nvidia-smi")
    if smi is not None:
        try:
            result = subprocess.run(
                [smi, "-L"], capture_output=True, text=True, timeout=10, check=False
            )
        except (OSError, subprocess.SubprocessError):
            result = None
        if result is not None and result.returncode == 0 and "GPU" in result.stdout:
            return "nvidia-smi lists " + result.stdout.strip().splitlines()[0]
    nodes = sorted(p.name for p in Path("/dev").glob("nvidia[0-9]*"))
    if nodes and Path("/proc/driver/nvidia/version").exists():
        return f"NVIDIA driver loaded with /dev/{nodes[0]}"
    return ""


def _intel_accelerators(sys_root: Path) -> list[str]:
    """Intel GPUs (DRM render nodes) and NPUs (accel nodes) sysfs lists under sys_root."""
    found = []
    for label, pattern in (("GPU", "class/drm/renderD*"), ("NPU", "class/accel/accel*")):
        for node in sorted(sys_root.glob(pattern)):
            try:
                vendor = (node / "device" / "vendor").read_text().strip().lower()
            except OSError:
                continue
            if vendor == _INTEL:
                found.append(f"{label} ({node.name})")
                break
    return found


def _profile_hardware(path: Path) -> str | None:
    """The ``hardware`` a profile file declares, or None when it cannot be read."""
    try:
        data = _read_yaml(path)
    except ProfileError:
        return None
    return data.get("hardware") if isinstance(data, Mapping) else None


def auto_profile(
    directory: str | Path | None = None, hardware: Iterable[Hardware] | None = None
) -> tuple[str, str]:
    """The profile ``auto`` picks here, and why, in one sentence.

    The first kind in :data:`HARDWARE_ORDER` whose accelerator is present (cpu at the end)
    gives the profile named after it when its ``hardware`` matches, else the first profile
    (by name) whose ``hardware`` is that kind.

    Args:
        directory: Where profiles live; defaults to :data:`PROFILES_DIR`.
        hardware: What :func:`probe_hardware` found; this machine's when omitted.

    Raises:
        ProfileError: No profile in the folder matches this machine's hardware.
    """
    folder = Path(directory) if directory is not None else PROFILES_DIR
    names = list_profiles(folder)
    probed = tuple(hardware) if hardware is not None else _probe()
    passed: list[str] = []
    for kind in probed:
        if not kind.preferred:
            passed.append(f"not {kind.kind}: {kind.reason}")
            continue
        candidates = [kind.kind] if kind.kind in names else []
        candidates += [n for n in names if n != kind.kind]
        for candidate in candidates:
            if _profile_hardware(folder / f"{candidate}.yaml") == kind.kind:
                why = f"{kind.kind}: {kind.reason}" if kind.kind != "cpu" else ""
                return candidate, "; ".join([*passed, why] if why else passed)
        passed.append(f"not {kind.kind}: no profile in {folder} declares it")
    raise ProfileError(
        f"no profile in {folder} matches this machine's hardware "
        f"({', '.join(h.kind for h in probed if h.preferred)})",
        allowed=names,
    )


def resolve_profile(name: str, directory: str | Path | None = None) -> str:
    """Turn ``auto`` into a concrete profile name (see :func:`auto_profile`); check any other
    name exists.

    Args:
        name: ``auto``, a profile name, or a path to a profile YAML file.
        directory: Where profiles live; defaults to :data:`PROFILES_DIR`.

    Returns:
        A profile name or path that :func:`load_profile` accepts.

    Raises:
        ProfileError: The name is unknown, or no profile matches this machine's hardware.
    """
    if name != AUTO:
        _profile_path(name, Path(directory) if directory is not None else PROFILES_DIR)
        return name
    return auto_profile(directory)[0]


def can_run(profile: Profile | str) -> tuple[bool, str]:
    """Whether this machine has the hardware a profile needs.

    Args:
        profile: A loaded profile, or a name or path :func:`load_profile` accepts.

    Returns:
        ``(ok, reason)``, the reason fit to show a user.
    """
    if not isinstance(profile, Profile):
        profile = load_profile(profile)
    present = detect_hardware()
    if profile.hardware in present:
        return True, f"profile {profile.name!r} needs {profile.hardware}, which is present"
    return False, (
        f"profile {profile.name!r} needs {profile.hardware}, but this machine has only "
        f"{', '.join(present)}; choose --profile auto or one of those"
    )


def _flag(value: object, file: str, key_path: str) -> bool:
    """A YAML boolean, or ProfileError naming the file and key."""
    if not isinstance(value, bool):
        raise ProfileError(
            f"expected true or false, found {value!r}",
            file=file,
            key_path=key_path,
            allowed=("true", "false"),
        )
    return value
