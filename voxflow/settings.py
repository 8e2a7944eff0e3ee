"""Environment variables, read in one place through one parser, and the environment voxflow's
runs are given, in one table.

Library code asks for a :class:`Settings` instead of reading ``os.environ`` itself. What a
run's process is given so that no library calls home or reaches a model hub (:data:`QUIET`,
:data:`OFFLINE`) is written here once: the CLI, the load check's child process, ``prefect.yaml``,
the images and the compose file carry the same values (``tests/test_docker_files.py`` holds
them to this table).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voxflow.errors import BadInput

QUIET = {
    "DO_NOT_TRACK": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "PYANNOTE_METRICS_ENABLED": "0",  # pyannote 4's usage telemetry calls otel.pyannote.ai
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,blocks,profiles,flows",
}
"""Every run's process, warms included: no telemetry, and voxflow's loggers in the run's log."""

OFFLINE = {"HF_HUB_OFFLINE": "1", "TRANSFORMERS_OFFLINE": "1", "HF_DATASETS_OFFLINE": "1"}
"""An inference run's process: the hub libraries never reach the network."""

ONLINE = {key: "0" for key in OFFLINE}
"""A warm's process: it may reach the models' sources. Said as "0", not left out, so a worker
whose own environment is offline for inference cannot pass that on to a warm."""


def run_environment(warm: bool = False) -> dict[str, str]:
    """What a run's process is given: :data:`QUIET`, with :data:`OFFLINE` (or, for a warm,
    :data:`ONLINE`)."""
    return {**QUIET, **(ONLINE if warm else OFFLINE)}


@dataclass(frozen=True)
class Settings:
    """Process-wide knobs, with their defaults in one place.

    Attributes:
        store: Root of the model volume (``$VOXFLOW_STORE``, default ``./models``).
        output: Where job directories go (``$VOXFLOW_OUTPUT``, default ``./output``).
        profile: Default hardware profile (``$VOXFLOW_PROFILE``, default ``auto``).
        gpu_limit: Name of the Prefect global concurrency limit that GPU stages hold
            (``$VOXFLOW_GPU_LIMIT``, default ``gpu``); one limit per GPU host keeps one host
            from running two GPU stages at once while others run theirs.
        catalogs: Extra model catalogs merged over the shipped one, in order
            (``$VOXFLOW_CATALOG``, paths separated by ``os.pathsep``): how an operator adds or
            overrides models without editing the package.
        hf_endpoint: Hub URL for ``hf://`` sources (``$HF_ENDPOINT``; huggingface.co when unset).
        hf_token: Hub access token for gated or private models (``$HF_TOKEN``); kept out of
            ``repr`` so it never reaches a log line.
        server_idle_s: How long the local Prefect server voxflow starts stays up with no
            voxflow command or run using it (``$VOXFLOW_SERVER_IDLE_S``, seconds, default 1800;
            ``0`` keeps it up until ``voxflow server stop``).
        runtime_dir: The user's runtime folder (``$XDG_RUNTIME_DIR``), where voxflow lists the
            local servers and runners it started (else under ``~/.cache/voxflow``).
        debug: Show tracebacks and Prefect's own failure reports (``$VOXFLOW_DEBUG``, a
            switch: 1/true/yes/on or 0/false/no/off).
        runner: Hand commands to the local runner (``$VOXFLOW_RUNNER``, a switch, default on).
        runner_idle_s: How long the local runner waits for a command before it leaves
            (``$VOXFLOW_RUNNER_IDLE_S``, seconds, default 300).
        prefect_home: The Prefect home (``$PREFECT_HOME``, else ``~/.prefect``), as an absolute
            path.
        prefect_api_url: The Prefect server runs go to (``$PREFECT_API_URL``); None: the
            local server voxflow starts and reuses.
    """

    store: Path = Path("models")
    output: Path = Path("output")
    profile: str = "auto"
    hf_endpoint: str | None = None
    hf_token: str | None = field(default=None, repr=False)
    catalogs: tuple[Path, ...] = ()
    gpu_limit: str = "gpu"
    server_idle_s: float = 1800.0
    runtime_dir: Path | None = None
    debug: bool = False
    runner: bool = True
    runner_idle_s: float = 300.0
    prefect_home: Path = field(default_factory=lambda: Path.home() / ".prefect")
    prefect_api_url: str | None = None


def load_settings(environ: Mapping[str, str] | None = None) -> Settings:
    """Build settings from the environment.

    Args:
        environ: The mapping to read; ``os.environ`` when omitted.

    Returns:
        The parsed settings.
    """
    env = os.environ if environ is None else environ
    for key in ("VOXFLOW_STORE", "VOXFLOW_OUTPUT", "VOXFLOW_PROFILE", "VOXFLOW_GPU_LIMIT"):
        if "{{" in env.get(key, ""):  # a prefect.yaml placeholder nobody filled
            raise BadInput(
                f"{key} is {env[key]!r}: it was not set when the deployment was made; "
                f"set {key} and run `prefect deploy` again"
            )
    defaults = Settings()
    return Settings(
        store=Path(env.get("VOXFLOW_STORE") or defaults.store),
        output=Path(env.get("VOXFLOW_OUTPUT") or defaults.output),
        profile=env.get("VOXFLOW_PROFILE") or defaults.profile,
        gpu_limit=env.get("VOXFLOW_GPU_LIMIT") or defaults.gpu_limit,
        catalogs=tuple(Path(p) for p in (env.get("VOXFLOW_CATALOG") or "").split(os.pathsep) if p),
        hf_endpoint=(env.get("HF_ENDPOINT") or "").rstrip("/") or None,
        hf_token=env.get("HF_TOKEN") or None,
        server_idle_s=_seconds(env, "VOXFLOW_SERVER_IDLE_S", defaults.server_idle_s),
        runtime_dir=Path(env["XDG_RUNTIME_DIR"]) if env.get("XDG_RUNTIME_DIR") else None,
        debug=_switch(env, "VOXFLOW_DEBUG", defaults.debug),
        runner=_switch(env, "VOXFLOW_RUNNER", defaults.runner),
        runner_idle_s=_seconds(env, "VOXFLOW_RUNNER_IDLE_S", defaults.runner_idle_s),
        prefect_api_url=env.get("PREFECT_API_URL") or None,
        prefect_home=Path(env.get("PREFECT_HOME") or defaults.prefect_home).expanduser().absolute(),
    )


_ON, _OFF = ("1", "true", "yes", "on"), ("0", "false", "no", "off")


def _switch(env: Mapping[str, str], key: str, default: bool) -> bool:
    """A switch from ``env[key]``: 1/true/yes/on or 0/false/no/off, any case (``default`` when
    unset or empty). The one boolean parser voxflow has.

    Raises:
        BadInput: It is something else.
    """
    raw = env.get(key, "").strip().lower()
    if not raw:
        return default
    if raw not in _ON + _OFF:
        raise BadInput(f"{key} is {env[key]!r}: expected 1, true, yes, on or 0, false, no, off")
    return raw in _ON


def _seconds(env: Mapping[str, str], key: str, default: float) -> float:
    """A number of seconds, 0 or more, from ``env[key]`` (``default`` when unset or empty).

    Raises:
        BadInput: It is not such a number.
    """
    raw = env.get(key, "").strip()
    if not raw:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = -1.0
    if not value >= 0 or value == float("inf"):
        raise BadInput(f"{key} is {raw!r}: expected a number of seconds, 0 or more")
    return value
