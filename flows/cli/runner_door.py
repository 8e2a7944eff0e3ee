"""The local runner's door: the thread that takes every connection to its socket and answers
each in a thread of its own (:mod:`flows.cli.runner_wire` says what is said).

It only accepts; a connection's handshake runs under a deadline, with whatever goes wrong with
it (garbage, a cut-short or endless request, a caller that never speaks or leaves) its own, so
no connection can keep the next command from being taken. A connection from another user is
refused before a byte of it is read.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
from collections.abc import Callable

from flows.cli import runner
from flows.cli import runner_wire as wire

log = logging.getLogger("voxflow.runner")

MAX_HANDSHAKES = 32
"""How many connections are answered at once; one more is refused at once."""


class Door:
    """Answers the connections to ``server``: a ping with ``standing()``, a command (checked
    against ``key``) by handing it to ``take``, which answers it from then on."""

    def __init__(
        self,
        server: socket.socket,
        key: str,
        standing: Callable[[], dict],
        take: Callable[[socket.socket, dict], None],
    ) -> None:
        self.server, self.key, self.standing, self.take = server, key, standing, take
        self._handshakes = threading.BoundedSemaphore(MAX_HANDSHAKES)

    def accept_forever(self) -> None:
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError as e:  # out of file descriptors, say: a later accept may succeed
                log.warning("cannot accept a connection (%s)", e)
                time.sleep(0.1)  # no busy loop while the condition lasts
                continue
            if not self._handshakes.acquire(blocking=False):
                refuse(conn, f"{MAX_HANDSHAKES} connections are already being answered")
                continue
            threading.Thread(target=self._handshake, args=(conn,), daemon=True).start()

    def _handshake(self, conn: socket.socket) -> None:
        """Answer one connection; whatever goes wrong with it ends it alone."""
        try:
            self._answer(conn)
        except Exception as e:  # noqa: BLE001 - one connection's failure is no one else's
            log.warning("a connection failed: %s: %s", type(e).__name__, e)
            conn.close()
        finally:
            self._handshakes.release()

    def _answer(self, conn: socket.socket) -> None:
        uid, _ = wire.peer(conn)
        if uid != os.getuid():
            log.warning("refused a connection from uid %s", uid)
            refuse(conn, f"this runner serves uid {os.getuid()} only, not uid {uid}")
            return
        try:
            request = wire.read_request(conn, time.monotonic() + wire.HANDSHAKE_S)
            if request["kind"] == "run":
                self._check(request)
        except wire.BadRequest as e:
            log.warning("refused a request: %s", e)
            refuse(conn, f"bad request: {e}")
            return
        if request["kind"] == "ping":
            wire.answer(conn, {"ok": True, **self.standing()})
            conn.close()
            return
        self.take(conn, request)

    def _check(self, request: dict) -> None:
        """Refuse what the runner would not run as the caller's own process would."""
        command = runner.command_of(request["argv"])
        if command not in runner.SERVED:
            raise wire.BadRequest(
                f"its command is {command!r} (expected one of {', '.join(runner.SERVED)})"
            )
        if request["key"] != self.key:
            raise wire.BadRequest("its key is not this runner's (other code or environment)")


def refuse(conn: socket.socket, why: str) -> None:
    """Say why a connection is not served, and close it."""
    try:
        conn.settimeout(1.0)  # a short line: a caller that reads nothing cannot hold it
        wire.answer(conn, {"ok": False, "error": why})
    except OSError:
        pass
    conn.close()
