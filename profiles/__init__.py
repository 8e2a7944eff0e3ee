"""Hardware profiles and the model catalog: load, validate, detect, resolve.

A profile (``profiles/<name>.yaml``, :mod:`profiles.profile`) picks, per pipeline stage, a
backend, a catalog model and that backend's options; ``profiles/models.yaml`` is the catalog
those model names refer to (:mod:`profiles.catalog`). Both are refused, when wrong, with a
:class:`~voxflow.errors.ProfileError` that names the file, the key path and the values that
would have been accepted (:mod:`profiles.files`). ``auto`` is resolved once, at the entry point,
by :func:`resolve_profile` from what :mod:`profiles.hardware` finds; everything below it works
with a concrete profile.
"""

from profiles.backends import BACKENDS, BackendEntry, backend_entry, known_backends
from profiles.catalog import ModelSpec, load_catalog
from profiles.files import CATALOG_FILE, PROFILES_DIR, list_profiles
from profiles.hardware import (
    Hardware,
    auto_profile,
    can_run,
    detect_hardware,
    probe_hardware,
    resolve_profile,
)
from profiles.profile import (
    AUTO,
    HARDWARE_ORDER,
    STAGES,
    SUBMODEL_SUFFIX,
    Profile,
    StageSpec,
    load_profile,
)

__all__ = [
    "AUTO",
    "BACKENDS",
    "CATALOG_FILE",
    "HARDWARE_ORDER",
    "PROFILES_DIR",
    "STAGES",
    "SUBMODEL_SUFFIX",
    "BackendEntry",
    "Hardware",
    "ModelSpec",
    "Profile",
    "StageSpec",
    "auto_profile",
    "backend_entry",
    "can_run",
    "detect_hardware",
    "known_backends",
    "list_profiles",
    "load_catalog",
    "load_profile",
    "probe_hardware",
    "resolve_profile",
]
