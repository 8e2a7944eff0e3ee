"""voxflow's Prefect blocks: ``prefect block register -m blocks`` registers them.

``ModelStore`` is imported on first use, so ``blocks.volume`` (used by the offline load
check's child process) does not pay for importing Prefect.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from blocks.model_store import ModelStore

__all__ = ["ModelStore"]


def __getattr__(name: str) -> Any:
    if name == "ModelStore":
        from blocks.model_store import ModelStore

        return ModelStore
    raise AttributeError(f"module 'blocks' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
