"""The inbox flow: transcribe each new media file in a folder once; quarantine what fails."""

from __future__ import annotations

import logging
from pathlib import Path

from prefect import flow
from prefect.artifacts import create_table_artifact

from flows.request import OnColdCache, TranscribeRequest
from flows.runtime import ready_or_warm
from flows.transcribe import transcribe_job
from profiles import load_profile, resolve_profile
from tasks.inbox import (
    DONE,
    LEDGER_NAME,
    QUARANTINED,
    InboxBusy,
    InboxFile,
    is_file_fault,
    locked_ledger,
    pending_files,
)
from tasks.inbox import quarantine as move_to_quarantine
from tasks.job import prepare_job
from voxflow.settings import load_settings

log = logging.getLogger(__name__)


@flow(name="inbox", log_prints=False)
def inbox(
    inbox_dir: str,
    profile: str = "auto",
    output_dir: str | None = None,
    store: str | None = None,
    quarantine_dir: str | None = None,
    language: str | None = None,
    formats: list[str] | None = None,
    min_age_s: float = 10.0,
    on_cold_cache: OnColdCache = "fail",
) -> dict[str, list[str]]:
    """Transcribe every new media file in a folder exactly once, by content hash.

    Args:
        inbox_dir: Folder to watch; media files directly in it (not hidden) are candidates.
        profile: Hardware profile (cpu, cuda, mlx, openvino) or auto to pick by hardware.
        output_dir: Where job directories and the ledger go ($VOXFLOW_OUTPUT or ./output).
        store: Model volume root ($VOXFLOW_STORE or ./models when empty).
        quarantine_dir: Where failed files go with a .error.txt note (inbox_dir/quarantine).
        language: Spoken language (ISO 639-1); detected when empty.
        formats: Output formats among srt, vtt, json, txt (all when empty).
        min_age_s: Leave files modified less than this many seconds ago for the next run.
        on_cold_cache: On a cold model volume: fail without touching any file, or warm it.

    Returns:
        File names by outcome: ``done``, ``quarantined``.

    Raises:
        ModelNotWarmed: The volume is cold (the files stay in the inbox).
        VoxflowError: Any failure of the machine or the volume (a full disk, memory): the run
            fails at that file, which stays in the inbox; the files done before it stay done.
    """
    settings = load_settings()
    folder = Path(inbox_dir)
    output = Path(output_dir or settings.output)
    quarantine = Path(quarantine_dir) if quarantine_dir else folder / "quarantine"
    chosen_name = resolve_profile(profile)
    summary: dict[str, list[str]] = {DONE: [], QUARANTINED: []}

    def request(item: InboxFile) -> TranscribeRequest:
        return TranscribeRequest(
            media=str(item.path),
            profile=chosen_name,
            language=language,
            formats=formats,
            output_dir=str(output),
            store=store,
        )

    try:
        with locked_ledger(output / LEDGER_NAME) as ledger:
            todo = pending_files(folder, ledger, min_age_s)
            if not todo:
                log.info("inbox %s: nothing new", folder)
                return summary
            # Problems of the machine or the volume fail the run before any file is touched;
            # only what goes wrong with one file sends that file to quarantine.
            first = request(todo[0]).check()
            ready = ready_or_warm(first.profile, first.volume, on_cold_cache)
            for item in todo:
                try:
                    run = request(item).check()
                    job = prepare_job(run.request.media, str(run.output))
                    record = transcribe_job(job, run, ready).record
                except Exception as e:
                    if not is_file_fault(e):
                        log.error(
                            "inbox: stopping at %s, which stays in the inbox: %s",
                            item.path.name,
                            e,
                        )
                        raise
                    moved = move_to_quarantine(item, quarantine, e)
                    log.error("inbox: %s failed, moved to %s: %s", item.path.name, moved, e)
                    ledger.record(item, QUARANTINED, error=str(e), moved_to=str(moved))
                    summary[QUARANTINED].append(item.path.name)
                    continue
                ledger.record(
                    item,
                    DONE,
                    outputs=record["outputs"],
                    flow_run_id=record.get("flow_run_id"),
                )
                summary[DONE].append(item.path.name)
    except InboxBusy as e:
        log.warning("%s", e)
        return summary
    create_table_artifact(
        key=f"inbox-{load_profile(chosen_name).name}",
        table=[{"file": f, "outcome": k} for k, files in summary.items() for f in files],
        description=f"inbox {folder}: {len(summary[DONE])} done, "
        f"{len(summary[QUARANTINED])} quarantined",
    )
    return summary
