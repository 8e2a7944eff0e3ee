"""A socket guard: fail any network connection a process makes (optionally but loopback).

Used by the warm flow's offline load check (in a child process) and by the test suite's
offline guard. It patches ``socket.socket.connect`` for the process that installs it, which is
why it is only ever installed in a child process or a test session, never by library code.
"""

from __future__ import annotations

import ipaddress
import socket

_original_connect = socket.socket.connect
_original_connect_ex = socket.socket.connect_ex


class NetworkBlocked(ConnectionRefusedError):
    """A connection the offline guard refused."""


def _is_loopback(address: object) -> bool:
    if isinstance(address, str | bytes):  # AF_UNIX path
        return True
    host = address[0] if isinstance(address, tuple) else address
    if host in ("localhost", ""):
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def install(allow_loopback: bool = False, record: list[str] | None = None) -> None:
    """Refuse outgoing connections from this process.

    Args:
        allow_loopback: Let connections to 127.0.0.0/8, ::1 and Unix sockets through.
        record: If given, every refused address is appended to it.
    """

    def check(sock: socket.socket, address: object) -> None:
        if allow_loopback and _is_loopback(address):
            return
        if sock.family == getattr(socket, "AF_UNIX", None):
            return
        if record is not None:
            record.append(repr(address))
        raise NetworkBlocked(f"voxflow offline guard: connection to {address!r} refused")

    def connect(sock: socket.socket, address: object) -> None:
        check(sock, address)
        return _original_connect(sock, address)

    def connect_ex(sock: socket.socket, address: object) -> int:
        check(sock, address)
        return _original_connect_ex(sock, address)

    socket.socket.connect = connect  # type: ignore[method-assign]
    socket.socket.connect_ex = connect_ex  # type: ignore[method-assign]


def uninstall() -> None:
    """Restore normal connections."""
    socket.socket.connect = _original_connect  # type: ignore[method-assign]
    socket.socket.connect_ex = _original_connect_ex  # type: ignore[method-assign]
