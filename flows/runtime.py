"""What every inference flow does around its model stages: a warm volume, and a GPU slot.

``ready_or_warm`` runs the preflight and, on a cold volume, either refuses (naming the warm
deployment and the command) or warms the volume first: through the ``warm-cache/<profile>``
deployment when the flow itself runs from a deployment (so the warm runs on a worker of the
same pool, beside the volume), else as a subflow in this process.

``gpu_slot`` holds one slot of a Prefect global concurrency limit (``gpu``, or the name in
``$VOXFLOW_GPU_LIMIT``) while GPU stages run, so one GPU host never runs two at once, whichever
deployments the runs came from.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path

from prefect.runtime import deployment

from blocks.volume import Volume
from flows.request import OnColdCache
from profiles import Profile
from tasks.warm.preflight import ReadyStage, check_ready
from voxflow.errors import BadInput, ModelNotWarmed, WarmFailed
from voxflow.settings import load_settings

log = logging.getLogger(__name__)

"""What an inference flow does when a model is not warmed: refuse, or warm it and go on."""

GPU_HARDWARE = frozenset({"cuda", "mlx"})
"""Profiles on this hardware run their model stages inside :func:`gpu_slot`."""


def warm_deployment(profile: Profile) -> str:
    """The deployment that warms the volume for ``profile`` (see prefect.yaml).

    Under a deployment it is the warm-cache deployment of the same name (``transcribe/cpu``
    warms through ``warm-cache/cpu``, also for a profile from a file); else the profile's.
    """
    name = deployment.name if under_deployment() and deployment.name else profile.name
    return f"warm-cache/{name}"


def profile_argument(profile: Profile) -> str:
    """How another flow run names ``profile``: a shipped one by name, a user's by its file."""
    from profiles import PROFILES_DIR

    shipped = Path(profile.file).resolve().parent == PROFILES_DIR.resolve()
    return profile.name if shipped else profile.file


def under_deployment() -> bool:
    """Whether this flow run was started from a deployment (by a worker), not in-process."""
    return deployment.id is not None


def ready_or_warm(
    profile: Profile, store: Volume, on_cold_cache: OnColdCache = "fail"
) -> dict[str, ReadyStage]:
    """Preflight the profile; on a cold volume refuse or warm it, as ``on_cold_cache`` says.

    Args:
        profile: The resolved profile.
        store: The model volume.
        on_cold_cache: ``"fail"`` to refuse with the command to run, ``"warm"`` to run the
            warm-cache deployment (or, outside a deployment, the warm-cache flow) and go on.

    Returns:
        Stage name -> what it will run with (see :func:`tasks.warm.preflight.preflight`).

    Raises:
        ModelNotWarmed: The volume is cold and ``on_cold_cache`` is ``"fail"``.
        WarmFailed: Warming was asked for and did not succeed.
    """
    if on_cold_cache not in ("fail", "warm"):
        raise BadInput(f"on_cold_cache must be 'fail' or 'warm', not {on_cold_cache!r}")
    try:
        return check_ready(profile, store)
    except ModelNotWarmed as e:
        if on_cold_cache == "fail":
            if not under_deployment():
                raise
            raise ModelNotWarmed(
                e.model,
                e.path,
                e.detail,
                f"prefect deployment run {warm_deployment(profile)}",
                hint="first, or start this run with on_cold_cache=warm",
            ) from e
        log.warning("model volume %s is cold for profile %s: warming it", store.root, profile.name)
    _warm(profile, store)
    return check_ready(profile, store)


def _warm(profile: Profile, store: Volume) -> None:
    if not under_deployment():
        from flows.warm_cache import warm_cache

        warm_cache(
            profile=profile_argument(profile),
            store=store.root,
            with_stages=list(profile.switched_on),
        )
        return

    from prefect.deployments import run_deployment
    from prefect.exceptions import ObjectNotFound

    name = warm_deployment(profile)
    try:
        parameters = {"profile": profile_argument(profile), "store": store.root}
        if profile.switched_on:
            parameters["with_stages"] = list(profile.switched_on)
        run = run_deployment(name, parameters=parameters)
    except ObjectNotFound as e:
        raise WarmFailed(
            f"the volume is cold and there is no deployment {name} to warm it; "
            "deploy it (prefect deploy --all) or warm the volume by hand"
        ) from e
    state = run.state
    if state is None or not state.is_completed():
        raise WarmFailed(
            f"{name} run {run.name} ended {state.name if state else 'without a state'}: "
            f"{state.message if state else ''}; see that run's logs"
        )
    log.info("%s run %s warmed the volume", name, run.name)


@contextmanager
def gpu_slot(profile: Profile) -> Iterator[None]:
    """Hold the host's GPU concurrency slot while the body runs (GPU profiles only).

    Under a deployment the limit must exist (``prefect gcl create gpu --limit 1``); a run
    started in-process (the CLI on a laptop) does not ask for one.

    Raises:
        BadInput: The global concurrency limit does not exist on the server.
    """
    if profile.hardware not in GPU_HARDWARE or not under_deployment():
        yield
        return
    from prefect.concurrency.asyncio import ConcurrencySlotAcquisitionError
    from prefect.concurrency.sync import concurrency

    name = load_settings().gpu_limit
    with ExitStack() as stack:
        try:
            stack.enter_context(concurrency(name, occupy=1, strict=True))
        except ConcurrencySlotAcquisitionError as e:
            raise BadInput(
                f"GPU stages hold the global concurrency limit {name!r}, which does not exist; "
                f"create it with `prefect gcl create {name} --limit 1`"
            ) from e
        log.info("holding GPU slot %r", name)
        yield
