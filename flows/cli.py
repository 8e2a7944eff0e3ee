"""The ``voxflow`` command: warm, verify, transcribe, profiles, models.

Exit codes: 0 success, 1 the work failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence

from voxflow.errors import VoxflowError
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
}


def _parser() -> argparse.ArgumentParser:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="voxflow", description="Media to transcripts and subtitles with open speech models."
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
    p.set_defaults(run=_warm)

    p = sub.add_parser("verify", help="check the profile's warmed models against their manifests")
    common(p)
    p.add_argument("--deep", action="store_true", help="recompute sha256 of every file")
    p.set_defaults(run=_verify)

    p = sub.add_parser("transcribe", help="transcribe media files into subtitles")
    p.add_argument("media", nargs="+", help="audio or video files")
    common(p)
    p.add_argument(
        "--language", default=None, help="spoken language (ISO 639-1); detected when omitted"
    )
    p.add_argument(
        "--format",
        default="srt,vtt,json,txt",
        help="comma-separated output formats (default: srt,vtt,json,txt)",
    )
    p.add_argument(
        "--output",
        default=str(settings.output),
        help="output folder (default: $VOXFLOW_OUTPUT or ./output)",
    )
    p.add_argument(
        "--audio-stream",
        type=int,
        default=None,
        help="audio stream to use, counting from 0 (default: the first)",
    )
    p.set_defaults(run=_transcribe)

    p = sub.add_parser(
        "profiles",
        help="list profiles: backend and model per stage, and whether this machine can run them",
    )
    p.set_defaults(run=_profiles)

    p = sub.add_parser("models", help="list the model catalog: warmed or not, size on disk")
    p.add_argument("--store", default=str(settings.store), help="model volume root")
    p.set_defaults(run=_models)
    return parser


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
            f"{bad} model(s) failed verification; run `voxflow warm --force --profile "
            f"{profile.name} --store {args.store}` to repair"
        )
        return 1
    return 0


def _transcribe(args: argparse.Namespace) -> int:
    from flows.transcribe import transcribe
    from profiles import load_profile, resolve_profile
    from tasks.media import check_media_path
    from tasks.subtitles import parse_formats

    # Cheap checks first, so bad input fails before a Prefect server starts.
    for media in args.media:
        check_media_path(media)
    profile = load_profile(resolve_profile(args.profile))
    formats = list(parse_formats(args.format))
    failed = 0
    for media in args.media:
        try:
            record = transcribe(
                media=media,
                profile=profile.name if not args.profile.endswith(".yaml") else args.profile,
                language=args.language,
                formats=formats,
                output_dir=args.output,
                store=args.store,
                audio_stream=args.audio_stream,
            )
        except VoxflowError as e:
            if len(args.media) == 1:
                raise
            failed += 1
            _out(f"FAILED  {media}: {e}")
            continue
        _out(
            f"{media}: {record['audio_seconds']:.1f} s of audio, real-time factor "
            f"{record['real_time_factor']}"
        )
        for fmt, path in record["outputs"].items():
            _out(f"  {fmt:5} {path}")
    return 1 if failed else 0


def _profiles(args: argparse.Namespace) -> int:
    from profiles import STAGES, can_run, list_profiles, load_profile

    rows = []
    for name in list_profiles():
        profile = load_profile(name)
        ok, reason = can_run(profile)
        for stage in STAGES:
            spec = profile.stages.get(stage)
            if spec is None:
                continue
            rows.append(
                {
                    "profile": name,
                    "stage": stage,
                    "on": "yes" if spec.enabled else "no",
                    "backend": spec.backend,
                    "model": spec.model or "-",
                    "runs here": "yes" if ok else f"no: {reason}",
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


def _table(rows: list[dict], columns: list[str]) -> None:
    widths = {c: max([len(c), *(len(str(r.get(c, ""))) for r in rows)]) for c in columns}
    _out("  ".join(c.ljust(widths[c]) for c in columns).rstrip())
    for r in rows:
        _out("  ".join(str(r.get(c, "")).ljust(widths[c]) for c in columns).rstrip())


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxflow`` console script."""
    for key, value in _PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    args = _parser().parse_args(argv)
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        return run(args)
    except VoxflowError as e:
        sys.stderr.write(f"voxflow: error: {e}\n")
        return e.exit_code
    except KeyboardInterrupt:
        sys.stderr.write("voxflow: interrupted; run the same command again to resume\n")
        return 1


if __name__ == "__main__":
    raise SystemExit(main())
