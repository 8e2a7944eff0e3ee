"""Environment variables, read in one place through one parser.

Library code asks for a :class:`Settings` instead of reading ``os.environ`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Settings:
    """Process-wide knobs, with their defaults in one place.

    Attributes:
        store: Root of the model volume (``$VOXFLOW_STORE``, default ``./models``).
        output: Where job directories go (``$VOXFLOW_OUTPUT``, default ``./output``).
        profile: Default hardware profile (``$VOXFLOW_PROFILE``, default ``auto``).
    """

    store: Path = Path("models")
    output: Path = Path("output")
    profile: str = "auto"


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment.

    Args:
        environ: The mapping to read; ``os.environ`` when omitted.

    Returns:
        The parsed settings.
    """
    env = os.environ if environ is None else environ
    defaults = Settings()
    return Settings(
        store=Path(env.get("VOXFLOW_STORE") or defaults.store),
        output=Path(env.get("VOXFLOW_OUTPUT") or defaults.output),
        profile=env.get("VOXFLOW_PROFILE") or defaults.profile,
    )
