"""The interface every stage backend implements; the registry picks them by name."""

from __future__ import annotations

from abc import ABC
from pathlib import Path
from typing import Any, ClassVar


class Backend(ABC):
    """What every stage backend declares.

    Attributes:
        stage: The pipeline stage it serves.
        name: Its registry name, as written in profiles.
        Options: Frozen dataclass of its options, defaults in one place.
        requires: (import name, pip requirement) pairs it cannot run without.
    """

    stage: ClassVar[str]
    name: ClassVar[str]
    Options: ClassVar[type]
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

    def __init__(self, model_path: Path | None, options: Any) -> None:
        self.model_path = model_path
        self.options = options
