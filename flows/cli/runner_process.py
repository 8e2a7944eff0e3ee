"""The local runner's own process (see :mod:`flows.cli.runner`): it imports Prefect and voxflow's
flows once, loads the models the command that started it used, then runs one command at a time
for the commands that connect to its socket.

This module owns its process, like the CLI: it swaps ``os.environ``, the working folder, the
umask and ``sys.stdout``/``sys.stderr`` for each command it runs, so the command sees what it
would have seen in its own process (and its files get the caller's modes), and it runs only one
at a time.
"""

from __future__ import annotations

import _thread
import argparse
import fcntl
import importlib
import io
import json
import logging
import os
import queue
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from typing import BinaryIO

from flows.cli import processes, runner, runs, server
from flows.cli.processes import ProcessId
from voxflow.atomic import write_json

log = logging.getLogger("voxflow.runner")

_LOOK_S = 5.0
"""How often an idle runner looks whether its local server is still the recorded one."""


class _Stream(io.TextIOBase):
    """``sys.stdout`` or ``sys.stderr`` of the runner: while a command runs, what is written goes
    to its caller as frames; between commands, to the runner's log."""

    def __init__(self, kind: int, fallback: io.TextIOBase) -> None:
        self.kind, self.fallback = kind, fallback

    @property
    def encoding(self) -> str:
        return "utf-8"

    def write(self, text: str) -> int:
        if not _CALLER.send(self.kind, text.encode("utf-8", "replace")):
            self.fallback.write(text)
        return len(text)

    def flush(self) -> None:
        self.fallback.flush()

    def isatty(self) -> bool:
        return _CALLER.tty[self.kind - 1] if _CALLER.conn else False

    def writable(self) -> bool:
        return True


class _Caller:
    """The command being run: its connection, whether its streams are terminals."""

    def __init__(self) -> None:
        self.conn: socket.socket | None = None
        self.tty = [False, False]
        self.running = False
        self._lock = threading.Lock()

    def send(self, kind: int, data: bytes) -> bool:
        """Send a frame; False when no command is connected (a caller that left is not an
        error: its command is being interrupted)."""
        with self._lock:
            if self.conn is None:
                return False
            try:
                self.conn.sendall(struct.pack("!BI", kind, len(data)) + data)
            except OSError:
                pass
            return True

    def attach(self, conn: socket.socket, tty: list[bool]) -> None:
        with self._lock:
            self.conn, self.tty, self.running = conn, [bool(t) for t in tty], True

    def detach(self, code: int) -> None:
        with self._lock:
            self.running = False
        self.send(runner._EXIT, str(code).encode())
        with self._lock:
            self.conn = None

    def interrupt(self) -> None:
        """Ctrl-C in the caller, or the caller gone: interrupt the command, as SIGINT would."""
        with self._lock:
            if self.running:
                _thread.interrupt_main()


_CALLER = _Caller()


class Runner:
    """The socket, the queue of accepted commands, and whether it is busy or leaving."""

    def __init__(self, key: str, api: str, bound: list, idle_s: float) -> None:
        self.key, self.api, self.local_server, self.idle_s = key, api, bound, idle_s
        self.me = ProcessId.me()
        self.path = runner._socket_path()
        self.commands: queue.Queue = queue.Queue()
        self.busy = self.leaving = False
        self.served = 0
        self.models: list[str] = []
        self.started_at = time.time()
        self._lock = threading.Lock()

    def listen(self) -> None:
        if os.path.exists(self.path):
            os.unlink(self.path)  # a runner before this one that did not clean up
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        os.chmod(self.path, 0o600)
        self.server.listen(8)
        threading.Thread(target=self._accept, name="runner-accept", daemon=True).start()
        self.record()
        processes.register("runner", self.me, runner.home())

    def record(self, last_used: float | None = None) -> None:
        write_json(
            runner._state(),
            {
                "pid": self.me.pid,
                "start": self.me.start,  # with the pid, what tells this process from others
                "key": self.key,
                "api": self.api,
                "server": self.local_server,
                "socket": self.path,
                "started_at": self.started_at,
                "last_used": last_used or self.started_at,
                "served": self.served,
                "models": self.models,
                "idle_s": self.idle_s,
            },
        )

    def _accept(self) -> None:
        while True:
            conn, _ = self.server.accept()
            reader = conn.makefile("rb")
            try:
                request = json.loads(reader.readline())
            except (OSError, ValueError):
                conn.close()
                continue
            with self._lock:
                refuse = self.busy or self.leaving or request.get("key") not in (None, self.key)
                self.busy = self.busy or not refuse
            try:
                conn.sendall(json.dumps({"ok": not refuse, "pid": os.getpid()}).encode() + b"\n")
            except OSError:
                refuse = True
                with self._lock:
                    self.busy = False
            if refuse:
                conn.close()
                continue
            self.commands.put((conn, reader, request))

    def serve_forever(self) -> None:
        last = time.monotonic()
        while not self.leaving:
            try:
                conn, reader, request = self.commands.get(timeout=min(self.idle_s, _LOOK_S))
            except queue.Empty:
                if runner._server() != self.local_server:
                    log.info("its local server ended or was replaced: leaving")
                    break
                if time.monotonic() - last >= self.idle_s:
                    log.info("no command for %.0f s: leaving", self.idle_s)
                    break
                continue
            self.run(conn, reader, request)
            with self._lock:
                self.busy = False
            last = time.monotonic()
        self.leave()

    def run(self, conn: socket.socket, reader: BinaryIO, request: dict) -> None:
        """Run one command as its own process would, in its folder and environment."""
        from flows.cli import main as cli
        from voxflow.memory import give_back_freed

        environ, folder = dict(os.environ), os.getcwd()
        started = time.perf_counter()
        code = 1
        _CALLER.attach(conn, request.get("tty", [False, False]))
        threading.Thread(target=_watch, args=(reader,), daemon=True).start()
        umask = os.umask(_caller_umask(request))
        try:
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            code = cli.main(request["argv"])
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except KeyboardInterrupt:
            sys.stderr.write("voxflow: interrupted; run the same command again to resume\n")
        except BaseException:  # noqa: BLE001 - the command's failure is the caller's to see
            sys.stderr.write(traceback.format_exc())
        finally:
            try:
                _CALLER.detach(code)
            except KeyboardInterrupt:  # a Ctrl-C that came as the command ended
                _CALLER.detach(code)
            conn.close()
            os.umask(umask)
            os.environ.clear()
            os.environ.update(environ)
            os.chdir(folder)
            server.release()  # the command held the server (its idle time counts from now)
            give_back_freed()
        self.served += 1
        self.record(last_used=time.time())
        argv = request["argv"]
        log.info("ran `voxflow %s` (exit %s) in %.2f s", " ".join(argv), code,
                 time.perf_counter() - started)  # fmt: skip

    def stop_soon(self, *_: object) -> None:
        """SIGTERM: leave now when idle, else once the command being run ends."""
        with self._lock:
            self.leaving = True
            idle = not self.busy
        if idle:
            self.leave()

    def leave(self) -> None:
        try:
            state = json.loads(runner._state().read_text())
            if state.get("pid") == self.me.pid and state.get("start") == self.me.start:
                runner._state().unlink(missing_ok=True)
                os.unlink(self.path)
        except (OSError, ValueError):
            pass
        try:
            processes.unregister("runner", self.me)
        except OSError:
            pass
        log.info("runner %d ends after %d command(s)", os.getpid(), self.served)
        logging.shutdown()
        os._exit(0)  # no teardown of the loaded models


def _caller_umask(request: dict) -> int:
    """The umask the caller runs under (0o077, the strictest that writes what it must, when the
    request does not say or says nonsense): the command's outputs get it, as they would in the
    caller's own process."""
    umask = request.get("umask")
    if isinstance(umask, int) and not isinstance(umask, bool) and 0 <= umask <= 0o777:
        return umask
    return 0o077


def _end_for_caller(line: str) -> None:
    """A command its lost server left stuck in a model's native code (:mod:`flows.cli.runs`):
    end it for its caller; the runner leaves once it unwinds, its server being gone."""
    sys.stderr.write(f"voxflow: error: {line}\n")
    _CALLER.detach(1)


def _watch(reader: BinaryIO) -> None:
    """Interrupt the command on the caller's Ctrl-C, or when the caller is gone."""
    try:
        while True:
            byte = reader.read(1)
            if byte in (runner._INTERRUPT, b""):
                break
    except OSError:
        pass
    _CALLER.interrupt()


_WARM_IMPORTS = (
    "flows.transcribe",  # Prefect, the flows and their stages
    "flows.subtitle",
    "flows.cli.server",  # the command's check of the local server
    # What the first flow run in a process imports (a second, otherwise, on the first
    # command): Prefect's engines; FastAPI's encoder, for the run's parameters; PyAV's
    # subtitle streams, on the first container opened; tqdm's lock, in faster-whisper.
    "prefect.flow_engine",
    "prefect.task_engine",
    "prefect.utilities.visualization",
    "fastapi.encoders",
    "av.subtitles.stream",
    "multiprocessing.synchronize",
    "numpy.ma",
)


def preload(profile: str, store: str) -> list[str]:
    """Load the models of a profile's stages from the volume and run each once on a second of
    test audio (a first inference sets up what later ones reuse); what was loaded."""
    from blocks.volume import Volume
    from profiles import load_profile, resolve_profile
    from tasks.registry import POOL
    from tasks.warm.preflight import preflight

    chosen = load_profile(resolve_profile(profile))
    for stage, found in preflight(chosen, Volume(root=store)).items():
        found.load(chosen.stages[stage]).self_check()
    return list(POOL.loads)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m flows.cli.runner_process")
    parser.add_argument("--key", required=True)
    parser.add_argument("--profile")
    parser.add_argument("--store")
    options = parser.parse_args(argv)
    os.umask(0o077)  # its own files (record, socket, lock) are the user's alone
    # Before Prefect is imported (its console handler keeps the stream it finds) and before the
    # log handler: what a command logs goes to its caller, the runner's own lines to its log.
    sys.stdout = _Stream(runner._OUT, sys.stdout)
    sys.stderr = _Stream(runner._ERR, sys.stderr)
    logging.basicConfig(
        level=logging.INFO, format="%(asctime)s %(name)s: %(message)s", datefmt="%H:%M:%S"
    )
    logging.getLogger("httpx").setLevel(logging.WARNING)
    runner.home().mkdir(parents=True, exist_ok=True)
    lock = open(runner.home() / "voxflow-runner.lock", "w")  # noqa: SIM115 - held for life
    deadline = time.monotonic() + 60  # a runner it replaces ends its command first
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                log.info("another runner holds %s: leaving", lock.name)
                return 0
            time.sleep(0.2)

    bound, client = runner._server(), runner._server_environment()
    if bound is None or client is None:
        log.info("no local server runs for %s: leaving", runner.home())
        return 0
    api = client["PREFECT_API_URL"]
    from flows.cli import main as cli

    for key, value in cli._PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.update(client)  # before Prefect is imported: its settings are read once
    started = time.perf_counter()
    for name in _WARM_IMPORTS:
        importlib.import_module(name)

    idle_s = float(os.environ.get("VOXFLOW_RUNNER_IDLE_S") or runner.IDLE_S)
    serving = Runner(options.key, api, bound, idle_s)
    signal.signal(signal.SIGTERM, serving.stop_soon)
    runs.when_stuck(_end_for_caller)
    if options.profile and options.store:
        try:
            serving.models = preload(options.profile, options.store)
        except Exception as e:  # noqa: BLE001 - a command loads them itself, and says why
            log.info("models not loaded ahead (%s: %s)", type(e).__name__, e)
    serving.listen()
    log.info("runner %d ready in %.1f s for %s: %s", os.getpid(), time.perf_counter() - started,
             runner.home(), ", ".join(serving.models) or "no models loaded")  # fmt: skip
    serving.serve_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
