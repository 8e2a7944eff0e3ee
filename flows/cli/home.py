"""The files voxflow keeps in a Prefect home for its local server and runner, and the home's
privacy: the home 0700, the database and logs 0600, and the server's credential
(``voxflow:<secret>``, 0600) that only its user can read.
"""

from __future__ import annotations

import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from voxflow.atomic import temp_path
from voxflow.errors import BadInput
from voxflow.settings import load_settings

USER = "voxflow"
"""The user name in the local server's credential (``voxflow:<secret>``), as its UI's login
asks for it."""


@dataclass(frozen=True)
class HomePaths:
    """Every file voxflow keeps in a Prefect home for its local server and runner."""

    root: Path

    @property
    def record(self) -> Path:
        """The server's record (:class:`LocalServer`)."""
        return self.root / "voxflow-server.json"

    @property
    def lock(self) -> Path:
        """Held while a server is started, so two commands at once share one."""
        return self.root / "voxflow-server.lock"

    @property
    def log(self) -> Path:
        """What the server prints."""
        return self.root / "voxflow-server.log"

    @property
    def credential(self) -> Path:
        """The server's credential, ``voxflow:<secret>`` (mode 0600)."""
        return self.root / "voxflow-server.credential"

    @property
    def used(self) -> Path:
        """Touched by each command that uses the server: its mtime is the last use."""
        return self.root / "voxflow-server.used"

    @property
    def users(self) -> Path:
        """A file per process that holds the server (named by its pid, holding its start time);
        the server does not end for idleness while one of them runs."""
        return self.root / "voxflow-server.users"

    @property
    def runner_record(self) -> Path:
        """The local runner's record (:mod:`flows.cli.runner`)."""
        return self.root / "voxflow-runner.json"

    @property
    def runner_log(self) -> Path:
        """What the local runner prints."""
        return self.root / "voxflow-runner.log"

    @property
    def private(self) -> tuple[Path, ...]:
        """What only the user may read: Prefect's database (with its journals) and the logs."""
        db = self.root / "prefect.db"
        journals = [db.with_name(f"prefect.db{end}") for end in ("-wal", "-shm", "-journal")]
        return (db, *journals, self.log, self.runner_log)


def home() -> Path:
    """The Prefect home (``$PREFECT_HOME``, else ``~/.prefect``), as an absolute path."""
    return load_settings().prefect_home


def paths() -> HomePaths:
    """The files of this Prefect home (:func:`home`)."""
    return HomePaths(home())


def network_namespace() -> int | None:
    """This process's network namespace (the inode of ``/proc/self/ns/net``); None where there
    are none. A server started in another one does not answer at this one's 127.0.0.1."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


def read_credential() -> str | None:
    """This home's credential, when its file is a regular file of this user's that only they
    may read (no link followed); else None."""
    try:
        fd = os.open(paths().credential, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError:
        return None
    with os.fdopen(fd, encoding="utf-8") as f:
        info = os.fstat(f.fileno())
        if not stat.S_ISREG(info.st_mode) or info.st_uid != os.getuid() or info.st_mode & 0o077:
            return None
        secret = f.read().strip()
    return secret if secret.startswith(f"{USER}:") and len(secret) > len(USER) + 16 else None


def new_credential(where: HomePaths) -> str:
    """A new random credential, written to the home mode 0600 from its first byte."""
    secret = f"{USER}:{secrets.token_urlsafe(32)}"
    tmp = temp_path(where.credential)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(secret + "\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, where.credential)
    finally:
        tmp.unlink(missing_ok=True)
    return secret


def private_home(where: HomePaths) -> None:
    """Make the Prefect home 0700 and the database and logs in it 0600 (what exists of them).

    Raises:
        BadInput: The home belongs to another user.
    """
    where.root.mkdir(parents=True, exist_ok=True, mode=0o700)
    info = os.stat(where.root)
    if info.st_uid != os.getuid():
        raise BadInput(
            f"the Prefect home {where.root} belongs to another user (uid {info.st_uid}): its "
            "local server would not be yours alone; set PREFECT_HOME to a folder of your own"
        )
    if stat.S_IMODE(info.st_mode) != 0o700:
        os.chmod(where.root, 0o700)
    for path in where.private:
        try:
            info = os.lstat(path)
        except FileNotFoundError:
            continue
        if stat.S_ISREG(info.st_mode) and info.st_uid == os.getuid() and info.st_mode & 0o077:
            os.chmod(path, 0o600)


def private_log(path: Path):
    """``path`` opened to append, created mode 0600."""
    return os.fdopen(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600), "ab")
