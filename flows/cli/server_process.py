"""The local server's own process (``python -m flows.cli.server_process``, started by
:func:`flows.cli.server.ensure`): its :class:`Watchdog`, then ``prefect server start`` on
127.0.0.1.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import sys
import threading
import time

from filelock import FileLock
from filelock import Timeout as FileLockTimeout

from flows.cli.home import HomePaths, paths
from flows.cli.processes import STOP_TIMEOUT_S, ProcessId, register, unlink_if_names, unregister
from flows.cli.server import START_TIMEOUT_S, Usage, duration, usage


class Watchdog:
    """A thread in the local server's own process that ends it: at once when its Prefect home
    is removed or replaced, or its record there names another process (or cannot be read); and
    when no voxflow process has held it (:func:`hold`) for ``idle_s`` seconds (0: never).

    In the server's process rather than beside it: there is one process to identify, signal
    and wait for, nothing outlives it, and it needs no connection to the server. The runner
    could not be it: it is not always there (``VOXFLOW_RUNNER=0``, before a first command ends).
    """

    def __init__(self, where: HomePaths, me: ProcessId, idle_s: float, url: str) -> None:
        self.where, self.me, self.idle_s, self.url = where, me, idle_s, url
        self.tick = 1.0 if idle_s <= 0 else min(1.0, max(0.1, idle_s / 10))
        info = os.stat(where.root)
        self.home_id = (info.st_dev, info.st_ino)
        self.born, self.born_at = time.monotonic(), time.time()
        self.recorded = False

    def begin(self) -> None:
        """List the server in the user's registry; start watching."""
        register("server", self.me, self.where.root, url=self.url)
        threading.Thread(target=self._watch, name="voxflow-watchdog", daemon=True).start()

    def _watch(self) -> None:
        while True:
            time.sleep(self.tick)
            try:
                why = self.reason()
            except OSError as e:  # a passing failure to read: look again at the next tick
                _say(f"the watchdog could not look ({type(e).__name__}: {e})")
                continue
            if why:
                self.end(why)
                return

    def reason(self) -> str | None:
        """Why the server is to end now; None while it is to stay."""
        root = self.where.root
        try:
            info = os.stat(root)
        except FileNotFoundError:
            return f"its Prefect home {root} was removed"
        if (info.st_dev, info.st_ino) != self.home_id:
            return f"its Prefect home {root} was replaced"
        try:
            written = os.stat(self.where.record).st_mtime
            data = json.loads(self.where.record.read_text())
            names = (data.get("pid"), data.get("start")) if isinstance(data, dict) else None
        except FileNotFoundError:
            written, names = 0.0, ()
        except ValueError:
            names = None
        if names != (self.me.pid, self.me.start):
            # The command that started it records it once it answers: until then the record
            # is the one from before it started, if any.
            if not self.recorded and (names == () or written < self.born_at):
                if time.monotonic() - self.born > START_TIMEOUT_S + 60:
                    return "the command that started it never recorded it"
                return None
            if names == ():
                return f"its record {self.where.record} was removed"
            if names is None:
                return f"its record {self.where.record} cannot be read"
            return f"its record names another process (pid {names[0]})"
        self.recorded = True
        if self.idle_s > 0 and self._idle():
            return f"no voxflow command or run used it for {duration(self.idle_s)}"
        return None

    def _idle(self) -> bool:
        """Whether no one has held it for ``idle_s``: then no command finds its record again."""

        def unused(use: Usage) -> bool:
            return not use.holders and time.time() - max(use.last_used, self.born_at) >= self.idle_s

        if not unused(usage(self.where)):
            return False
        try:  # a command holds the server before it takes the lock to look for it
            with FileLock(self.where.lock, timeout=self.tick):
                if not unused(usage(self.where, prune=True)):
                    return False
                unlink_if_names(self.where.record, self.me)
                return True
        except FileLockTimeout:
            return False

    def end(self, why: str) -> None:
        """End the server: Prefect's own shutdown, then, should that hang, the process."""
        _say(f"the local Prefect server (pid {self.me.pid}) ends: {why}")
        self.leave()
        os.kill(self.me.pid, signal.SIGTERM)  # uvicorn shuts down in the main thread
        time.sleep(STOP_TIMEOUT_S)
        _say(f"it did not end within {STOP_TIMEOUT_S:.0f} s of SIGTERM: leaving now")
        os._exit(1)

    def leave(self) -> None:
        """Take the server's record (when it names this process) and its registry entry."""
        unlink_if_names(self.where.record, self.me)
        unregister("server", self.me)


def _say(line: str) -> None:
    """A line in the server's log (its stderr): this process is the server's."""
    sys.stderr.write(f"voxflow: {line}\n")
    sys.stderr.flush()


def serve(argv: list[str] | None = None) -> int:
    """The local server's process: its :class:`Watchdog`, then ``prefect server start`` on
    127.0.0.1 in this process, with the environment :func:`_start` gave it."""
    parser = argparse.ArgumentParser(prog="python -m flows.cli.server_process")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--idle-s", type=float, required=True)
    options = parser.parse_args(argv)
    os.umask(0o077)  # this process owns its umask; its files are the user's alone
    where = paths()
    watchdog = Watchdog(where, ProcessId.me(), options.idle_s, f"http://127.0.0.1:{options.port}")
    watchdog.begin()
    sys.argv = ["prefect", "server", "start", "--host", "127.0.0.1", "--port", str(options.port)]
    from prefect.cli import app

    try:
        app()
    finally:
        watchdog.leave()
    return 0


if __name__ == "__main__":
    raise SystemExit(serve())
