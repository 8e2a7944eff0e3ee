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
from functools import partial
from pathlib import Path
from typing import Any

from prefect import flow
from prefect.artifacts import create_table_artifact
from prefect.runtime import deployment, flow_run

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
from flows.request import OnColdCache, TranscribeRequest
from flows.runtime import ready_or_warm, under_deployment
from flows.transcribe import transcribe_job
from profiles import load_profile, resolve_profile
from tasks.job import NotRegularFile, prepare_job
from tasks.registry import POOL
from tasks.warm.preflight import ReadyStage
from voxflow.errors import BadInput
from voxflow.logs import show_voxflow_logs
from voxflow.settings import load_settings

log = logging.getLogger(__name__)

QUEUED = "queued"
LOST = "claim lost"


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
    batch_size: int = 4,
    claim_ttl_s: float = 120.0,
) -> dict[str, list[str]]:
    """Claim every new media file in a folder, by content hash, and transcribe it exactly once.

    Args:
        inbox_dir: Folder to watch; media files directly in it (not hidden) are candidates.
        profile: Hardware profile (cpu, cuda, mlx, openvino) or auto to pick by hardware.
        output_dir: Where job directories and the ledger go ($VOXFLOW_OUTPUT or ./output).
        store: Model volume root ($VOXFLOW_STORE or ./models when empty).
        quarantine_dir: The folder inside the inbox where failed files go with a .error.txt
            note (inbox_dir/quarantine); it must be a real folder, not a link.
        language: Spoken language (ISO 639-1); detected when empty.
        formats: Output formats among srt, vtt, json, txt (all when empty).
        min_age_s: Leave files modified less than this many seconds ago for the next run.
        on_cold_cache: On a cold model volume: fail without touching any file, or warm it.
        batch_size: Files per batch run; each batch run loads its models once.
        claim_ttl_s: Seconds a claim outlives the last sign of life of its batch run; then a
            later inbox run claims its files again.

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
    if batch_size < 1 or claim_ttl_s <= 0:
        raise BadInput(
            f"expected batch_size >= 1 and claim_ttl_s > 0, found {batch_size} and {claim_ttl_s}"
        )
    settings = load_settings()
    folder = Path(inbox_dir)
    output = Path(output_dir or settings.output)
    chosen_name = resolve_profile(profile)
    summary: dict[str, list[str]] = {DONE: [], QUARANTINED: [], QUEUED: []}
    ledger_path = output / LEDGER_NAME
    quarantine = quarantine_folder(folder, quarantine_dir)
    check_quarantine(folder, quarantine)

    # Hashing new files takes a while: it reads the ledger as it is (written by renames) and
    # takes the lock only to claim, checking each file again.
    scan = scan_inbox(folder, Ledger.load(ledger_path), min_age_s, batch_run_state)
    todo = scan.pending
    rename_this_run(files_title("inbox", [item.path.name for item in todo]))
    batches: dict[str, list[InboxFile]] = {}
    rows: dict[str, dict[str, Any]] = {}
    if todo:
        # Problems of the machine or the volume fail the run before any file is claimed.
        first = file_request(todo[0], chosen_name, output, store, language, formats).check()
        ready_or_warm(first.profile, first.volume, on_cold_cache)
        batches, rows = claim_batches(ledger_path, todo, batch_size, claim_ttl_s)
    else:
        log.info("inbox %s: nothing new", folder)
    shared = {
        "profile": chosen_name,
        "output_dir": str(output),
        "store": store,
        "quarantine_dir": str(quarantine),
        "language": language,
        "formats": formats,
        "claim_ttl_s": claim_ttl_s,
        "inbox_run": this_run(),
    }
    for token, items in batches.items():
        names = [item.path.name for item in items]
        if under_deployment():
            run = hand_to_pool(ledger_path, token, shared)
            for name in names:
                rows[name] |= {"batch run": run, "outcome": QUEUED}
            summary[QUEUED] += names
            continue
        outcome = inbox_batch(claim=token, **shared)
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
            table=list(rows.values()) + left,
            description=f"inbox {folder}: {sum(map(len, batches.values()))} claimed in "
            f"{len(batches)} batch(es) by {this_run()}; outcomes of earlier claims recorded "
            "since the last inbox run"
            + (f"; {len(left)} skipped: links and special files are never read" if left else ""),
        )
    log.info("inbox %s: %s", folder, ", ".join(f"{len(v)} {k}" for k, v in summary.items()))
    return summary


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


def file_request(
    item: InboxFile,
    profile: str,
    output: Path,
    store: str | None,
    language: str | None,
    formats: list[str] | None,
) -> TranscribeRequest:
    """The transcribe request for one file of the inbox."""
    return TranscribeRequest(
        media=str(item.path),
        profile=profile,
        language=language,
        formats=formats,
        output_dir=str(output),
        store=store,
    )


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
def inbox_batch(
    claim: str,
    profile: str,
    output_dir: str,
    store: str | None = None,
    quarantine_dir: str | None = None,
    language: str | None = None,
    formats: list[str] | None = None,
    claim_ttl_s: float = 120.0,
    inbox_run: str | None = None,
) -> dict[str, list[str]]:
    """Transcribe the files an inbox run claimed, loading each model once for all of them.

    Args:
        claim: The claim's token in the ledger.
        profile: Hardware profile the inbox run resolved.
        output_dir: Where job directories and the ledger are.
        store: Model volume root.
        quarantine_dir: The folder inside the inbox where failed files go with a .error.txt note.
        language: Spoken language (ISO 639-1); detected when empty.
        formats: Output formats among srt, vtt, json, txt (all when empty).
        claim_ttl_s: How long the claim outlives this run's last renewal.
        inbox_run: The inbox run that made the claim.

    Returns:
        File names by outcome: ``done``, ``quarantined``, ``skipped`` (a link or a special file
        by now: left alone), ``claim lost`` (another run holds the file now: this one left it).
    """
    show_voxflow_logs()
    output = Path(output_dir)
    ledger_path = output / LEDGER_NAME
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

    request = partial(file_request, profile=profile, output=output, store=store,
                      language=language, formats=formats)  # fmt: skip
    quarantine = Path(quarantine_dir) if quarantine_dir else None
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
                item, request(item), ready, quarantine or item.path.parent / "quarantine"
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
        key=f"inbox-batch-{load_profile(profile).name}",
        table=rows,
        description=f"inbox batch {claim[:8]} of {inbox_run}: {len(summary[DONE])} done, "
        f"{len(summary[QUARANTINED])} quarantined on {here['host']} (worker pid "
        f"{here['worker_pid']}); models loaded once each: {', '.join(loaded) or 'none'}",
    )
    log.info(
        "inbox batch %s: %s", claim[:8], ", ".join(f"{len(v)} {k}" for k, v in summary.items())
    )
    return summary


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
        # Hashed through the entry itself: a link swapped in since the look above is refused.
        # The extract stage then opens job.media by name with PyAV, which follows links; that
        # short window (none when extract is cached) closes only once extract reads from a
        # descriptor opened without following links.
        job = prepare_job(run.request.media, str(run.output), follow_links=False)
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
