"""preflight: before any inference, prove every model and package the profile needs is here."""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from prefect import task
from prefect.cache_policies import NONE

from blocks.volume import Volume
from profiles import Profile, StageSpec, can_run, load_catalog
from tasks.backend import Backend
from tasks.registry import load_backend, resolve
from voxflow.errors import BadInput, ModelDamaged, ModelNotWarmed

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ReadyStage:
    """A stage that passed preflight: its backend and the local model it will load.

    Attributes:
        stage: Stage name.
        backend: Backend name.
        model: Catalog name of the model, if the stage has one.
        revision: The model's pinned revision.
        path: The model's snapshot folder in the volume.
        submodels: Option key -> local snapshot folder, for options naming catalog models
            (``segmentation_model``, ``embedding_model``, ...).
    """

    stage: str
    backend: str
    model: str
    revision: str
    path: str
    submodels: dict[str, str] = field(default_factory=dict)

    def load(self, spec: StageSpec) -> Backend:
        """The stage's backend on this local model, from the model pool: what inference and
        the warm's load check both call."""
        return load_backend(spec, Path(self.path), self.submodels)

    def config(self, spec: StageSpec) -> dict[str, Any]:
        """What changes this stage's output, for its cache key: backend, model, revision,
        options."""
        return {
            "backend": spec.backend,
            "model": self.model,
            "revision": self.revision,
            "options": dict(spec.options),
        }


def profile_argument(profile: Profile) -> str:
    """How a command or another flow run names ``profile``: a shipped one by name, a user's by
    its file (its name alone is no profile ``--profile`` knows)."""
    from profiles import PROFILES_DIR

    shipped = Path(profile.file).resolve().parent == PROFILES_DIR.resolve()
    return profile.name if shipped else profile.file


def warm_command(profile: Profile, store: Volume) -> str:
    """The command that fills the volume for a profile (and the stages a run switched on)."""
    extra = f" --with {','.join(profile.switched_on)}" if profile.switched_on else ""
    named = shlex.quote(profile_argument(profile))
    return f"voxflow warm --profile {named} --store {shlex.quote(store.root)}{extra}"


def ready_stages(
    profile: Profile, store: Volume
) -> tuple[dict[str, ReadyStage], list[ModelNotWarmed]]:
    """What each enabled stage will run with, for the stages whose models are all warmed, and
    why each of the others is not (hardware aside): the one lookup inference and the warm's
    load check share."""
    catalog = load_catalog()
    ready: dict[str, ReadyStage] = {}
    cold: list[ModelNotWarmed] = []
    command = warm_command(profile, store)
    for spec in profile.enabled_stages():
        paths: dict[str, str] = {}
        for name in spec.catalog_models():
            try:
                paths[name] = str(store.locate(catalog[name], warm_command=command))
            except ModelNotWarmed as e:
                cold.append(e)
        if len(paths) < len(spec.catalog_models()):
            continue
        model = catalog[spec.model]
        submodels = {key: paths[name] for key, name in spec.submodels().items()}
        ready[spec.stage] = ReadyStage(
            spec.stage,
            spec.backend,
            model.name,
            model.revision,
            paths[spec.model],
            submodels,
        )
    return ready, cold


def preflight(profile: Profile, store: Volume) -> dict[str, ReadyStage]:
    """Check hardware, backend packages and warmed models for every enabled stage.

    Args:
        profile: The resolved profile.
        store: The model volume.

    Returns:
        Stage name -> what it will run with, in pipeline order.

    Raises:
        BadInput: This machine lacks the profile's hardware.
        BackendUnavailable: A backend's package is missing.
        ModelNotWarmed: Models are missing or do not match their manifests (all are named).
        ModelDamaged: The one model at fault is one whose last verify failed.
    """
    ok, reason = can_run(profile)
    if not ok:
        raise BadInput(
            f"profile {profile.name!r} cannot run on this machine: {reason}; "
            "choose another with --profile (see `voxflow profiles`)"
        )
    for spec in profile.enabled_stages():
        resolve(spec)
    ready, cold = ready_stages(profile, store)
    if len(cold) == 1 and isinstance(cold[0], ModelDamaged):
        raise cold[0]  # its own line says which files a verify found bad, and when
    if cold:
        details = "; ".join(f"{e.model}: {e.detail}" for e in cold)
        command = warm_command(profile, store)
        raise ModelNotWarmed(", ".join(e.model for e in cold), store.root, details, command)
    log.info(
        "preflight: %s ready (%s)",
        profile.name,
        ", ".join(f"{s.stage}={s.model or s.backend}" for s in ready.values()),
    )
    return ready


@task(cache_policy=NONE)
def check_ready(profile: Profile, store: Volume) -> dict[str, ReadyStage]:
    """Every model and package the profile needs is here (see :func:`preflight`)."""
    return preflight(profile, store)
