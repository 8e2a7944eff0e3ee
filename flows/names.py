"""How voxflow's flow runs are named in the Prefect UI: after the file they work on.

Prefect names a flow run with two random words ("military-sheep"); a runs list of those cannot
say which file failed. The flows take ``flow_run_name=`` one of these, read from the run's own
parameters; the inbox's runs, whose files are known only once they are listed or claimed,
rename themselves then (:func:`rename_this_run`).
"""

from __future__ import annotations

import logging

from prefect.runtime import flow_run

from tasks.naming import media_name

log = logging.getLogger(__name__)


def file_run_name() -> str:
    """A transcribe run's name: its media's file name ("talk.m4a")."""
    return media_name(flow_run.parameters.get("media", "media"))


def subtitle_run_name() -> str:
    """A subtitle run's name: its file and target languages ("talk.m4a → fr, de")."""
    targets = flow_run.parameters.get("target_languages") or []
    return f"{file_run_name()} → {', '.join(map(str, targets)) or '?'}"


def warm_run_name() -> str:
    """A warm run's name: the profile it warms, and the stages it adds ("warm · cpu +translate")."""
    extra = flow_run.parameters.get("with_stages") or []
    return " ".join([f"warm · {flow_run.parameters.get('profile', 'auto')}",
                     *(f"+{s}" for s in extra)])  # fmt: skip


def inbox_run_name() -> str:
    """An inbox run's name until it has listed its folder ("inbox · incoming")."""
    return f"inbox · {media_name(flow_run.parameters.get('inbox_dir', ''))}"


def batch_run_name() -> str:
    """A batch run's name until it has read its claim ("batch · 3f2a9c1b")."""
    return f"batch · {str(flow_run.parameters.get('claim', ''))[:8]}"


def files_title(prefix: str, names: list[str]) -> str:
    """ "inbox · 12 files", "batch · talk.m4a", "batch · 2 files: a.m4a, b.m4a"."""
    if len(names) == 1:
        return f"{prefix} · {names[0]}"
    shown = f": {', '.join(names[:3])}{', …' if len(names) > 3 else ''}" if names else ""
    return f"{prefix} · {len(names)} files{shown}" if names else f"{prefix} · no new files"


def rename_this_run(name: str) -> None:
    """Give the current flow run a new name on the server (nothing outside a flow run)."""
    from prefect.client.orchestration import get_client

    if flow_run.id is None:
        return
    with get_client(sync_client=True) as client:
        client.update_flow_run(flow_run.id, name=name)
    log.info("this run is now named %r", name)
