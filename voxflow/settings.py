"""Environment variables, read in one place through one parser.

Library code asks for a :class:`Settings` instead of reading ``os.environ`` itself.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from voxflow.errors import BadInput


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
    )


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
