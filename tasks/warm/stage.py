"""warm: fill the model volume for a profile, then prove each stage loads offline."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from prefect import task
from prefect.cache_policies import NONE

from blocks.volume import Volume
from blocks.volume.manifest import record_load_check
from profiles import ModelSpec, Profile, StageSpec, load_catalog
from tasks import progress
from tasks.warm.loadcheck import LoadCheck, run_load_check
from tasks.warm.preflight import ReadyStage
from voxflow.errors import VoxflowError

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class WarmOutcome:
    """One model's warm, as reported in the artifact: status is warmed, present or failed."""

    model: str
    source: str
    revision: str
    status: str
    files: int
    bytes: int
    seconds: float
    path: str | None
    error: str | None = None


def warm_one(store: Volume, spec: ModelSpec, force: bool = False) -> WarmOutcome:
    """Warm one model; a failure becomes a 'failed' outcome so the others still run."""
    try:
        with progress.tracking(f"warm · {spec.name}", "MB"):
            result = store.warm(spec, progress=_progress(spec.name), force=force)
    except VoxflowError as e:
        log.error("warm %s failed: %s", spec.name, e)
        return WarmOutcome(spec.name, spec.source, spec.revision, "failed", 0, 0, 0.0, None, str(e))
    log.info(
        "%s: %s (%d files, %.1f MB)", spec.name, result.status, result.files, result.bytes / 1e6
    )
    return WarmOutcome(
        spec.name,
        spec.source,
        spec.revision,
        result.status,
        result.files,
        result.bytes,
        round(result.seconds, 3),
        str(result.path),
    )


def _progress(name: str) -> Callable[[str, int, int], None]:
    """The volume's per-file byte counts, as the model's progress in MB (files fetch in
    parallel threads), with a line per file copied."""
    files: dict[str, tuple[int, int]] = {}
    lock = threading.Lock()

    def report(file: str, done: int, total: int) -> None:
        with lock:
            files[file] = (done, total)
            fetched = sum(d for d, _ in files.values()) / 1e6
            planned = sum(t for _, t in files.values()) / 1e6
        progress.report(fetched, planned)
        if done == total and done:  # one line per file: chunk-level lines would flood the log
            log.info("%s: copied %s (%.1f MB)", name, file, total / 1e6)

    return report


@task(cache_policy=NONE, task_run_name="warm · {spec.name}")
def warm_model(store: Volume, spec: ModelSpec, force: bool = False) -> WarmOutcome:
    """Prefect face of :func:`warm_one`."""
    return warm_one(store, spec, force)


@task(cache_policy=NONE, task_run_name="load check · {spec.stage}")
def load_check(spec: StageSpec, ready: ReadyStage) -> LoadCheck:
    """The stage's own backend loads what preflight found for it, as inference does, and runs
    its self-check on 1 s of audio, with the network off."""
    outcome = run_load_check(spec, ready)
    if outcome.ok:
        log.info(
            "load check %s/%s: ok in %.1f s (%s)",
            spec.stage,
            spec.backend,
            outcome.seconds,
            outcome.detail,
        )
    else:
        log.error("load check %s/%s failed: %s", spec.stage, spec.backend, outcome.detail)
    return outcome


def note_load_checks(store: Volume, profile: Profile, checks: dict[str, LoadCheck]) -> None:
    """Record a verify of each model whose stage passed its load check, noting the check.

    The verify is the offline one of ``voxflow verify`` (sizes against the manifest; every
    sha256 where a verify failed before), so the cache report's ``verified`` column says when
    each model was last found whole and that it loads, right after the warm that loaded it.
    """
    catalog = load_catalog()
    for stage, check in checks.items():
        if not check.ok:
            continue
        for name in filter(None, profile.stages[stage].catalog_models()):
            spec = catalog[name]
            if store.verify(spec).ok:
                passed = f"{stage}/{check.backend} in {check.seconds:.1f} s"
                record_load_check(store.paths(spec), passed)


def outcome_rows(outcomes: list[WarmOutcome], checks: dict[str, LoadCheck]) -> list[dict]:
    """Rows of the warm artifact table: model, source, size, files, status, load check."""
    by_model = {c.model: c for c in checks.values() if c.model}
    rows = []
    for o in outcomes:
        check = by_model.get(o.model)
        rows.append(
            {
                "model": o.model,
                "source": o.source,
                "revision": o.revision,
                "size_mb": round(o.bytes / 1e6, 1),
                "files": o.files,
                "status": o.status,
                "load_check": "-"
                if check is None
                else (f"ok ({check.seconds:.1f} s)" if check.ok else f"FAILED: {check.detail}"),
            }
        )
    return rows
