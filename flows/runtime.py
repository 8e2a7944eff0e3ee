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

import json
import logging
import shlex
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect.runtime import deployment

from blocks.volume import Volume
from flows.request import OnColdCache
from profiles import Profile
from tasks.warm.preflight import ReadyStage, check_ready, profile_argument
from voxflow.errors import BadInput, ModelNotWarmed, VoxflowError, WarmFailed
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


def warm_parameters(profile: Profile, store: Volume, name: str) -> dict[str, object]:
    """What the ``warm-cache/<name>`` deployment must be given beyond its own parameters to
    warm exactly what this run needs: another profile, another volume, the stages it switched
    on (subtitle's translation, a run's diarization)."""
    parameters: dict[str, object] = {}
    if profile_argument(profile) != name:
        parameters["profile"] = profile_argument(profile)
    if store.root != str(load_settings().store):
        parameters["store"] = store.root
    if profile.switched_on:
        parameters["with_stages"] = list(profile.switched_on)
    return parameters


def warm_deployment_command(profile: Profile, store: Volume, name: str) -> str:
    """The ``prefect deployment run`` command that warms what a run of deployment ``name``
    needs, each parameter a ``--param key=value`` (JSON where it is not a string)."""
    params = [
        f"--param {key}={shlex.quote(value if isinstance(value, str) else json.dumps(value))}"
        for key, value in warm_parameters(profile, store, name).items()
    ]
    return " ".join([f"prefect deployment run warm-cache/{name}", *params])


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
        ModelNotWarmed: The volume is cold and ``on_cold_cache`` is ``"fail"``: it names the
            command that warms exactly the models this run lacks (under a deployment, the
            warm deployment with this run's stages and volume).
        WarmFailed: Warming was asked for and did not succeed.
    """
    if on_cold_cache not in ("fail", "warm"):
        raise BadInput(f"on_cold_cache must be 'fail' or 'warm', not {on_cold_cache!r}")
    try:
        return check_ready(profile, store)
    except ModelNotWarmed as e:
        if on_cold_cache == "fail" and under_deployment():
            raise in_preflight(warm_through_deployment(e, profile, store)) from e
        if on_cold_cache == "fail":
            in_preflight(e)
            raise
        log.warning("model volume %s is cold for profile %s: warming it", store.root, profile.name)
    except VoxflowError as e:
        in_preflight(e)
        raise
    _warm(profile, store)
    return check_ready(profile, store)


def warm_through_deployment(e: ModelNotWarmed, profile: Profile, store: Volume) -> ModelNotWarmed:
    """The preflight's refusal of a deployment's run: it names the warm deployment (whose
    workers can write the volume) with the parameters this run needs, not ``voxflow warm``."""
    name = deployment.name or profile.name
    return ModelNotWarmed(
        e.model,
        e.path,
        e.detail,
        warm_deployment_command(profile, store, name),
        hint="or start this run with on_cold_cache=warm",
    )


def in_preflight(e: VoxflowError) -> VoxflowError:
    """``e``, marked as the preflight's: what a failed run's artifact names as its stage."""
    e.stage = e.stage or "preflight"
    return e


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
