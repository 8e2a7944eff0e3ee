"""Profiles (``profiles/<name>.yaml``): per stage a backend, a catalog model, options, on or off."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from profiles.backends import known_backends
from profiles.catalog import ModelSpec, load_catalog
from profiles.files import CATALOG_FILE, PROFILES_DIR, check_keys, flag, list_profiles, read_yaml
from voxflow.errors import ProfileError

STAGES: tuple[str, ...] = ("separate", "vad", "asr", "diarize", "translate")
"""Pipeline stages, in the order they run."""

HARDWARE_ORDER: tuple[str, ...] = ("cuda", "mlx", "openvino", "cpu")
"""The hardware a profile may need, in the order ``auto`` prefers it."""

AUTO = "auto"

PROFILE_KEYS = ("description", "hardware", "stages", "subtitles", "shots")
STAGE_KEYS = ("backend", "model", "enabled", "options")
SUBMODEL_SUFFIX = "_model"
"""Option keys ending in this name further catalog models a backend loads (pyannote's
segmentation and embedding models), so preflight and warming see them too."""


@dataclass(frozen=True)
class StageSpec:
    """One stage of a profile, as validated by :func:`load_profile`.

    Attributes:
        stage: Pipeline stage, one of :data:`STAGES`.
        backend: Backend name, one of :func:`profiles.backends.known_backends`.
        model: Catalog name of the model, or None for a backend that needs none.
        enabled: Whether the stage runs.
        options: The backend's options, read-only; the backend validates their keys.
    """

    stage: str
    backend: str
    model: str
    enabled: bool = True
    # A read-only view cannot be hashed; the spec compares by value and is never a dict key.
    options: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        # Copy, then freeze: neither the caller's dict nor a reader can change the spec later.
        object.__setattr__(self, "options", MappingProxyType(dict(self.options)))

    def submodels(self) -> dict[str, str]:
        """Option key -> catalog name, for the options that name further models: each string
        option whose key ends in ``_model`` (pyannote's ``segmentation_model``, ...)."""
        return {
            key: value
            for key, value in self.options.items()
            if key.endswith(SUBMODEL_SUFFIX) and isinstance(value, str)
        }

    def catalog_models(self) -> tuple[str, ...]:
        """Catalog names this stage loads: its model, then its :meth:`submodels`."""
        return tuple(dict.fromkeys([self.model, *self.submodels().values()]))


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
        subtitles: The subtitle rules: ``rules`` names a rule set, other keys change its
            limits (``max_cps``, ``fps``, ...); read by the run's check.
        shots: The shot detection's settings (``threshold``), for media with video; read by
            :func:`tasks.shots.stage.shot_options`.
    """

    name: str
    hardware: str
    description: str
    stages: Mapping[str, StageSpec] = field(hash=False)
    file: str
    switched_on: tuple[str, ...] = ()
    subtitles: Mapping[str, Any] = field(default_factory=dict, hash=False)
    shots: Mapping[str, Any] = field(default_factory=dict, hash=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "subtitles", MappingProxyType(dict(self.subtitles)))
        object.__setattr__(self, "shots", MappingProxyType(dict(self.shots)))
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


def profile_path(name_or_path: str | Path, directory: str | Path | None) -> Path:
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
    path = profile_path(name_or_path, directory)
    if catalog is None:
        catalog = load_catalog(Path(directory) / CATALOG_FILE if directory is not None else None)
    file = str(path)
    data = read_yaml(path)
    if not isinstance(data, Mapping):
        raise ProfileError(
            "a profile must be a mapping with keys " + ", ".join(PROFILE_KEYS),
            file=file,
            allowed=PROFILE_KEYS,
        )
    check_keys(data, PROFILE_KEYS, file, "", "key")

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
            allowed=known_backends("asr"),
        )
    subtitles = data.get("subtitles") or {}
    if not isinstance(subtitles, Mapping) or not all(isinstance(k, str) for k in subtitles):
        raise ProfileError(
            "expected a mapping of subtitle rules, e.g. {rules: netflix-en, max_cps: 15}",
            file=file,
            key_path="subtitles",
        )
    shots = data.get("shots") or {}
    if not isinstance(shots, Mapping) or not all(isinstance(k, str) for k in shots):
        raise ProfileError(
            "expected a mapping of shot detection settings, e.g. {threshold: 0.3}",
            file=file,
            key_path="shots",
        )
    return Profile(
        name=path.stem,
        hardware=hardware,
        description=description.strip(),
        stages=stages,
        file=file,
        subtitles=subtitles,
        shots=shots,
    )


def _stage_spec(
    stage: str, settings: Any, file: str, catalog: Mapping[str, ModelSpec]
) -> StageSpec:
    where = f"stages.{stage}"
    if not isinstance(settings, Mapping):
        raise ProfileError(
            "expected a mapping of stage settings", file=file, key_path=where, allowed=STAGE_KEYS
        )
    check_keys(settings, STAGE_KEYS, file, f"{where}.", "stage key")

    backend = settings.get("backend")
    if backend not in known_backends(stage):
        message = f"unknown backend {backend!r}" if "backend" in settings else "missing backend"
        raise ProfileError(
            f"{message} for stage {stage!r}",
            file=file,
            key_path=f"{where}.backend",
            allowed=known_backends(stage),
        )

    enabled = flag(settings.get("enabled", True), file, f"{where}.enabled")

    options = settings.get("options")
    options = {} if options is None else options
    if not isinstance(options, Mapping):
        raise ProfileError(
            f"expected a mapping of option name to value, found {options!r}",
            file=file,
            key_path=f"{where}.options",
        )

    model = settings.get("model")
    if model is None:
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
