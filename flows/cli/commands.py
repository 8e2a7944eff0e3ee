"""What each ``voxflow`` command does, once :mod:`flows.cli.main` has parsed its flags.

Each takes the parsed arguments and returns the exit status; errors are raised (the CLI turns
them into one line). Cheap checks come first, so bad input fails before a Prefect server starts.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from collections.abc import Callable
from typing import Any

from flows.cli import runner
from flows.cli import runs as runs_in_flight
from voxflow.errors import BadInput, VoxflowError
from voxflow.settings import load_settings


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def warm(args: argparse.Namespace) -> int:
    from flows.warm_cache import warm_cache
    from profiles import resolve_profile

    rows = warm_cache(
        profile=resolve_profile(args.profile),
        store=args.store,
        load_checks=not args.no_load_check,
        force=args.force,
        with_stages=[s.strip() for s in args.with_stages.split(",") if s.strip()],
        mirrors=args.mirrors,
    )
    _table(rows, ["model", "status", "size_mb", "files", "load_check"])
    _out(f"model volume ready: {os.path.abspath(args.store)}")
    return 0


def verify(args: argparse.Namespace) -> int:
    from blocks.volume import Volume
    from profiles import load_catalog, load_profile, resolve_profile

    profile = load_profile(resolve_profile(args.profile))
    catalog = load_catalog()
    store = Volume(root=args.store)
    bad = 0
    for name in profile.models():
        result = store.verify(catalog[name], deep=args.deep)
        if result.ok:
            _out(
                f"ok      {name} ({result.files} files, {result.bytes / 1e6:.1f} MB"
                f"{', sha256 checked' if args.deep else ''})"
            )
        else:
            bad += 1
            for problem in result.problems:
                _out(f"FAILED  {name}: {problem}")
    if bad:
        _out(
            f"{bad} model(s) failed verification; run `voxflow warm --profile "
            f"{profile.name} --store {args.store}` to repair"
        )
        return 1
    return 0


def transcribe(args: argparse.Namespace) -> int:
    from flows.cli.flags import requests
    from flows.request import TranscribeRequest
    from flows.transcribe import transcribe as transcribe_flow

    runs = _checked_runs(requests(args, TranscribeRequest))

    def report(media: str, record: dict) -> None:
        _out(
            f"{media}: {record['audio_seconds']:.1f} s of audio, real-time factor "
            f"{record['real_time_factor']}"
        )
        for fmt, path in record["outputs"].items():
            _out(f"  {fmt:5} {path}")
        _out(_check_line(record.get("subtitles")))

    return _each_media(runs, transcribe_flow, report)


def subtitle(args: argparse.Namespace) -> int:
    from flows.cli.flags import requests
    from flows.request import SubtitleRequest
    from flows.subtitle import subtitle as subtitle_flow

    runs = _checked_runs(requests(args, SubtitleRequest))

    def report(media: str, record: dict) -> None:
        _out(f"{media}: {record['audio_seconds']:.1f} s of audio")
        for fmt, path in record["outputs"].items():
            _out(f"  {fmt:5} {path}")
        for language, paths in record["translations"].items():
            for fmt, path in paths.items():
                _out(f"  {language:>3} {fmt:5} {path}")

    return _each_media(runs, subtitle_flow, report)


def _check_line(check: dict[str, Any] | None) -> str:
    """One line on the subtitles' check: the rule set, cues, and the rules no layout could keep."""
    if not check:
        return "  subtitles: no cues"
    broken = ", ".join(f"{rule} {len(cues)}" for rule, cues in check["by_rule"].items())
    return (
        f"  subtitles: {check['cues']} cues under {check['rules']}, "
        f"{check['violations']} violation(s)" + (f" ({broken})" if broken else "")
    )


def _checked_runs(requests: list[Any]) -> list[Any]:
    """Every request checked, then the profile's hardware and warmed models: all bad input and
    a cold volume fail before a Prefect server starts ('auto' is decided once, here). Each
    flow is then given its checked run (:func:`flows.request.remember`), so it checks and
    preflights nothing again. With ``--on-cold-cache warm`` a cold volume is the flow's to
    warm, so it is not preflighted here."""
    from dataclasses import replace

    from flows.request import remember
    from tasks.warm.preflight import preflight

    runs = [request.check() for request in requests]
    if runs[0].request.on_cold_cache == "fail":
        ready = preflight(runs[0].profile, runs[0].volume)
        runs = [
            replace(run, ready=ready) if run.profile == runs[0].profile else run for run in runs
        ]
    for run in runs:
        remember(run)
    return runs


def _each_media(
    runs: list[Any],
    flow: Callable[..., dict[str, Any]],
    report: Callable[[str, dict[str, Any]], None],
) -> int:
    """Run one flow per file; with several files a failure is reported and the rest go on, but
    a lost local server ends the command (:mod:`flows.cli.runs`)."""
    local = runs_in_flight.local_server()
    if local is not None:
        runs_in_flight.mark_crashed(lambda line: sys.stderr.write(f"voxflow: {line}\n"))
        flow = runs_in_flight.recording(flow)
    failed = 0
    for run in runs:
        media = run.request.media
        try:
            record = _run_flow(flow, run, local)
        except runs_in_flight.ServerLost:
            raise
        except VoxflowError as e:
            if len(runs) == 1:
                raise
            failed += 1
            _out(f"FAILED  {media}: {e}")
            continue
        report(media, record)
    return 1 if failed else 0


def _run_flow(flow: Callable[..., dict[str, Any]], run: Any, local: Any) -> dict[str, Any]:
    """One flow run, watched while it runs against the local server; its record in the Prefect
    home goes once it ended here (a lost server leaves it, for the next command to mark)."""
    if local is None:
        return flow(**run.request.parameters())
    before = runs_in_flight.in_flight()
    with runs_in_flight.watched(local.process, run.output):
        try:
            return flow(**run.request.parameters())
        finally:
            if local.process.running():
                runs_in_flight.finished(runs_in_flight.in_flight() - before)


def server(args: argparse.Namespace) -> int:
    from flows.cli import server as local

    if args.all and args.action != "stop":
        raise BadInput(f"--all goes with `voxflow server stop`, not `{args.action}`")
    api = load_settings().prefect_api_url
    if api and args.action != "stop":
        _out(f"PREFECT_API_URL is set: voxflow's runs use {api}")
    if args.all:
        ended = local.stop_all(_out)
        _out(
            f"stopped {ended} local server(s) and runner(s) of yours"
            if ended
            else f"no local server or runner of yours runs (their registry: {local.registry()})"
        )
        return 0
    if args.action == "status":
        return _server_status()
    if args.action == "start":
        found, started = local.ensure(_out)
        if not started:
            _out(f"local Prefect server already running at {found.url}")
        return 0
    pid = runner.stop()
    if pid is not None:
        _out(f"stopped the local runner (pid {pid})")
    named = local.read()
    stopped = local.stop()
    if stopped:
        _out(f"stopped the local Prefect server at {stopped.url} (pid {stopped.pid})")
    elif named:
        _out(
            f"no local server: its record named pid {named.pid}, which is no longer that "
            "server (it ended, or the pid is another process's now); nothing was signalled"
        )
    else:
        _out("no local server")
    return 0


def _server_status() -> int:
    """Where the local server is, how to open its UI, when it stops, and the runner beside it:
    whether it answers a ping at its socket, not only what its record says."""
    from flows.cli import server as local
    from flows.cli.home import USER

    where = local.paths()
    found = local.read()
    why = local.not_ours(found) if found is not None else None
    if found is None or why is not None:
        if why is not None:
            _out(f"the local server recorded in {where.record} is not used: {why}")
        _out(f"no local server for {where.root}; the next run starts one")
        return 1
    now = time.time()
    _out(
        f"local Prefect server at {found.url} (pid {found.pid}, "
        f"up {local.duration(now - found.started_at)})"
    )
    _out(
        f"its UI: open {found.url} in a browser; it asks for a password: the line in "
        f"{where.credential} (user {USER}, then the secret; only you can read that file)"
    )
    _out(
        f"the prefect CLI: PREFECT_API_URL={found.api} "
        f'PREFECT_API_AUTH_STRING="$(cat {shlex.quote(str(where.credential))})" prefect ...'
    )
    _out(_idle_line(found, local.usage(where), now))
    recorded = runner.status()
    answer = runner.ping(recorded) if recorded is not None else None
    if recorded is not None and answer is None:  # its record is no proof that it serves
        _out(
            f"local runner (pid {recorded['pid']}) does not answer at {recorded['socket']}: the "
            "next transcribe or subtitle command runs in its own process and replaces it"
        )
    elif answer is not None and answer.get("state") == "loading":
        _out(
            f"local runner (pid {recorded['pid']}): loading its models (for "
            f"{now - recorded['started_at']:.0f} s); the next transcribe or subtitle command "
            "waits for it"
        )
    elif answer is not None:
        busy = answer.get("state") == "busy"
        _out(f"{_runner_line()}; it answers{', running a command now' if busy else ''}")
    else:
        _out(_runner_line())
    return 0


def _idle_line(found: Any, use: Any, now: float) -> str:
    """How long the local server has been unused, and when it stops."""
    from flows.cli.server import duration

    if found.idle_s <= 0:
        return "it stays up until `voxflow server stop` (started with VOXFLOW_SERVER_IDLE_S=0)"
    if use.holders:
        pids = ", ".join(str(p.pid) for p in use.holders)
        return (
            f"in use by {len(use.holders)} voxflow process(es) (pid {pids}); it stops "
            f"{duration(found.idle_s)} after the last one ends"
        )
    idle = now - max(use.last_used, found.started_at)
    at = time.strftime("%H:%M:%S", time.localtime(now + max(0.0, found.idle_s - idle)))
    return (
        f"idle {duration(idle)}: it stops at {at} unless a command uses it "
        f"(after {duration(found.idle_s)} unused, VOXFLOW_SERVER_IDLE_S)"
    )


def _runner_line() -> str:
    """Where the local runner stands (:mod:`flows.cli.runner`)."""
    found = runner.status()
    if found is None:
        return "no local runner: the next transcribe or subtitle command runs in its own process"
    idle = time.time() - found["last_used"]
    models = ", ".join(found["models"]) or "no models"
    return (
        f"local runner (pid {found['pid']}): {models} loaded, {found['served']} command(s) run, "
        f"idle {idle:.0f} s (it ends after {found['idle_s']:.0f} s idle)"
    )


def check(args: argparse.Namespace) -> int:
    """Lint every file given; the exit status is the worst of them: 2 for a file that could
    not be read (its one line on stderr), 1 for violations, 0 when all keep the rules."""
    from tasks.subtitles.check import check_file, report, summary
    from tasks.subtitles.rules import rule_set

    rules = rule_set(args.rules)
    if args.fps is not None:
        rules = rules.with_options({"fps": args.fps})
    worst, files = 0, []
    for file in args.files:
        try:
            count, violations = check_file(file, rules)
        except BadInput as e:
            sys.stderr.write(f"voxflow: error: {e}\n")
            files.append({"file": file, "error": str(e)})
            worst = max(worst, e.exit_code)
            continue
        worst = max(worst, 1 if violations else 0)
        files.append({"file": file, **summary(count, violations, rules)})
        if not args.json:
            _out(report(file, count, violations, rules))
    if args.json:
        _out(json.dumps({"rules": rules.name, "exit_code": worst, "files": files}, indent=2))
    return worst


def profiles(args: argparse.Namespace) -> int:
    from profiles import STAGES, auto_profile, can_run, list_profiles, load_catalog, load_profile
    from tasks.registry import unavailable_reason

    catalog = load_catalog()
    chosen, why = auto_profile()
    _out(f"auto picks {chosen!r} here" + (f" ({why})" if why else ""))
    _out()
    rows = []
    for name in list_profiles():
        profile = load_profile(name)
        hardware_ok, _ = can_run(profile)
        for stage in STAGES:
            spec = profile.stages.get(stage)
            if spec is None:
                continue
            # Runs here = the hardware is present, the backend implemented, its packages
            # installed; every reason that applies is shown, so one look says what to fix.
            reasons = [] if hardware_ok else [f"needs {profile.hardware}"]
            backend_reason = unavailable_reason(spec)
            if backend_reason:
                reasons.append(backend_reason)
            rows.append(
                {
                    "profile": name,
                    "stage": stage,
                    "on": "yes" if spec.enabled else "no",
                    "backend": spec.backend,
                    "model": spec.model or "-",
                    "hears": _hears(spec, catalog) if stage == "asr" else "-",
                    "runs here": "no: " + "; ".join(reasons) if reasons else "yes",
                }
            )
    _table(rows, ["profile", "stage", "on", "backend", "model", "hears", "runs here"])
    _out()
    _out(
        "Better speech models for a CPU with internet (warmed from the hub once): "
        "faster-whisper-small, or faster-whisper-large-v3-turbo with compute_type int8. "
        "Copy profiles/cpu.yaml to my.yaml, set stages.asr.model to one of them, then run "
        "`voxflow warm --profile my.yaml` and `voxflow transcribe talk.mp4 --profile my.yaml`."
    )
    return 0


def _hears(spec, catalog) -> str:
    """What a profile's speech model hears, and where it detects the language."""
    from tasks.registry import backend_class
    from voxflow.errors import VoxflowError

    languages = catalog[spec.model].languages if spec.model in catalog else ()
    if languages:
        return f"{', '.join(languages)} only"
    try:
        per_window = backend_class("asr", spec.backend).detects_language
    except (VoxflowError, ImportError):
        per_window = False
    return "99 languages, " + ("detected per window" if per_window else "detected once per file")


def models(args: argparse.Namespace) -> int:
    from blocks.volume import Volume
    from profiles import load_catalog

    store = Volume(root=args.store)
    rows = []
    for name, spec in load_catalog().items():
        status = store.status(spec)
        rows.append(
            {
                "model": name,
                "state": status.state,
                "on disk": f"{status.size_bytes / 1e6:.1f} MB" if status.size_bytes else "-",
                "catalog size": f"{spec.size_mb:g} MB",
                "source": spec.source,
            }
        )
    _table(rows, ["model", "state", "on disk", "catalog size", "source"])
    return 0


def cache_report(args: argparse.Namespace) -> int:
    from blocks.volume import Volume
    from blocks.volume.inventory import cache_report
    from profiles import load_profile, resolve_profile

    profile = load_profile(resolve_profile(args.profile)) if args.profile else None
    report = cache_report(Volume(root=args.store), profile)
    columns = ["model", "role", "state", "revision", "size_mb", "files", "warmed", "verified"]
    _table(report.rows(), columns if profile else [c for c in columns if c != "role"])
    _out(report.summary())
    return 0


def cache_prune(args: argparse.Namespace) -> int:
    from blocks.volume import Volume
    from blocks.volume.inventory import prune_plan
    from blocks.volume.prune import execute_prune

    store = Volume(root=args.store)
    plan = prune_plan(store, args.keep_profile)
    for path, size in plan.items:
        _out(f"{'delete' if args.yes else 'would delete'}  {path}  ({size / 1e6:.1f} MB)")
    if not plan.items:
        _out("nothing to prune: every revision and blob on the volume is referenced")
    elif args.yes:
        freed = execute_prune(store, plan)
        _out(f"pruned {len(plan.items)} item(s), {freed / 1e6:.1f} MB freed")
    else:
        _out(
            f"{len(plan.items)} item(s), {plan.total / 1e6:.1f} MB; "
            "run again with --yes to delete them"
        )
    return 0


def _table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    _out("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        _out("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())
