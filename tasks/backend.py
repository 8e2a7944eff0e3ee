"""The interface every stage backend implements; the registry picks them by name."""

from __future__ import annotations

from abc import ABC, abstractmethod
from pathlib import Path
from typing import Any, ClassVar

import numpy as np


class Backend(ABC):
    """What every stage backend declares.

    Attributes:
        stage: The pipeline stage it serves.
        name: Its registry name, as written in profiles.
        Options: Frozen dataclass of its options, defaults in one place.
        requires: (import name, pip requirement) pairs it cannot run without.
            :meth:`required_packages` may add to them for the options chosen.
    """

    stage: ClassVar[str]
    name: ClassVar[str]
    Options: ClassVar[type]
    requires: ClassVar[tuple[tuple[str, str], ...]] = ()

    @classmethod
    def required_packages(cls, options: Any) -> tuple[tuple[str, str], ...]:
        """(import name, pip requirement) pairs needed with these options (a runtime option
        may pick another package); :attr:`requires` unless a backend says otherwise."""
        del options
        return cls.requires

    def __init__(self, model_path: Path, options: Any) -> None:
        self.model_path = model_path
        self.options = options

    @abstractmethod
    def self_check(self) -> str:
        """Run the stage once on a second of test audio (:func:`test_audio`); return what it
        did, in a few words. The warm's offline load check calls it on the backend inference
        would load."""


def test_audio(seconds: float = 1.0, rate: int = 16_000) -> np.ndarray:
    """Quiet noise with a tone: enough to drive every stage's code path."""
    t = np.arange(int(seconds * rate)) / rate
    rng = np.random.default_rng(0)
    return (0.1 * np.sin(2 * np.pi * 220 * t) + 0.01 * rng.standard_normal(t.size)).astype(
        np.float32
    )


def require_positive(options: Any, keys: tuple[str, ...], where: str) -> None:
    """Refuse option values below 1 (batch sizes, beam widths, token limits).

    Args:
        options: The backend's options dataclass.
        keys: The fields that must be whole numbers >= 1.
        where: Key path of the options, e.g. ``stages.asr.options``.

    Raises:
        ProfileError: A value is below 1, naming its key path.
    """
    from voxflow.errors import ProfileError

    for key in keys:
        if getattr(options, key) < 1:
            raise ProfileError(
                f"expected a whole number >= 1, found {getattr(options, key)}",
                key_path=f"{where}.{key}",
            )
