"""The ``voxflow`` command: warm, verify, transcribe, subtitle, profiles, models.

Exit codes: 0 success, 1 the work failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from typing import Any

from voxflow.errors import BadInput, VoxflowError
from voxflow.settings import load_settings

log = logging.getLogger("voxflow")

# Our modules log through the standard library; Prefect forwards these loggers to the console
# and to the run's log in the UI. The CLI owns its process, so it may set this before Prefect
# is imported (library modules never touch os.environ).
_PROCESS_ENV = {
    "PREFECT_LOGGING_EXTRA_LOGGERS": "tasks,blocks,profiles,flows",
    "HF_HUB_OFFLINE": "1",
    "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    "DO_NOT_TRACK": "1",
    "PYANNOTE_METRICS_ENABLED": "0",  # pyannote's usage telemetry would call otel.pyannote.ai
    # Without PREFECT_API_URL each command starts a temporary server, whose first start on a
    # new machine runs the database migrations: on a busy 2-core machine that takes longer
    # than Prefect's 20 s default.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
}

_SERVER_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"


def _parser() -> argparse.ArgumentParser:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="voxflow", description="Media to transcripts and subtitles with open speech models."
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=os.environ.get("VOXFLOW_DEBUG", "") not in ("", "0"),
        help="show tracebacks and Prefect's own failure reports (also VOXFLOW_DEBUG=1)",
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def common(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--profile",
            default=settings.profile,
            help="hardware profile: cpu, cuda, mlx, openvino, a .yaml path, or auto "
            "(default: $VOXFLOW_PROFILE or auto)",
        )
        p.add_argument(
            "--store",
            default=str(settings.store),
            help="model volume root (default: $VOXFLOW_STORE or ./models)",
        )

    p = sub.add_parser(
        "warm", help="fetch the profile's models into the volume and load-check them offline"
    )
    common(p)
    p.add_argument("--no-load-check", action="store_true", help="skip the offline load checks")
    p.add_argument(
        "--force",
        action="store_true",
        help="copy every file again, even where sizes match (repairs corruption)",
    )
    p.add_argument(
        "--with",
        dest="with_stages",
        default="",
        metavar="STAGES",
        help="comma-separated stages the profile leaves off to warm too, e.g. diarize",
    )
    p.add_argument(
        "--mirror",
        dest="mirrors",
        action="append",
        default=[],
        metavar="URL",
        help="a folder (file://, s3://, any fsspec URL) holding <repo_id>/<file> to copy from "
        "before each model's source; repeat to try several in order",
    )
    p.set_defaults(run=_warm)

    p = sub.add_parser("verify", help="check the profile's warmed models against their manifests")
    common(p)
    p.add_argument("--deep", action="store_true", help="recompute sha256 of every file")
    p.set_defaults(run=_verify)

    p = sub.add_parser("transcribe", help="transcribe media files into subtitles")
    p.add_argument("media", nargs="+", help="audio or video files")
    common(p)
    p.add_argument(
        "--language",
        default=None,
        help="spoken language: a code (fr, fra) or a name (French); detected when omitted",
    )
    p.add_argument(
        "--format",
        default="srt,vtt,json,txt",
        help="comma-separated output formats (default: srt,vtt,json,txt)",
    )
    _run_options(p, str(settings.output))
    p.set_defaults(run=_transcribe)

    p = sub.add_parser(
        "subtitle", help="transcribe media files and translate their subtitles into languages"
    )
    p.add_argument("media", nargs="+", help="audio or video files")
    p.add_argument(
        "--to",
        required=True,
        metavar="LANGS",
        help="comma-separated target languages: ISO 639-1 (fr), 639-3 (fra) or NLLB (fra_Latn)",
    )
    p.add_argument(
        "--from",
        dest="source",
        default=None,
        metavar="LANG",
        help="spoken language; detected when omitted",
    )
    common(p)
    p.add_argument(
        "--format",
        default="srt,vtt,json",
        help="comma-separated output formats (default: srt,vtt,json)",
    )
    _run_options(p, str(settings.output))
    p.set_defaults(run=_subtitle)

    p = sub.add_parser(
        "profiles",
        help="list profiles: backend and model per stage, and whether this machine can run them",
    )
    p.set_defaults(run=_profiles)

    p = sub.add_parser("models", help="list the model catalog: warmed or not, size on disk")
    p.add_argument("--store", default=str(settings.store), help="model volume root")
    p.set_defaults(run=_models)
    cache = sub.add_parser("cache", help="inventory and prune the model volume")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    p = cache_sub.add_parser(
        "report", help="per model: size, files, revision, warmed and verified; what is missing"
    )
    p.add_argument(
        "--profile", default=None, help="report this profile's models and what it still lacks"
    )
    p.add_argument("--store", default=str(settings.store), help="model volume root")
    p.set_defaults(run=_cache_report)
    p = cache_sub.add_parser("prune", help="delete revisions and blobs no profile references")
    p.add_argument("--store", default=str(settings.store), help="model volume root")
    p.add_argument(
        "--keep-profile",
        action="append",
        default=[],
        metavar="P",
        help="also keep the models of this profile (a .yaml path); repeatable",
    )
    p.add_argument("--yes", action="store_true", help="delete (without it, only list)")
    p.set_defaults(run=_cache_prune)
    return parser


def _run_options(p: argparse.ArgumentParser, output: str) -> None:
    """Flags `transcribe` and `subtitle` share: output, audio stream, speakers, separation."""
    p.add_argument(
        "--output",
        default=output,
        help="output folder (default: $VOXFLOW_OUTPUT or ./output)",
    )
    p.add_argument(
        "--audio-stream",
        type=int,
        default=None,
        help="audio stream to use, counting from 0 (default: the first)",
    )
    diarize = p.add_mutually_exclusive_group()
    diarize.add_argument(
        "--diarize",
        action="store_true",
        default=None,
        help="label speakers (default: as the profile says; on with a speaker count)",
    )
    diarize.add_argument(
        "--no-diarize", dest="diarize", action="store_false", help="do not label speakers"
    )
    p.add_argument(
        "--speakers", type=int, default=None, metavar="N", help="exact number of speakers"
    )
    p.add_argument(
        "--min-speakers", type=int, default=None, metavar="A", help="at least A speakers"
    )
    p.add_argument("--max-speakers", type=int, default=None, metavar="B", help="at most B speakers")
    separate = p.add_mutually_exclusive_group()
    separate.add_argument(
        "--separate",
        action="store_true",
        default=None,
        help="isolate the voice (Demucs vocals stem) before VAD and ASR "
        "(default: as the profile says: on for cuda and mlx, off on cpu)",
    )
    separate.add_argument(
        "--no-separate", dest="separate", action="store_false", help="transcribe the mix as is"
    )


def _out(line: str = "") -> None:
    sys.stdout.write(line + "\n")


def _warm(args: argparse.Namespace) -> int:
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


def _verify(args: argparse.Namespace) -> int:
    from blocks.model_store import ModelStore
    from profiles import load_catalog, load_profile, resolve_profile

    profile = load_profile(resolve_profile(args.profile))
    catalog = load_catalog()
    store = ModelStore(root=args.store)
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


def _transcribe(args: argparse.Namespace) -> int:
    from flows.transcribe import run_profile, transcribe
    from profiles import resolve_profile
    from tasks.asr import speech_language
    from tasks.diarize import SpeakerCount
    from tasks.subtitles import parse_formats

    # Cheap checks first, so bad input and a cold volume fail before a Prefect server starts.
    formats = list(parse_formats(args.format))
    speech_language(args.language)
    name = resolve_profile(args.profile)  # 'auto' is decided once, here
    count = SpeakerCount(args.speakers, args.min_speakers, args.max_speakers)
    _check_before_running(args, run_profile(name, args.diarize, count, args.separate))

    def report(media: str, record: dict) -> None:
        _out(
            f"{media}: {record['audio_seconds']:.1f} s of audio, real-time factor "
            f"{record['real_time_factor']}"
        )
        for fmt, path in record["outputs"].items():
            _out(f"  {fmt:5} {path}")

    return _each_media(
        args.media,
        lambda media: transcribe(
            media=media, profile=name, language=args.language, formats=formats, **_run_kwargs(args)
        ),
        report,
    )


def _subtitle(args: argparse.Namespace) -> int:
    from flows.subtitle import subtitle
    from flows.transcribe import run_profile
    from profiles import resolve_profile
    from tasks.diarize import SpeakerCount
    from tasks.subtitles import parse_formats
    from tasks.translate.languages import lookup

    # Cheap checks first, so bad input and a cold volume fail before a Prefect server starts.
    targets = [lookup(code).code for code in args.to.split(",") if code.strip()]
    source = lookup(args.source).code if args.source else None
    formats = list(parse_formats(args.format))
    if not targets:
        raise BadInput("--to names no language; e.g. --to fr,de")
    profile = resolve_profile(args.profile)  # 'auto' is decided once, here
    count = SpeakerCount(args.speakers, args.min_speakers, args.max_speakers)
    chosen = run_profile(profile, args.diarize, count, args.separate).with_stages("translate")
    _check_before_running(args, chosen)

    def report(media: str, record: dict) -> None:
        _out(f"{media}: {record['audio_seconds']:.1f} s of audio")
        for fmt, path in record["outputs"].items():
            _out(f"  {fmt:5} {path}")
        for language, paths in record["translations"].items():
            for fmt, path in paths.items():
                _out(f"  {language:>3} {fmt:5} {path}")

    return _each_media(
        args.media,
        lambda media: subtitle(
            media=media,
            target_languages=targets,
            source_language=source,
            profile=profile,
            formats=formats,
            **_run_kwargs(args),
        ),
        report,
    )


def _check_before_running(args: argparse.Namespace, profile: Any) -> None:
    """Every media path, the profile's hardware and its warmed models, before any flow runs."""
    from blocks.model_store import ModelStore
    from tasks.extract import check_media_path
    from tasks.preflight import preflight

    for media in args.media:
        check_media_path(media)
    preflight(profile, ModelStore(root=args.store))


def _run_kwargs(args: argparse.Namespace) -> dict[str, Any]:
    """Flow parameters `transcribe` and `subtitle` share, from the shared flags."""
    return {
        "output_dir": args.output,
        "store": args.store,
        "audio_stream": args.audio_stream,
        "diarize": args.diarize,
        "speakers": args.speakers,
        "min_speakers": args.min_speakers,
        "max_speakers": args.max_speakers,
        "separate": args.separate,
    }


def _each_media(
    media: list[str],
    run_one: Callable[[str], dict[str, Any]],
    report: Callable[[str, dict[str, Any]], None],
) -> int:
    """Run one flow per file; with several files a failure is reported and the rest go on."""
    failed = 0
    for item in media:
        try:
            record = run_one(item)
        except VoxflowError as e:
            if len(media) == 1:
                raise
            failed += 1
            _out(f"FAILED  {item}: {e}")
            continue
        report(item, record)
    return 1 if failed else 0


def _profiles(args: argparse.Namespace) -> int:
    from profiles import STAGES, auto_profile, can_run, list_profiles, load_profile
    from tasks.registry import unavailable_reason

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
                    "runs here": "no: " + "; ".join(reasons) if reasons else "yes",
                }
            )
    _table(rows, ["profile", "stage", "on", "backend", "model", "runs here"])
    return 0


def _models(args: argparse.Namespace) -> int:
    from blocks.model_store import ModelStore
    from profiles import load_catalog

    store = ModelStore(root=args.store)
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


def _cache_report(args: argparse.Namespace) -> int:
    from blocks.model_store import ModelStore
    from profiles import load_profile, resolve_profile
    from tasks.inventory import cache_report

    profile = load_profile(resolve_profile(args.profile)) if args.profile else None
    report = cache_report(ModelStore(root=args.store), profile)
    columns = ["model", "role", "state", "revision", "size_mb", "files", "warmed", "verified"]
    _table(report.rows(), columns if profile else [c for c in columns if c != "role"])
    _out(report.summary())
    return 0


def _cache_prune(args: argparse.Namespace) -> int:
    from blocks.model_store import ModelStore
    from blocks.prune import execute_prune
    from tasks.inventory import prune_plan

    store = ModelStore(root=args.store)
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


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxflow`` console script."""
    args = _parser().parse_args(argv)
    for key, value in _PROCESS_ENV.items():
        # The warm is the one command that may reach the hub (hf:// sources).
        if not (key == "HF_HUB_OFFLINE" and args.command == "warm"):
            os.environ.setdefault(key, value)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if not args.debug and args.command in ("warm", "transcribe", "subtitle"):
        _quiet_prefect_failures()
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        code = run(args)
        sys.stdout.flush()  # inside the try: a reader that left is noticed here
        return code
    except KeyboardInterrupt:
        sys.stderr.write("voxflow: interrupted; run the same command again to resume\n")
        return 1
    except BrokenPipeError:  # the reader left (`voxflow profiles | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if args.debug:
            raise
        sys.stderr.write(f"voxflow: error: {_explain(e)}\n")
        return e.exit_code if isinstance(e, VoxflowError) else 1


def _explain(error: Exception) -> str:
    """One line for a failure: ours say what to run; others name their type and --debug."""
    if isinstance(error, VoxflowError):
        return str(error)
    if _SERVER_TIMEOUT in str(error):
        wait = os.environ.get("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", "20")
        return (
            f"the temporary Prefect server did not start within {wait} s (the machine is busy, "
            "or this is its first start); run the command again, raise "
            "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS, or start a server with "
            "`prefect server start --background` and set PREFECT_API_URL"
        )
    return f"{type(error).__name__}: {error} (run again with --debug for the traceback)"


class _NoFailureEcho(logging.Filter):
    """Drops Prefect's console reports of a failed flow or task run: the CLI says it once."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not record.name.startswith(("prefect.flow_runs", "prefect.task_runs")):
            return True
        if record.levelno >= logging.ERROR:
            return False
        message = record.getMessage()
        return not message.startswith("Finished in state") or "Completed" in message


def _quiet_prefect_failures() -> None:
    """Keep Prefect's failure reports in the run's log (the UI) but off the console."""
    from prefect.logging.configuration import setup_logging  # noqa: F401  (configures handlers)

    echo = _NoFailureEcho()
    for name in ("prefect", "prefect.flow_runs", "prefect.task_runs", ""):
        for handler in logging.getLogger(name).handlers:
            if isinstance(handler, logging.StreamHandler) and not isinstance(
                handler, logging.FileHandler
            ):
                handler.addFilter(echo)


if __name__ == "__main__":
    raise SystemExit(main())
