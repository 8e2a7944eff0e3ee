"""One way to write a file that readers never see half-written.

Every record, output and model file voxflow writes goes through here: a unique temp name beside
the destination (host, process and a random token, so two writers on one NFS volume never share
one), fsync, then ``os.replace``; the rename is the commit. A failure removes the temp file and
leaves the destination as it was.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import IO, Any

HOST = re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname())[:40] or "host"
"""This host's name as temp names carry it (so a cleaner can tell whose a temp file is)."""


def temp_name() -> str:
    """A name no other writer on any host uses at the same time: ``<host>-<pid>-<token>``."""
    return f"{HOST}-{os.getpid()}-{secrets.token_hex(6)}"


STALE_TEMP_S = 3600
"""A temp file whose writer cannot be proven alive is taken as abandoned after this."""


def writer_gone(name: str, mtime: float) -> bool:
    """Whether the writer of a :func:`temp_name` is surely gone: a process of this host that
    no longer runs, or silence for :data:`STALE_TEMP_S` (another host's, or a name that is not
    one of ours)."""
    parts = name.lstrip(".").split("-")
    if len(parts) >= 3 and "-".join(parts[:-2]) == HOST and parts[-2].isdigit():
        try:
            os.kill(int(parts[-2]), 0)
        except ProcessLookupError:
            return True
        except PermissionError:
            return False
        return False
    return time.time() - mtime > STALE_TEMP_S


def temp_path(path: Path) -> Path:
    """A hidden temp file beside ``path`` that :func:`atomic_file` would use."""
    return path.with_name(f".{path.name}.{temp_name()}.tmp")


@contextmanager
def atomic_file(path: str | os.PathLike[str], mode: str = "wb") -> Iterator[IO[Any]]:
    """Open a temp file beside ``path``; on a clean exit fsync it and rename it over ``path``.

    Args:
        path: The destination; its folder must exist.
        mode: ``"wb"`` for bytes, ``"w"`` for UTF-8 text with ``\\n`` line ends.
    """
    path = Path(path)
    tmp = temp_path(path)
    text = {"encoding": "utf-8", "newline": "\n"} if "b" not in mode else {}
    try:
        with open(tmp, mode, **text) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def write_bytes(path: str | os.PathLike[str], data: bytes) -> Path:
    """Write ``data`` to ``path`` atomically; return the path."""
    with atomic_file(path, "wb") as f:
        f.write(data)
    return Path(path)


def write_text(path: str | os.PathLike[str], text: str) -> Path:
    """Write UTF-8 ``text`` to ``path`` atomically; return the path."""
    with atomic_file(path, "w") as f:
        f.write(text)
    return Path(path)


def write_json(path: str | os.PathLike[str], record: Any, **dumps: Any) -> Path:
    """Write ``record`` as JSON atomically (``dumps`` go to :func:`json.dumps`); return the path."""
    return write_text(path, json.dumps(record, **dumps))
