"""The inbox flows: claim each new media file in a folder once, and transcribe it in a batch.

``inbox`` (scheduled) finds the new files, claims them in batches and hands each batch to a run
of ``inbox-batch``: under a deployment a flow run of ``inbox-batch/<same name>`` on the same work
pool, so every worker of the pool takes work at once; in-process, a subflow, one batch after
another. A batch run keeps its models loaded for all its files, renews its claim while it works
and quarantines the files that cannot be decoded. See :mod:`flows.inbox.files` for the claims, and
for why links and special files in the inbox are never read or moved (they are listed as
skipped in the inbox run's artifact).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.runtime import deployment, flow_run
from prefect.states import Completed

from flows.failures import fails_with_fix
from flows.inbox.files import (
    CLAIMED,
    DONE,
    LEDGER_NAME,
    QUARANTINED,
    SKIPPED,
    InboxFile,
    Ledger,
    claim_holds,
    entry_problem,
    is_file_fault,
    locked_ledger,
    scan_inbox,
)
from flows.inbox.quarantine import check_quarantine, quarantine_folder
from flows.inbox.quarantine import quarantine as move_to_quarantine
from flows.names import batch_run_name, files_title, inbox_run_name, rename_this_run
from flows.parameters import takes
from flows.request import InboxBatchRequest, InboxOptions, InboxRequest, TranscribeRequest
from flows.runtime import ready_or_warm, under_deployment
from flows.transcribe import transcribe_job
from profiles import load_profile, resolve_profile
from tasks.job import prepare_job
from tasks.markdown import escape, run_link, table_rows
from tasks.media import NotRegularFile
from tasks.registry import POOL
from tasks.warm.preflight import ReadyStage
from voxflow.errors import BadInput
from voxflow.logs import show_voxflow_logs
from voxflow.settings import load_settings

log = logging.getLogger(__name__)

QUEUED = "queued"
LOST = "claim lost"
RUN_COLUMNS = ("claimed by", "batch run")
"""The inbox table's columns that name flow runs: links to them in the UI."""


def batch_run_state(run_id: str) -> str | None:
    """The state type of a flow run (``SCHEDULED``, ``RUNNING``, ...), or None when the server
    does not know it or cannot be reached (the claim's lapse time decides then)."""
    from prefect.client.orchestration import get_client

    try:
        with get_client(sync_client=True) as client:
            found = client.read_flow_run(uuid.UUID(run_id))
    except Exception as e:  # a claim must never fail the scan: its lapse time still counts
        log.debug("no state for flow run %s: %s", run_id, e)
        return None
    return found.state_type.value if found.state_type else None


def this_run() -> str:
    """How the ledger names the flow run it is written from."""
    return str(flow_run.id) if flow_run.id else f"pid {os.getpid()}"


@flow(name="inbox", flow_run_name=inbox_run_name, log_prints=False)
@fails_with_fix
@takes(InboxRequest)
def inbox(inbox_dir: str, **options: Any) -> dict[str, list[str]]:
    """Claim every new media file in a folder, by content hash, and transcribe it exactly once.

    Returns:
        File names by outcome: ``done`` and ``quarantined`` (batches run in this process),
        ``queued`` (batches handed to the pool's workers).

    Raises:
        ModelNotWarmed: The volume is cold (no file is claimed).
        QuarantineRefused: The quarantine is a link or not a folder, or outside the inbox (no
            file is claimed).
        VoxflowError: Any failure of the machine or the volume (a full disk, memory) in an
            in-process batch: the run fails at that file, which a later run does again.
    """
    show_voxflow_logs()
    request = InboxRequest(inbox_dir=inbox_dir, **options)
    if request.batch_size < 1 or request.claim_ttl_s <= 0:
        raise BadInput(
            f"expected batch_size >= 1 and claim_ttl_s > 0, found {request.batch_size} and "
            f"{request.claim_ttl_s}"
        )
    settings = load_settings()
    folder = Path(inbox_dir)
    output = Path(request.output_dir or settings.output)
    chosen_name = resolve_profile(request.profile)
    # What each batch is given: this run's options, its profile resolved once, here.
    shared = InboxOptions(
        **{**request.model_dump(include=set(InboxOptions.model_fields)), "profile": chosen_name,
           "output_dir": str(output)}
    )  # fmt: skip
    summary: dict[str, list[str]] = {DONE: [], QUARANTINED: [], QUEUED: []}
    ledger_path = output / LEDGER_NAME
    quarantine = quarantine_folder(folder, request.quarantine_dir or None)
    check_quarantine(folder, quarantine)

    # Hashing new files takes a while: it reads the ledger as it is (written by renames) and
    # takes the lock only to claim, checking each file again.
    scan = scan_inbox(folder, Ledger.load(ledger_path), request.min_age_s, batch_run_state)
    todo = scan.pending
    rename_this_run(files_title("inbox", [item.path.name for item in todo]))
    batches: dict[str, list[InboxFile]] = {}
    rows: dict[str, dict[str, Any]] = {}
    if todo:
        # Problems of the machine or the volume fail the run before any file is claimed.
        first = shared.file_request(str(todo[0].path)).check()
        ready_or_warm(first.profile, first.volume, request.on_cold_cache)
        batches, rows = claim_batches(ledger_path, todo, request.batch_size, request.claim_ttl_s)
    else:
        log.info("inbox %s: nothing new", folder)
    shared_parameters = {
        **shared.model_dump(),
        "quarantine_dir": str(quarantine),
        "inbox_run": this_run(),
    }
    for token, items in batches.items():
        names = [item.path.name for item in items]
        if under_deployment():
            run = hand_to_pool(ledger_path, token, shared_parameters)
            for name in names:
                rows[name] |= {"batch run": run, "outcome": QUEUED}
            summary[QUEUED] += names
            continue
        outcome = inbox_batch(claim=token, **shared_parameters)
        for status, done in outcome.items():
            if status in summary:
                summary[status] += done
            for name in done:
                rows[name] |= {"batch run": "subflow", "outcome": status}
    for row in settled_outcomes(ledger_path):  # what batch runs finished since the last report
        if row["file"] in rows:  # claimed by this run and already done (or done in-process)
            seen = {"batch run": row["batch run"], "outcome": row["outcome"]}
            if row["outcome"] != DONE:  # why it was quarantined or skipped
                seen["note"] = row["note"]
            rows[row["file"]] |= seen
        else:
            rows[row["file"]] = row
    left = [
        {"file": name, "sha256": "", "claimed by": "", "batch run": "", "outcome": SKIPPED,
         "note": reason}
        for name, reason in scan.skipped.items()
    ]  # fmt: skip
    if rows or left:
        create_table_artifact(
            key=f"inbox-{load_profile(chosen_name).name}",
            table=table_rows(list(rows.values()) + left, runs=RUN_COLUMNS),
            description=f"inbox {escape(str(folder))}: {sum(map(len, batches.values()))} claimed "
            f"in {len(batches)} batch(es) by {run_link(this_run())}; outcomes of earlier claims "
            "recorded since the last inbox run"
            + (f"; {len(left)} skipped: links and special files are never read" if left else ""),
        )
    log.info("inbox %s: %s", folder, ", ".join(f"{len(v)} {k}" for k, v in summary.items()))
    return ended(summary)


def settled_outcomes(ledger_path: Path) -> list[dict[str, Any]]:
    """Artifact rows for the files whose batch runs recorded an outcome since an inbox run
    last reported; they are marked reported, so each outcome shows in one inbox artifact."""
    rows = []
    with locked_ledger(ledger_path) as ledger:
        for sha, entry in ledger.entries.items():
            if entry.get("status") not in (DONE, QUARANTINED, SKIPPED) or entry.get("reported"):
                continue
            if "batch_run" not in entry:  # recorded before batches had runs: nothing to say
                continue
            entry["reported"] = True
            where = f"{entry.get('host')} (worker pid {entry.get('worker_pid')})"
            rows.append({
                "file": entry["file"],
                "sha256": sha[:12],
                "claimed by": entry.get("claimed_by") or "",
                "batch run": entry["batch_run"],
                "outcome": entry["status"],
                "note": entry.get("error") or f"on {where}",
            })  # fmt: skip
        if rows:
            ledger.save()
    return rows


def claim_batches(
    ledger_path: Path, todo: list[InboxFile], batch_size: int, ttl: float
) -> tuple[dict[str, list[InboxFile]], dict[str, dict[str, Any]]]:
    """Claim the files still free once the lock is held, ``batch_size`` to a token.

    Returns:
        Token -> its files, and file name -> the artifact row saying what was claimed.
    """
    batches: dict[str, list[InboxFile]] = {}
    rows: dict[str, dict[str, Any]] = {}
    with locked_ledger(ledger_path) as ledger:
        now = time.time()
        free = [
            item
            for item in todo
            if not ledger.is_done(item.sha256)
            and not claim_holds(ledger.entries.get(item.sha256, {}), now, batch_run_state)
        ]
        for start in range(0, len(free), batch_size):
            token = uuid.uuid4().hex
            batches[token] = free[start : start + batch_size]
            for item in batches[token]:
                before = ledger.entries.get(item.sha256, {})
                note = ""
                if before.get("status") == CLAIMED:
                    note = f"claimed again: the claim of batch run {before.get('batch_run')} lapsed"
                ledger.claim(item, token, now + ttl, claimed_by=this_run())
                rows[item.path.name] = {
                    "file": item.path.name,
                    "sha256": item.sha256[:12],
                    "claimed by": this_run(),
                    "batch run": "",
                    "outcome": "",
                    "note": note,
                }
        ledger.save()
    return batches, rows


def hand_to_pool(ledger_path: Path, token: str, shared: dict[str, Any]) -> str:
    """Start a flow run of ``inbox-batch/<this deployment's name>`` for a claim; its id."""
    from prefect.deployments import run_deployment

    name = f"inbox-batch/{deployment.name}"
    run = run_deployment(name, parameters={"claim": token, **shared}, timeout=0)
    with locked_ledger(ledger_path) as ledger:
        ledger.renew(token, time.time() + shared["claim_ttl_s"], batch_run=str(run.id))
        ledger.save()
    log.info("inbox: batch %s handed to %s as run %s", token[:8], name, run.name)
    return str(run.id)


@flow(name="inbox-batch", flow_run_name=batch_run_name, log_prints=False)
@fails_with_fix
@takes(InboxBatchRequest)
def inbox_batch(claim: str, **options: Any) -> dict[str, list[str]]:
    """Transcribe the files an inbox run claimed, loading each model once for all of them.

    Returns:
        File names by outcome: ``done``, ``quarantined``, ``skipped`` (a link or a special file
        by now: left alone), ``claim lost`` (another run holds the file now: this one left it).
    """
    show_voxflow_logs()
    request = InboxBatchRequest(claim=claim, **options)
    output = Path(request.output_dir or load_settings().output)
    ledger_path = output / LEDGER_NAME
    claim_ttl_s, inbox_run = request.claim_ttl_s, request.inbox_run
    here = {"host": socket.gethostname(), "pid": os.getpid(), "worker_pid": os.getppid()}
    with locked_ledger(ledger_path) as ledger:
        held = list(ledger.claimed_by(claim))
        ledger.renew(claim, time.time() + claim_ttl_s, batch_run=this_run(), **here)
        ledger.save()
        names = [ledger.entries[sha].get("file", sha[:12]) for sha in held]
    rename_this_run(files_title("batch", names))
    summary: dict[str, list[str]] = {DONE: [], QUARANTINED: [], SKIPPED: [], LOST: []}
    rows: list[dict[str, Any]] = []
    if not held:
        log.warning("inbox batch %s: the claim holds no file any more", claim[:8])
        return summary

    quarantine = Path(request.quarantine_dir) if request.quarantine_dir else None
    with renewing(ledger_path, claim, claim_ttl_s), POOL.session() as loaded:
        ready: dict[str, ReadyStage] = {}
        for sha in held:
            with locked_ledger(ledger_path) as ledger:
                item = ledger.file(sha)
                if item is None or sha not in ledger.claimed_by(claim):
                    name = ledger.entries.get(sha, {}).get("file", sha[:12])
                    log.warning("inbox: the claim on %s is no longer this run's; leaving it", name)
                    summary[LOST].append(name)
                    continue
                ledger.entries[sha]["started"] = time.time()
                ledger.save()
            status, details = transcribe_file(
                item,
                request.file_request(str(item.path), output_dir=str(output)),
                ready,
                quarantine or item.path.parent / "quarantine",
            )
            with locked_ledger(ledger_path) as ledger:
                if ledger.is_done(sha):
                    log.warning("inbox: %s was done by another run meanwhile", item.path.name)
                else:
                    ledger.record(
                        item, status, batch_run=this_run(), claimed_by=inbox_run, **here, **details
                    )
            summary[status].append(item.path.name)
            rows.append({"file": item.path.name, "outcome": status, **here,
                         "detail": details.get("error", "")})  # fmt: skip
    create_table_artifact(
        key=f"inbox-batch-{load_profile(request.profile).name}",
        table=table_rows(rows),
        description=f"inbox batch {claim[:8]} of {run_link(inbox_run)}: {len(summary[DONE])} done, "
        f"{len(summary[QUARANTINED])} quarantined on {here['host']} (worker pid "
        f"{here['worker_pid']}); models loaded once each: {', '.join(loaded) or 'none'}",
    )
    log.info(
        "inbox batch %s: %s", claim[:8], ", ".join(f"{len(v)} {k}" for k, v in summary.items())
    )
    return ended(summary)


def ended(summary: dict[str, list[str]]) -> Any:
    """How an inbox or batch run ends: its outcomes; when it quarantined files, in a Completed
    state named ``Quarantined`` whose message names them, so the runs list tells such a run from
    one that did every file (a caller still gets the outcomes)."""
    moved = summary.get(QUARANTINED) or []
    if not moved:
        return summary
    names = ", ".join(moved[:5]) + (f" and {len(moved) - 5} more" if len(moved) > 5 else "")
    return Completed(
        name="Quarantined",
        message=f"{len(moved)} file(s) quarantined: {names}; each has a .error.txt note beside "
        "it in the quarantine folder",
        data=summary,
    )


def transcribe_file(
    item: InboxFile, request: TranscribeRequest, ready: dict[str, ReadyStage], quarantine: Path
) -> tuple[str, dict[str, Any]]:
    """Transcribe one claimed file; a file that cannot be decoded goes to quarantine.

    Args:
        item: The file.
        request: Its transcribe request.
        ready: What the batch's preflight found; filled by the first file's (a cold volume
            fails the run there).
        quarantine: Where it goes if it cannot be decoded.

    Returns:
        ``done``, ``quarantined`` or ``skipped`` (the name is a link or a special file by now:
        never read or moved), with what the ledger records of it.

    Raises:
        VoxflowError: A failure of the machine or the volume; the file stays in the inbox.
        QuarantineRefused: The quarantine became a link or not a folder; the file stays.
    """
    try:
        if reason := entry_problem(item.path):
            return skip(item, reason)
        run = request.check()
        if not ready:
            ready.update(ready_or_warm(run.profile, run.volume, "fail"))
        # Opened through the entry itself, once: a link swapped in since the look above is
        # refused, and one swapped in later is never read (extract decodes the open file).
        with prepare_job(run.request.media, str(run.output), follow_links=False) as job:
            record = transcribe_job(job, run, ready).record
    except NotRegularFile as e:
        return skip(item, e.reason)
    except Exception as e:
        if reason := became_special(item):  # a link swapped in made the checks fail
            return skip(item, reason)
        if not is_file_fault(e):
            log.error("inbox: stopping at %s, which stays in the inbox: %s", item.path.name, e)
            raise
        try:
            moved = move_to_quarantine(item, quarantine, e)
        except NotRegularFile as gone:
            return skip(item, gone.reason)
        log.error("inbox: %s failed, moved to %s: %s", item.path.name, moved, e)
        return QUARANTINED, {"error": str(e), "moved_to": str(moved)}
    return DONE, {"outputs": record["outputs"], "flow_run_id": record.get("flow_run_id")}


def became_special(item: InboxFile) -> str | None:
    """Why the claimed file's name must be left alone now (a link, a FIFO), or None."""
    try:
        return entry_problem(item.path)
    except FileNotFoundError:
        return None


def skip(item: InboxFile, reason: str) -> tuple[str, dict[str, Any]]:
    """The outcome of a claimed file whose name became a link or a special file."""
    log.warning("inbox: leaving %s alone: %s (it was a regular file when listed)",
                item.path.name, reason)  # fmt: skip
    return SKIPPED, {"error": reason}


@contextmanager
def renewing(ledger_path: Path, token: str, ttl: float) -> Iterator[None]:
    """Renew ``token``'s claims every third of ``ttl`` while the body runs (a heartbeat)."""
    stop = threading.Event()

    def beat() -> None:
        while not stop.wait(max(ttl / 3, 0.5)):
            try:
                with locked_ledger(ledger_path, timeout=ttl / 3) as ledger:
                    if ledger.renew(token, time.time() + ttl):
                        ledger.save()
            except Exception as e:  # the next beat tries again; the claim lapses if none works
                log.warning("inbox: could not renew claim %s: %s", token[:8], e)

    thread = threading.Thread(target=beat, name=f"claim-{token[:8]}", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
