"""inventory: what the model volume holds, what a profile still lacks, and what can be pruned."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

from blocks.volume import Volume
from blocks.volume.prune import PrunePlan, plan_prune, volume_usage
from profiles import Profile, list_profiles, load_catalog, load_profile
from profiles.catalog import ModelSpec

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelRow:
    """One model in the report.

    Attributes:
        model: Catalog name.
        role: What uses it (``asr model``, ``diarize sub-model``), or ``-``.
        state: ``warmed``, ``cold`` or ``corrupt``.
        revision: The pinned revision (the commit for hub models).
        size_bytes: Bytes of its files, from the manifest.
        files: Number of files in the manifest.
        warmed_at: When the manifest was written (UTC, ISO 8601), if warmed.
        verified_at: When ``voxflow verify`` (or a warm's passed load check) last checked it.
        verified: ``ok``, ``ok (sha256)``, either with ``, loads offline`` after a warm's
            load check, ``FAILED`` or ``-``.
        missing: What is missing or wrong, each as ``kind file`` or a problem.
    """

    model: str
    role: str
    state: str
    revision: str
    size_bytes: int
    files: int
    warmed_at: str | None
    verified_at: str | None
    verified: str
    missing: tuple[str, ...]


@dataclass(frozen=True)
class CacheReport:
    """The volume's inventory, for ``voxflow cache report`` and the warm flow's artifact."""

    root: str
    profile: str | None
    models: tuple[ModelRow, ...]
    used_bytes: int
    disk_bytes: int
    free_bytes: int

    @property
    def ready(self) -> bool:
        """Whether every model listed is warmed and intact."""
        return all(m.state == "warmed" for m in self.models)

    def rows(self) -> list[dict[str, object]]:
        """Table rows (one per model) for printing or a Prefect table artifact."""
        return [
            {
                "model": m.model,
                "role": m.role,
                "state": m.state,
                "revision": m.revision[:12],
                "size_mb": round(m.size_bytes / 1e6, 1),
                "files": m.files,
                "warmed": m.warmed_at or "-",
                "verified": f"{m.verified} {m.verified_at}" if m.verified_at else "-",
                "missing": "; ".join(m.missing) or "-",
            }
            for m in self.models
        ]

    def summary(self) -> str:
        """Volume space and, for a profile, exactly what is missing (markdown-friendly lines)."""
        lines = [
            f"volume {self.root}: models use {self.used_bytes / 1e6:.1f} MB; disk "
            f"{self.disk_bytes / 1e9:.1f} GB, {self.free_bytes / 1e9:.1f} GB free"
        ]
        if self.profile:
            gaps = [m for m in self.models if m.state != "warmed"]
            if not gaps:
                lines.append(f"profile {self.profile}: every model is warmed")
            else:
                lines.append(f"profile {self.profile}: missing")
                lines += [f"  {m.model} ({m.role}): {'; '.join(m.missing)}" for m in gaps]
        return "\n".join(lines)


def file_kind(name: str) -> str:
    """What a model file is, in the words operators use: weights, tokenizer, processor, config."""
    low = Path(name).name.lower()
    if "tokenizer" in low or "vocab" in low or low == "merges.txt" or low.endswith(".model"):
        return "tokenizer"
    if "preprocessor" in low or "processor" in low or "feature_extractor" in low:
        return "processor"
    if low.endswith((".bin", ".safetensors", ".onnx", ".npz", ".pt", ".pth", ".ckpt", ".th")):
        return "weights"
    if "config" in low or low.endswith((".json", ".yaml", ".yml")):
        return "config"
    if low.endswith(".xml"):  # OpenVINO IR graphs travel with their .bin weights
        return "weights"
    return "file"


def roles(profile: Profile) -> dict[str, str]:
    """Catalog name -> what uses it in the profile's enabled stages."""
    found: dict[str, list[str]] = {}
    for stage in profile.enabled_stages():
        for i, name in enumerate(stage.catalog_models()):
            found.setdefault(name, []).append(
                f"{stage.stage} model" if i == 0 else f"{stage.stage} sub-model"
            )
    return {name: ", ".join(uses) for name, uses in found.items()}


def _row(store: Volume, spec: ModelSpec, role: str) -> ModelRow:
    status = store.status(spec)
    verified = store.last_verified(spec) or {}
    if status.state == "cold":
        snapshot = store.paths(spec).snapshot
        missing = tuple(
            f"{file_kind(f)} {f}" + (" (present, not committed)" if (snapshot / f).exists() else "")
            for f in spec.files
        )
        missing = ("not warmed: " + ", ".join(missing),)
    else:
        missing = status.problems
    files = len(spec.files) if status.state != "cold" else 0
    outcome = _verified(verified) if verified else "-"
    return ModelRow(
        model=spec.name,
        role=role,
        state=status.state,
        revision=spec.revision if spec.scheme != "hf" else store.paths(spec).snapshot_id,
        size_bytes=status.size_bytes,
        files=files,
        warmed_at=status.warmed_at,
        verified_at=verified.get("verified_at"),
        verified=outcome,
        missing=tuple(missing),
    )


def _verified(record: dict[str, object]) -> str:
    """The last verify's outcome in a word or two (see :attr:`ModelRow.verified`)."""
    if not record.get("ok"):
        return "FAILED"
    outcome = "ok (sha256)" if record.get("deep") else "ok"
    return f"{outcome}, loads offline" if record.get("load_check") else outcome


def cache_report(store: Volume, profile: Profile | None = None) -> CacheReport:
    """Inventory the volume: the profile's models (or every catalog model on the volume).

    Args:
        store: The model volume.
        profile: Report this profile's models, cold ones included, with what is missing.

    Returns:
        The report; nothing is hashed (see ``voxflow verify --deep`` for that).
    """
    catalog = load_catalog()
    if profile is not None:
        uses = roles(profile)
        specs = [(catalog[name], role) for name, role in uses.items()]
    else:
        specs = [(spec, "-") for spec in catalog.values() if store.paths(spec).manifest.exists()]
    used, disk, free = volume_usage(store)
    return CacheReport(
        root=store.root,
        profile=profile.name if profile else None,
        models=tuple(_row(store, spec, role) for spec, role in specs),
        used_bytes=used,
        disk_bytes=disk,
        free_bytes=free,
    )


def referenced_models(extra_profiles: list[str] | None = None) -> list[ModelSpec]:
    """Every catalog model any shipped profile (or ``extra_profiles``) names, on or off."""
    catalog = load_catalog()
    names: dict[str, None] = {}
    for profile_name in [*list_profiles(), *(extra_profiles or [])]:
        profile = load_profile(profile_name)
        for stage in profile.stages.values():
            names.update(dict.fromkeys(stage.catalog_models()))
    return [catalog[name] for name in names if name in catalog]


def prune_plan(store: Volume, extra_profiles: list[str] | None = None) -> PrunePlan:
    """What ``voxflow cache prune`` would delete: paths no profile needs, with their sizes."""
    return plan_prune(store, referenced_models(extra_profiles))
