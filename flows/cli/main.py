"""The ``voxflow`` command: warm, verify, transcribe, subtitle, profiles, models.

Exit codes: 0 success, 1 the work failed, 2 bad usage or bad input.
"""

from __future__ import annotations

import argparse
import atexit
import logging
import os
import sys
from collections.abc import Callable, Sequence

from flows.cli import commands, runner, runs
from flows.cli.runs import ServerLost
from voxflow.errors import VoxflowError
from voxflow.settings import QUIET, load_settings, run_environment

log = logging.getLogger("voxflow")

# What the CLI's process runs with: every run's table (voxflow.settings.run_environment), and
# its own. The CLI owns its process, so it may set these before Prefect is imported (library
# modules never touch os.environ).
_CLI_ENV = {
    # The checks before a run (preflight) log to the console; only flow runs log to the API.
    "PREFECT_LOGGING_TO_API_WHEN_MISSING_FLOW": "ignore",
    # Without PREFECT_API_URL each command starts a temporary server, whose first start on a
    # new machine runs the database migrations: on a busy 2-core machine that takes longer
    # than Prefect's 20 s default.
    "PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS": "240",
}

_PROCESS_ENV = {**run_environment(), **_CLI_ENV}
"""What a command that runs flows sets where the user did not (the local runner too)."""

_SERVER_TIMEOUT = "Timed out while attempting to connect to ephemeral Prefect API server"
_FLOW_COMMANDS = ("warm", "transcribe", "subtitle")
"""The commands that run flows, so need a Prefect server."""


def _note(message: str) -> None:
    sys.stderr.write(f"voxflow: {message}\n")


def _parser() -> argparse.ArgumentParser:
    settings = load_settings()
    parser = argparse.ArgumentParser(
        prog="voxflow", description="Media to transcripts and subtitles with open speech models."
    )
    parser.add_argument(
        "--debug",
        action="store_true",
        default=settings.debug,
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
    p.set_defaults(run=commands.warm)

    p = sub.add_parser("verify", help="check the profile's warmed models against their manifests")
    common(p)
    p.add_argument("--deep", action="store_true", help="recompute sha256 of every file")
    p.set_defaults(run=commands.verify)

    from flows.cli.flags import add_flags
    from flows.request import SubtitleRequest, TranscribeRequest

    p = sub.add_parser("transcribe", help="transcribe media files into subtitles")
    add_flags(p, TranscribeRequest)
    p.set_defaults(run=commands.transcribe, profile=settings.profile)

    p = sub.add_parser(
        "subtitle", help="transcribe media files and translate their subtitles into languages"
    )
    add_flags(p, SubtitleRequest)
    p.set_defaults(run=commands.subtitle, profile=settings.profile)

    p = sub.add_parser(
        "server", help="the local Prefect server voxflow's runs use when PREFECT_API_URL is unset"
    )
    p.add_argument("action", choices=("status", "start", "stop"), help="what to do")
    p.add_argument(
        "--all",
        action="store_true",
        help="with stop: every local server and runner you started, in any Prefect home",
    )
    p.set_defaults(run=commands.server)

    p = sub.add_parser(
        "check",
        help="lint subtitle files (SRT, WebVTT, from any tool) against a broadcaster's rules",
    )
    p.add_argument("files", nargs="+", metavar="FILE", help=".srt or .vtt files, each checked")
    p.add_argument(
        "--json", action="store_true", help="print one JSON report of every file, for pipelines"
    )
    _rules_options(p, default="netflix-en")
    p.set_defaults(run=commands.check)

    p = sub.add_parser(
        "profiles",
        help="list profiles: backend and model per stage, and whether this machine can run them",
    )
    p.set_defaults(run=commands.profiles)

    p = sub.add_parser("models", help="list the model catalog: warmed or not, size on disk")
    p.add_argument("--store", default=str(settings.store), help="model volume root")
    p.set_defaults(run=commands.models)
    cache = sub.add_parser("cache", help="inventory and prune the model volume")
    cache_sub = cache.add_subparsers(dest="cache_command", required=True, metavar="ACTION")
    p = cache_sub.add_parser(
        "report", help="per model: size, files, revision, warmed and verified; what is missing"
    )
    p.add_argument(
        "--profile", default=None, help="report this profile's models and what it still lacks"
    )
    p.add_argument("--store", default=str(settings.store), help="model volume root")
    p.set_defaults(run=commands.cache_report)
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
    p.set_defaults(run=commands.cache_prune)
    return parser


def _rules_options(p: argparse.ArgumentParser, default: str | None) -> None:
    from tasks.subtitles.rules import RULE_SETS

    shown = default or "the profile's, else netflix-en"
    p.add_argument(
        "--rules",
        default=default,
        metavar="NAME",
        help=f"subtitle rule set: {', '.join(RULE_SETS)} (default: {shown})",
    )
    p.add_argument(
        "--fps",
        type=float,
        default=None,
        help="frame rate the gap rules count in (default: the rule set's, 24)",
    )


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of the ``voxflow`` console script."""
    environ = dict(os.environ)  # as the user set it, before the defaults below
    try:
        load_settings()  # a bad VOXFLOW_* value is one line, before anything else
    except VoxflowError as e:
        sys.stderr.write(f"voxflow: error: {e}\n")
        return e.exit_code
    if argv is None and runner.enabled():
        code = runner.forward(sys.argv[1:])  # the local runner, when it can run this command
        if code is not None:
            return code
    args = _parser().parse_args(argv)
    if args.command in _FLOW_COMMANDS and argv is None:  # the process is this command's
        atexit.register(_leave_without_teardown)
        runs.when_stuck(_say_and_leave)
    # The warm is the one command that may reach the hub (hf:// sources): it leaves the
    # offline switches as the user set them.
    table = QUIET if args.command == "warm" else run_environment()
    for key, value in {**table, **_CLI_ENV}.items():
        os.environ.setdefault(key, value)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    if args.command in _FLOW_COMMANDS and not load_settings().prefect_api_url:
        # One local server per Prefect home, started once and reused: no throwaway server
        # per command, and local runs stay visible in its UI.
        try:
            from flows.cli import server

            os.environ.update(server.client_environment(server.ensure(_note)[0]))
        except VoxflowError as e:
            sys.stderr.write(f"voxflow: error: {e}\n")
            return e.exit_code
    if not args.debug and args.command in _FLOW_COMMANDS:
        _quiet_prefect_failures()
    run: Callable[[argparse.Namespace], int] = args.run
    try:
        code = run(args)
        sys.stdout.flush()  # inside the try: a reader that left is noticed here
        if argv is None and args.command in runner.SERVED and runner.enabled(environ):
            # For the next command: Prefect imported, these models loaded.
            runner.start(
                environ, args.profile, os.path.abspath(args.store or load_settings().store)
            )
        _LEAVING.append(code)
        return code
    except KeyboardInterrupt:
        sys.stderr.write("voxflow: interrupted; run the same command again to resume\n")
        return 1
    except BrokenPipeError:  # the reader left (`voxflow profiles | head`): nothing to say
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except Exception as e:
        if _interrupted(e) and not isinstance(e, ServerLost):  # Prefect failing on a Ctrl-C
            sys.stderr.write("voxflow: interrupted; run the same command again to resume\n")
            return 1
        if args.debug:
            raise
        sys.stderr.write(f"voxflow: error: {_explain(e)}\n")
        code = e.exit_code if isinstance(e, VoxflowError) else 1
        if isinstance(e, ServerLost) and argv is None:
            _leave_now(code)
        return code


def _interrupted(error: BaseException) -> bool:
    """Whether a failure was raised while a Ctrl-C was being handled: a Ctrl-C that lands
    between two tasks makes Prefect's task engine fail on its way out (``ValueError: Task run
    is not set``), with the KeyboardInterrupt as the context of what it raises."""
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, KeyboardInterrupt):
            return True
        seen.add(id(current))
        current = current.__cause__ or current.__context__
    return False


_LEAVING: list[int] = []
"""The exit code of a flow command that ended normally, for :func:`_leave_without_teardown`."""


def _leave_without_teardown() -> None:
    """After a flow command, end the process once every later exit handler has run, skipping
    the interpreter's teardown of the loaded models (half a second after a short file).

    It is registered before Prefect is imported, so Prefect's exit handlers run first, and
    Prefect drains its log and event workers before any exit handler: nothing a run sends to
    the server is lost.
    """
    if _LEAVING:
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(_LEAVING[-1])


def _say_and_leave(line: str) -> None:
    """A command its lost server left stuck (:func:`flows.cli.runs.when_stuck`): say why, end."""
    sys.stderr.write(f"voxflow: error: {line}\n")
    _leave_now(ServerLost.exit_code)


def _leave_now(code: int) -> None:
    """End the process at once: Prefect's exit handlers would try, for seconds each, to send
    its last events and logs to a server that has ended."""
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


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
    """Drops Prefect's console reports of a failed flow or task run (the CLI says it once), and
    of the hook that records each run (:mod:`flows.cli.runs`: voxflow's, not the run's)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.name.startswith("prefect") and "'_record_running'" in record.getMessage():
            return False
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
            if (
                isinstance(handler, logging.StreamHandler)
                and not isinstance(handler, logging.FileHandler)
                and not any(isinstance(f, _NoFailureEcho) for f in handler.filters)
            ):  # the local runner sets up each of its commands in the same process
                handler.addFilter(echo)


if __name__ == "__main__":
    raise SystemExit(main())
