"""A small Hugging Face hub look-alike on loopback, for the ``hf://`` source tests.

It answers the endpoints huggingface_hub's ``HfApi.model_info`` and ``hf_hub_download`` use
(checked against huggingface_hub 2.x):

- ``GET /api/models/{org}/{name}/revision/{rev}[?blobs=true]``: the commit and the file list
  (``siblings`` with size, blob id and, for large files, LFS sha256);
- ``HEAD|GET /{org}/{name}/resolve/{rev}/{path}``: the file, with ``ETag``, ``X-Repo-Commit``
  and ``Content-Length``, and ``Range`` support; no Xet headers, so clients use plain HTTP.

Errors carry the hub's ``X-Error-Code`` (``RepoNotFound``, ``RevisionNotFound``,
``EntryNotFound``, ``GatedRepo``) so huggingface_hub raises its usual exceptions. A repo can be
gated (401 without ``Authorization: Bearer <token>``) or broken (every download of a large file
stops half-way and the connection closes; a resume with ``Range`` answers 500).
"""

from __future__ import annotations

import hashlib
import json
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlparse

LFS_MIN = 1 << 20  # files at least this big are "LFS" files: their ETag is their sha256


@dataclass
class Repo:
    """One served repository at one commit.

    Attributes:
        files: Name in the repo -> file on disk.
        commit: The 40-hex commit every revision of this repo resolves to.
        token: If set, the repo is gated: files need ``Authorization: Bearer <token>``.
        broken: Downloads of LFS files stop half-way while true.
    """

    files: dict[str, Path]
    commit: str
    token: str | None = None
    broken: bool = False
    hashes: dict[str, tuple[str, str]] = field(default_factory=dict)

    def meta(self, name: str) -> tuple[str, str]:
        """(git blob sha1, sha256) of a file, computed once."""
        if name not in self.hashes:
            data = self.files[name].read_bytes()
            blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
            self.hashes[name] = (blob, hashlib.sha256(data).hexdigest())
        return self.hashes[name]


class HubServer:
    """Serve repos over HTTP on 127.0.0.1 (a random port) from a background thread.

    Use as a context manager; ``url`` is the endpoint to give huggingface_hub.
    """

    def __init__(self) -> None:
        self.repos: dict[str, Repo] = {}
        self.requests: list[tuple[str, str, bool]] = []  # (method, path, had a token)
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def add_repo(
        self,
        repo_id: str,
        files: dict[str, Path],
        token: str | None = None,
        broken: bool = False,
        extra_listing: tuple[str, ...] = (),
    ) -> str:
        """Serve ``files`` as ``repo_id``; return its commit.

        Args:
            repo_id: ``org/name``.
            files: Name in the repo -> file on disk.
            token: Gate the repo behind this token.
            broken: Start with downloads breaking off half-way.
            extra_listing: Names listed (and served, as empty files) beyond ``files``: a hostile
                hub's ``../`` names.
        """
        for name in extra_listing:
            files = {**files, name: Path("/dev/null")}
        commit = hashlib.sha1(repo_id.encode() + b"".join(sorted(f.encode() for f in files)))
        self.repos[repo_id] = Repo(dict(files), commit.hexdigest(), token, broken)
        return self.repos[repo_id].commit

    def __enter__(self) -> HubServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()


_API = re.compile(r"^/api/models/([^/]+/[^/]+)/revision/([^/]+)$")
_RESOLVE = re.compile(r"^/([^/]+/[^/]+)/resolve/([^/]+)/(.+)$")


def _handler(hub: HubServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep pytest output clean
            return

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _error(self, status: int, code: str, message: str, commit: str | None = None):
            data = json.dumps({"error": message}).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("X-Error-Code", code)
            self.send_header("X-Error-Message", message)
            if commit:
                self.send_header("X-Repo-Commit", commit)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(data)

        def _serve(self, body: bool) -> None:
            path = unquote(urlparse(self.path).path)
            auth = self.headers.get("Authorization", "")
            hub.requests.append((self.command, path, auth.startswith("Bearer ")))
            if m := _API.match(path):
                return self._api(*m.groups())
            if m := _RESOLVE.match(path):
                return self._resolve(*m.groups(), auth=auth, body=body)
            return self._error(404, "RepoNotFound", f"no route {path}")

        def _repo(self, repo_id: str, revision: str) -> Repo | None:
            repo = hub.repos.get(repo_id)
            if repo is None:
                self._error(401, "RepoNotFound", f"Repository {repo_id} not found")
                return None
            if revision not in ("main", repo.commit):
                self._error(404, "RevisionNotFound", f"Invalid rev id: {revision}")
                return None
            return repo

        def _api(self, repo_id: str, revision: str) -> None:
            repo = self._repo(repo_id, revision)
            if repo is None:
                return
            siblings = []
            for name, file in repo.files.items():
                size = file.stat().st_size if file != Path("/dev/null") else 0
                blob, sha256 = repo.meta(name)
                entry = {"rfilename": name, "size": size, "blobId": blob}
                if size >= LFS_MIN:
                    entry["lfs"] = {"size": size, "sha256": sha256, "pointerSize": 134}
                siblings.append(entry)
            data = json.dumps(
                {
                    "_id": repo.commit[:24],
                    "id": repo_id,
                    "modelId": repo_id,
                    "sha": repo.commit,
                    "private": False,
                    "gated": "manual" if repo.token else False,
                    "disabled": False,
                    "tags": [],
                    "siblings": siblings,
                }
            ).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _resolve(self, repo_id: str, revision: str, name: str, auth: str, body: bool):
            repo = self._repo(repo_id, revision)
            if repo is None:
                return
            if repo.token and auth != f"Bearer {repo.token}":
                return self._error(
                    401,
                    "GatedRepo",
                    f"Access to model {repo_id} is restricted. You must have access to it and "
                    "be authenticated to access it. Please log in.",
                )
            if name not in repo.files:
                return self._error(404, "EntryNotFound", f"{name} does not exist", repo.commit)
            file = repo.files[name]
            size = file.stat().st_size if file != Path("/dev/null") else 0
            blob, sha256 = repo.meta(name)
            start = 0
            if m := re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", "")):
                start = int(m.group(1))
            half = size // 2
            if repo.broken and size >= LFS_MIN and start and body:
                return self._error(500, "Internal", "storage backend unavailable")
            self.send_response(206 if start else 200)
            self.send_header("Content-Length", str(size - start))
            self.send_header("ETag", f'"{sha256 if size >= LFS_MIN else blob}"')
            self.send_header("X-Repo-Commit", repo.commit)
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Content-Type", "application/octet-stream")
            if start:
                self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
            self.end_headers()
            if not body:
                return
            stop = half if repo.broken and size >= LFS_MIN else size
            with file.open("rb") as f:
                f.seek(start)
                left = stop - start
                while left > 0:
                    chunk = f.read(min(1 << 20, left))
                    if not chunk:
                        break
                    self.wfile.write(chunk)
                    left -= len(chunk)
            if stop < size:  # the connection drops mid-file
                self.wfile.flush()
                self.close_connection = True
                self.connection.shutdown(2)

    return Handler
