"""What the local runner and its callers say to each other over its Unix socket, both sides of it
(:mod:`flows.cli.runner`, :mod:`flows.cli.runner_process`): standard library only.

A caller sends one request: a 4-byte big-endian length, then that many bytes of a JSON object,
either ``{"kind": "ping"}`` or a command to run (:data:`RUN_FIELDS`). The runner answers in JSON
lines: ``{"ok": true, ...}`` (then, for a command, its output frames), ``{"ok": null, "state":
"loading"}`` (a command waits for its models, then gets the next line), or ``{"ok": false,
"error": ...}`` and the connection closes. A request must come whole within
:data:`HANDSHAKE_S`, and an answer too: neither side waits on a peer that does not speak.
Each side checks who the other is (:func:`peer`): only the runner's own user is served.
"""

from __future__ import annotations

import json
import socket
import struct
import sys
import time

HANDSHAKE_S = 5.0
"""How long either side waits for the other's request or answer."""
LOAD_WAIT_S = 120.0
"""How long a command waits for a runner still loading its models (as long as a process of its
own would take to load them, at most)."""
MAX_REQUEST = 4 << 20
"""The largest request, in bytes (a command's environment is at most a few hundred KiB)."""
_MAX_ANSWER = 64 << 10

RUN_FIELDS: dict[str, type] = {
    "kind": str,
    "key": str,  # the caller's fingerprint: the runner runs only what it would run the same
    "argv": list,
    "cwd": str,
    "env": dict,
    "tty": list,
    "umask": int,
}
PING_FIELDS: dict[str, type] = {"kind": str}


class BadRequest(ValueError):
    """A request the runner does not take; the message says what was wrong with it."""


# ---- the request -------------------------------------------------------------------------------


def encode_request(request: dict) -> bytes:
    """A request as it is sent.

    Raises:
        ValueError: It is over :data:`MAX_REQUEST` bytes (the command runs in its own process).
    """
    body = json.dumps(request).encode()
    if len(body) > MAX_REQUEST:
        raise ValueError(f"a request of {len(body)} bytes is over {MAX_REQUEST}")
    return struct.pack("!I", len(body)) + body


def read_request(conn: socket.socket, deadline: float) -> dict:
    """Read and check one request, all of it before ``deadline`` (``time.monotonic``).

    Raises:
        BadRequest: It came late, cut short, over :data:`MAX_REQUEST`, not JSON, or not one of
            the two requests (:func:`check_request`).
    """
    (size,) = struct.unpack("!I", _read_exactly(conn, 4, deadline, "its 4-byte length"))
    if size > MAX_REQUEST:
        raise BadRequest(f"its length is {size} bytes (at most {MAX_REQUEST})")
    body = _read_exactly(conn, size, deadline, f"its {size} bytes")
    try:
        data = json.loads(body)
    except ValueError as e:  # UnicodeDecodeError included
        raise BadRequest(f"it is not JSON ({e})") from e
    return check_request(data)


def _read_exactly(conn: socket.socket, size: int, deadline: float, what: str) -> bytes:
    data = bytearray()
    while len(data) < size:
        left = deadline - time.monotonic()
        try:
            if left <= 0:
                raise TimeoutError
            conn.settimeout(left)
            chunk = conn.recv(min(size - len(data), 1 << 20))
        except TimeoutError as e:
            raise BadRequest(
                f"{len(data)} of {what} came within {HANDSHAKE_S:.0f} s, no more"
            ) from e
        if not chunk:
            raise BadRequest(f"the connection closed after {len(data)} of {what}")
        data += chunk
    return bytes(data)


def check_request(data: object) -> dict:
    """``data`` when it is exactly a ping or a command to run: its fields, each of its type.

    Raises:
        BadRequest: What was wrong, and what was expected.
    """
    if not isinstance(data, dict):
        raise BadRequest(f"it is {_json_type(data)} (expected an object)")
    kind = data.get("kind")
    fields = {"ping": PING_FIELDS, "run": RUN_FIELDS}.get(kind) if isinstance(kind, str) else None
    if fields is None:
        raise BadRequest(f"its kind is {kind!r} (expected 'ping' or 'run')")
    missing, extra = sorted(set(fields) - set(data)), sorted(set(data) - set(fields))
    if missing or extra:
        raise BadRequest(
            f"a {kind} request with fields {sorted(data)} (missing {missing}, unknown {extra})"
        )
    for name, expected in fields.items():
        if not isinstance(data[name], expected) or isinstance(data[name], bool):
            found, wanted = _json_type(data[name]), _NAMES[expected]
            raise BadRequest(f"its {name} is {found} (expected {wanted})")
    if kind == "run":
        _check_command(data)
    return data


def _check_command(data: dict) -> None:
    strings = [*data["argv"], data["cwd"], *data["env"], *data["env"].values()]
    if not all(isinstance(s, str) for s in strings):
        raise BadRequest("its argv or env holds something other than strings")
    if any("\0" in s for s in strings):
        raise BadRequest("its argv, cwd or env holds a NUL character")
    if not data["cwd"].startswith("/"):
        raise BadRequest(f"its cwd is {data['cwd']!r} (expected an absolute path)")
    tty = data["tty"]
    if len(tty) != 2 or not all(isinstance(t, bool) for t in tty):
        raise BadRequest(f"its tty is {tty!r} (expected [stdout, stderr] as two booleans)")
    if not 0 <= data["umask"] <= 0o777:
        raise BadRequest(f"its umask is {data['umask']} (expected 0 to 0o777)")


_NAMES = {str: "a string", list: "a list", dict: "an object", int: "an integer"}


def _json_type(value: object) -> str:
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    if isinstance(value, int | float):
        return f"the number {value}"
    return _NAMES.get(type(value), type(value).__name__)


# ---- the answers ---------------------------------------------------------------------------------


def answer(conn: socket.socket, message: dict) -> None:
    """Send one answer line."""
    conn.sendall(json.dumps(message).encode() + b"\n")


def read_answer(reader) -> dict:
    """The next answer line from the runner (the socket's timeout bounds the wait).

    Raises:
        ValueError: None came (the connection closed), or not a JSON object.
        OSError: The wait timed out, or the connection failed.
    """
    line = reader.readline(_MAX_ANSWER)
    data = json.loads(line) if line.endswith(b"\n") else None
    if not isinstance(data, dict):
        raise ValueError(f"the runner's answer is {line[:80]!r}")
    return data


# ---- who is at the other end -------------------------------------------------------------------

_SOL_LOCAL, _LOCAL_PEERCRED = 0, 0x001  # macOS and the BSDs: <sys/un.h>
_XUCRED = struct.Struct("=II")  # struct xucred begins: u_int cr_version; uid_t cr_uid


def peer(conn: socket.socket) -> tuple[int | None, int | None]:
    """The user id and process id of the other end of a Unix socket, as the kernel says (None:
    not known here). Linux: ``SO_PEERCRED``; macOS and the BSDs: ``LOCAL_PEERCRED`` (the uid
    only, as ``getpeereid`` gives it); elsewhere neither, and the uid is None, which the runner
    and its callers take as a stranger."""
    if hasattr(socket, "SO_PEERCRED"):
        creds = struct.Struct("3i")
        raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, creds.size)
        pid, uid, _ = creds.unpack(raw)
        return uid, pid
    if sys.platform == "darwin" or "bsd" in sys.platform:
        raw = conn.getsockopt(_SOL_LOCAL, _LOCAL_PEERCRED, 128)
        _, uid = _XUCRED.unpack_from(raw)
        return uid, None
    return None, None
