"""The model volume: every model in the Hugging Face hub cache layout, with an offline manifest.

A plain package (no Prefect): readers build a :class:`Volume` from a root and only stat files;
the ``ModelStore`` block (:mod:`blocks.model_store`) keeps the settings a deployment saves and
hands out a ``Volume``. The modules, one idea each: every path of a model (``layout``), the
manifest and verify (``manifest``), the warm (``warm``) and its parallel fetch (``fetch``) from
the sources (``sources``), prune as scan -> plan -> execute (``prune``), and what
``voxflow cache report`` prints (``inventory``).
"""

from __future__ import annotations

import shlex
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from blocks.volume import manifest as _manifest
from blocks.volume import warm as _warm
from blocks.volume.fetch import Progress
from blocks.volume.layout import ModelPaths, model_paths
from blocks.volume.manifest import ModelStatus, VerifyResult
from blocks.volume.sources import HubAccess
from blocks.volume.warm import WarmResult, WarmSource
from profiles.catalog import ModelSpec
from voxflow.errors import ModelDamaged, ModelNotWarmed, SourceError
from voxflow.settings import load_settings

__all__ = ["ModelStatus", "Volume", "VerifyResult", "WarmResult", "volume_root"]


def volume_root(snapshot: str | Path) -> Path | None:
    """The root of the volume that holds a snapshot folder (``<root>/hub/models--org--name/
    snapshots/<id>``, see :mod:`blocks.volume.layout`), or None for a folder outside one."""
    path = Path(snapshot)
    parents = path.parents
    if len(parents) < 4 or parents[0].name != "snapshots" or parents[2].name != "hub":
        return None
    if not parents[1].name.startswith("models--"):
        return None
    return parents[3]


@dataclass(frozen=True)
class Volume:
    """One model volume, and how a warm reaches the models' sources.

    Attributes:
        root: Root folder of the volume (a local path or a mounted NFS/EFS volume).
        mirrors: Folder URLs a warm tries before a model's own source.
        hub_endpoint: Hub URL for ``hf://`` sources; ``$HF_ENDPOINT`` when None.
        hf_token_secret: Prefect ``Secret`` block with the hub token; ``$HF_TOKEN`` when None.
        max_workers: Files a warm fetches at once.
    """

    root: str = "models"
    mirrors: tuple[str, ...] = ()
    hub_endpoint: str | None = None
    hf_token_secret: str | None = None
    max_workers: int = 4

    def __post_init__(self) -> None:
        object.__setattr__(self, "mirrors", tuple(self.mirrors))

    def paths(self, spec: ModelSpec) -> ModelPaths:
        """Every path of ``spec`` in this volume (:mod:`blocks.volume.layout`)."""
        return model_paths(self.root, spec)

    def locate(self, spec: ModelSpec, warm_command: str | None = None) -> Path:
        """Return the snapshot folder of a warmed model, checking the manifest's sizes.

        Args:
            spec: The catalog entry.
            warm_command: The exact command the user should run when it is not warmed
                (e.g. with ``--profile``); defaults to ``voxflow warm --store <root>``.

        Raises:
            ModelNotWarmed: No manifest, or a file is missing or has the wrong size.
            ModelDamaged: The last verify of the model failed (a deep verify found a file
                whose sha256 is not the manifest's); a warm repairs it and clears the record.
        """
        paths = self.paths(spec)
        state = _manifest.inspect(spec, paths)
        command = warm_command or f"voxflow warm --store {shlex.quote(self.root)}"
        if state.manifest is None or state.problems:
            detail = ", ".join(state.problems)
            raise ModelNotWarmed(spec.name, str(paths.snapshot), detail, command)
        record = _manifest.last_verified(paths)
        if record is not None and record.get("ok") is False:
            # Sizes can be right and the bytes not (bit rot, a partial copy): what a verify
            # found holds until a warm fetches the files again and removes the record.
            bad = record.get("bad_files")
            raise ModelDamaged(
                spec.name,
                str(paths.snapshot),
                [f for f in bad if isinstance(f, str)] if isinstance(bad, list) else [],
                str(record.get("verified_at") or "an unknown time"),
                command,
                deep=bool(record.get("deep")),
            )
        return paths.snapshot

    def status(self, spec: ModelSpec) -> ModelStatus:
        """Whether ``spec`` is warmed, cold or corrupt, without hashing anything."""
        return _manifest.status(spec, self.paths(spec))

    def manifest(self, spec: ModelSpec) -> dict[str, Any] | None:
        """The manifest of ``spec``'s snapshot when it is there and trusted, else None."""
        return _manifest.inspect(spec, self.paths(spec)).manifest

    def last_verified(self, spec: ModelSpec) -> dict[str, Any] | None:
        """The record of the last verify (``verified_at``, ``deep``, ``ok``, ``bad_files``)."""
        return _manifest.last_verified(self.paths(spec))

    def verify(self, spec: ModelSpec, deep: bool = False) -> VerifyResult:
        """Check a warmed model against its manifest, offline (``deep``: every sha256 too).

        After a verify that failed, every verify is deep: a stat cannot tell a repaired file
        from a damaged one of the right size, and a plain verify's "ok" would otherwise lift
        the refusal of :meth:`locate`.
        """
        paths = self.paths(spec)
        if not deep:
            record = _manifest.last_verified(paths)
            deep = record is not None and record.get("ok") is False
        return _manifest.verify(spec, paths, deep)

    def warm(
        self, spec: ModelSpec, progress: Progress | None = None, force: bool = False
    ) -> WarmResult:
        """Copy a model's files into the volume unless they are there (:func:`warm.warm`)."""
        origin = WarmSource(self.mirrors, self.hub_access, self.max_workers)
        return _warm.warm(spec, self.paths(spec), origin, progress, force)

    def check_writable(self) -> None:
        """Raise :class:`StoreReadOnly` unless this process can write the volume."""
        _warm.check_writable(self.root)

    def hub_access(self) -> HubAccess:
        """Endpoint and token for ``hf://`` sources: this volume's fields, else the settings.

        Raises:
            SourceError: ``hf_token_secret`` names a Secret block that cannot be loaded.
        """
        settings = load_settings()
        token = settings.hf_token
        if self.hf_token_secret:
            from prefect.blocks.system import Secret

            try:
                token = str(Secret.load(self.hf_token_secret).get())
            except Exception as e:  # Prefect raises ValueError, httpx errors, ...
                raise SourceError(
                    f"cannot load the Prefect Secret block {self.hf_token_secret!r} named by the "
                    f"model store's hf_token_secret ({type(e).__name__}); create it (Blocks > "
                    "Secret in the UI, or Secret(value=...).save(name)) or fix the name"
                ) from e
        return HubAccess(endpoint=self.hub_endpoint or settings.hf_endpoint, token=token)
