"""The warm-cache flow: every model a profile needs into the volume, then an offline load check."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from prefect import flow, unmapped
from prefect.artifacts import create_table_artifact

from blocks.model_store import ModelStore
from blocks.volume import Volume
from blocks.volume.inventory import cache_report
from flows.failures import fails_with_fix
from flows.names import warm_run_name
from profiles import load_catalog, load_profile, resolve_profile
from tasks.markdown import table_rows
from tasks.warm.preflight import ready_stages, warm_command
from tasks.warm.stage import load_check, note_load_checks, outcome_rows, warm_model
from voxflow.errors import WarmFailed
from voxflow.logs import show_voxflow_logs
from voxflow.settings import load_settings


@flow(name="warm-cache", flow_run_name=warm_run_name, log_prints=False)
@fails_with_fix
def warm_cache(
    profile: str = "auto",
    store: str | None = None,
    load_checks: bool = True,
    force: bool = False,
    with_stages: list[str] | None = None,
    store_block: str | None = None,
    mirrors: list[str] | None = None,
) -> list[dict[str, Any]]:
    """Warm every model the profile's enabled stages need, then load-check each stage offline.

    Args:
        profile: Hardware profile to warm for (cpu, cuda, mlx, openvino, or auto).
        store: Model volume root ($VOXFLOW_STORE or ./models when empty).
        load_checks: Run each stage's offline load check after warming.
        force: Copy every file again even if sizes match (repairs a flipped byte).
        with_stages: Stages the profile leaves off to warm too (e.g. ``["diarize"]`` for runs
            that switch diarization on).
        store_block: Name of a saved ModelStore block (its root, mirrors, hub endpoint and
            token secret); a ``store`` given as well is the root this warm fills (an inference
            run warming the volume it reads).
        mirrors: Folder URLs (file://, s3://, any fsspec URL) to try before each model's
            source for this warm, as ``<mirror>/<repo_id>/<file>``; tried before the block's.

    Returns:
        One row per model: model, source, revision, size, files, status, load check.

    Raises:
        WarmFailed: A model could not be warmed, or a stage failed its load check.
    """
    show_voxflow_logs()
    chosen = load_profile(resolve_profile(profile)).with_stages(*(with_stages or ()))
    catalog = load_catalog()
    if store_block:
        model_store = ModelStore.load(store_block).volume()
        if store:
            model_store = replace(model_store, root=str(store))
    else:
        model_store = Volume(root=str(store or load_settings().store))
    if mirrors:
        model_store = replace(model_store, mirrors=(*mirrors, *model_store.mirrors))
    specs = [catalog[name] for name in chosen.models()]
    outcomes = warm_model.map(unmapped(model_store), specs, force=unmapped(force)).result()

    checks = {}
    if load_checks:  # what inference will load, found the way preflight finds it
        ready, _ = ready_stages(chosen, model_store)
        for stage, found in ready.items():
            checks[stage] = load_check(chosen.stages[stage], found)
        note_load_checks(model_store, chosen, checks)

    rows = outcome_rows(outcomes, checks)
    create_table_artifact(
        key=f"model-cache-{chosen.name}",
        table=table_rows(rows),
        description=f"models of profile {chosen.name} in {model_store.root}",
    )
    report = cache_report(model_store, chosen)
    create_table_artifact(
        key=f"model-cache-report-{chosen.name}",
        table=table_rows(report.rows()),
        description=report.summary(),
    )
    failed = [o for o in outcomes if o.status == "failed"]
    broken = [c for c in checks.values() if not c.ok]
    if failed or broken:
        lines = [f"{o.model}: {o.error}" for o in failed]
        lines += [
            f"{c.stage}/{c.backend} ({c.model}) does not load offline: {c.detail}" for c in broken
        ]
        raise WarmFailed(
            f"warming profile {chosen.name!r} failed:\n  "
            + "\n  ".join(lines)
            + f"\nfix the cause, then run `{warm_command(chosen, model_store)}` again"
        )
    return rows
