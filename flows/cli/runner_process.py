"""The local runner's own process (see :mod:`flows.cli.runner`): it listens at its socket at
once (its door, :mod:`flows.cli.runner_door`, answers from then on), imports Prefect and
voxflow's flows once, loads the models the command that started it used, then runs one command
at a time for the commands that connect to its socket; those that came while it loaded waited.

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
from flows.cli import runner_wire as wire
from flows.cli.processes import ProcessId
from flows.cli.runner_door import Door, refuse
from voxflow.atomic import write_json
from voxflow.settings import load_settings

log = logging.getLogger("voxflow.runner")

_LOOK_S = 1.0
"""How often the runner looks whether its local server is still the one it was started against,
and an idle one whether it has been idle long enough to leave."""


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
    """The socket and its door (:class:`~flows.cli.runner_door.Door`), the queue of the
    commands taken, and whether it is loading, busy or leaving."""

    def __init__(self, key: str, api: str, bound: list, idle_s: float) -> None:
        self.key, self.api, self.local_server, self.idle_s = key, api, bound, idle_s
        self.me = ProcessId.me()
        self.path = runner._socket_path()
        self.commands: queue.Queue = queue.Queue()
        self.busy = self.leaving = False
        self.loaded = threading.Event()  # set once the models are loaded (or failed to)
        self.served = 0
        self.models: list[str] = []
        self.started_at = time.time()
        self._lock = threading.Lock()

    def listen(self) -> None:
        """Listen at the socket (mode 0600: the process's umask), record this runner, and take
        connections from now on, also while the models load."""
        if os.path.lexists(self.path):
            os.unlink(self.path)  # a runner before this one that did not clean up
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(self.path)
        os.chmod(self.path, 0o600)
        self.server.listen(16)
        self.record()
        processes.register("runner", self.me, runner.home())
        door = Door(self.server, self.key, self.standing, self.take)
        threading.Thread(target=door.accept_forever, name="runner-door", daemon=True).start()
        threading.Thread(target=self._watch_server, name="runner-server", daemon=True).start()

    def ready(self, models: list[str]) -> None:
        """The models are loaded: commands that wait for them are taken."""
        self.models = models
        self.record()
        self.loaded.set()

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

    def standing(self) -> dict:
        """What a ping is told: its pid, whether it is loading, ready, busy or leaving, and how
        many commands it ran."""
        with self._lock:
            state = "leaving" if self.leaving else "busy" if self.busy else None
        if state is None:
            state = "ready" if self.loaded.is_set() else "loading"
        return {"pid": self.me.pid, "state": state, "served": self.served}

    def take(self, conn: socket.socket, request: dict) -> None:
        """Queue the command when this runner is free, once its models are loaded (else say
        why not and close the connection)."""
        if not self.loaded.is_set():
            log.info("a command waits for the models to load")
            wire.answer(conn, {"ok": None, "state": "loading"})
            if not self.loaded.wait(wire.LOAD_WAIT_S):
                refuse(conn, f"still loading its models after {wire.LOAD_WAIT_S:.0f} s")
                return
        with self._lock:
            why = "leaving" if self.leaving else "busy" if self.busy else None
            if why is None:
                self.busy = True
        if why is not None:
            refuse(conn, why)
            return
        try:
            conn.settimeout(None)
            wire.answer(conn, {"ok": True, "pid": self.me.pid})
        except OSError:  # the caller left meanwhile
            with self._lock:
                self.busy = False
            conn.close()
            return
        self.commands.put((conn, request))

    def _watch_server(self) -> None:
        """Leave once the local server this runner was started against (by its process
        identity) is gone or replaced: its commands would fail, the next command's own process
        starts a runner against the new one."""
        while runner._server() == self.local_server:
            time.sleep(_LOOK_S)
        log.info("its local server (pid %s) ended or was replaced: leaving", self.local_server[0])
        self.stop_soon()

    def serve_forever(self) -> None:
        last = time.monotonic()
        while True:
            try:
                conn, request = self.commands.get(timeout=min(self.idle_s, _LOOK_S))
            except queue.Empty:
                if self._done(time.monotonic() - last):
                    break
                continue
            try:
                self.run(conn, request)
            except (Exception, KeyboardInterrupt):  # the runner outlives a command's setup failing
                log.exception("a command failed outside itself")
            with self._lock:
                self.busy = False
                if self.leaving:
                    break
            last = time.monotonic()
        self.leave()

    def _done(self, idle: float) -> bool:
        """Whether to leave now (asked to, or idle for ``idle_s``), when no command is taken."""
        with self._lock:
            if self.busy:
                return False
            if not self.leaving and idle >= self.idle_s:
                log.info("no command for %.0f s: leaving", self.idle_s)
                self.leaving = True
            return self.leaving

    def run(self, conn: socket.socket, request: dict) -> None:
        """Run one command as its own process would, in its folder and environment."""
        from flows.cli import main as cli
        from voxflow.memory import give_back_freed

        environ, folder = dict(os.environ), os.getcwd()
        started = time.perf_counter()
        code = 1
        umask = os.umask(request["umask"])
        try:  # from the first moment the caller can interrupt the command
            _CALLER.attach(conn, request["tty"])
            threading.Thread(target=_watch, args=(conn.makefile("rb"),), daemon=True).start()
            os.chdir(request["cwd"])
            os.environ.clear()
            os.environ.update(request["env"])
            code = cli.main(request["argv"])
        except SystemExit as e:  # argparse's usage errors
            code = e.code if isinstance(e.code, int) else (0 if e.code is None else 2)
        except KeyboardInterrupt:
            sys.stderr.write(runner.INTERRUPTED)
        except BaseException:  # noqa: BLE001 - the command's failure is the caller's to see
            sys.stderr.write(traceback.format_exc())
        finally:
            signal.signal(signal.SIGINT, _interrupt_command)  # in case the command replaced it
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

    def stop_soon(self) -> None:
        """Leave now when idle, else once the command being run ends."""
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
        except (OSError, ValueError):  # another runner's record, or none: not this one's to touch
            pass
        try:
            processes.unregister("runner", self.me)
        except OSError:
            pass
        log.info("runner %d ends after %d command(s)", os.getpid(), self.served)
        logging.shutdown()
        os._exit(0)  # no teardown of the loaded models


def _interrupt_command(signum: int, frame: object) -> None:
    """SIGINT (the caller's Ctrl-C, :meth:`_Caller.interrupt`): KeyboardInterrupt in the command,
    only while one runs (one that came as the command ended is dropped: the runner lives on)."""
    if _CALLER.running:
        raise KeyboardInterrupt


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
    parser.add_argument("--listening-fd", type=int, help="closed once it listens, or leaves")
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
    if not _lock_the_home(options.listening_fd):
        return 0
    bound, client = runner._server(), runner._server_environment()
    if bound is None or client is None:
        log.info("no local server runs for %s: leaving", runner.home())
        return 0
    from flows.cli import main as cli

    for key, value in cli._PROCESS_ENV.items():
        os.environ.setdefault(key, value)
    os.environ.update(client)  # before Prefect is imported: its settings are read once
    idle_s = load_settings().runner_idle_s
    serving = Runner(options.key, client["PREFECT_API_URL"], bound, idle_s)
    # Not in the handler itself: it may land while this thread holds the runner's lock.
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=serving.stop_soon).start())
    signal.signal(signal.SIGINT, _interrupt_command)
    try:
        serving.listen()  # a command that comes now waits for the models
    except OSError as e:  # its path taken by another user's file, say: commands run on their own
        log.warning("cannot listen at %s (%s): leaving", serving.path, e)
        return 0
    _close(options.listening_fd)
    started = time.perf_counter()
    for name in _WARM_IMPORTS:
        importlib.import_module(name)
    runs.when_stuck(_end_for_caller)
    models: list[str] = []
    if options.profile and options.store:
        try:
            models = preload(options.profile, options.store)
        except Exception as e:  # noqa: BLE001 - a command loads them itself, and says why
            log.info("models not loaded ahead (%s: %s)", type(e).__name__, e)
    serving.ready(models)
    log.info("runner %d ready in %.1f s for %s: %s", os.getpid(), time.perf_counter() - started,
             runner.home(), ", ".join(models) or "no models loaded")  # fmt: skip
    serving.serve_forever()
    return 0


def _lock_the_home(listening_fd: int | None) -> bool:
    """Take the home's runner lock, held for life (one runner per home); whether it was taken
    within a minute (a runner it replaces ends its command first). The command that started
    this one is not kept waiting meanwhile (``listening_fd`` is closed)."""
    lock = open(runner.home() / "voxflow-runner.lock", "w")  # noqa: SIM115 - held for life
    deadline = time.monotonic() + 60
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            _LOCK.append(lock)
            return True
        except BlockingIOError:
            _close(listening_fd)
            if time.monotonic() > deadline:
                log.info("another runner holds %s: leaving", lock.name)
                return False
            time.sleep(0.2)


_LOCK: list = []  # the home's runner lock, held while this process lives


def _close(fd: int | None) -> None:
    """Close ``fd`` once (the pipe the starting command waits on)."""
    if fd is not None and fd not in _CLOSED:
        _CLOSED.add(fd)
        os.close(fd)


_CLOSED: set[int] = set()


if __name__ == "__main__":
    raise SystemExit(main())
