"""The inbox is a trust boundary: planted links and special files are never followed, opened or
moved, and quarantine never leaves the inbox or lands on a name that is taken."""

from __future__ import annotations

import builtins
import errno
import json
import os
import re
import shutil
import socket
import stat
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

import flows.inbox.quarantine
from conftest import SAMPLE
from flows.inbox.files import LEDGER_NAME, InboxFile, Ledger, scan_inbox
from flows.inbox.flow import inbox, transcribe_file
from flows.inbox.quarantine import QuarantineRefused, quarantine, quarantine_folder
from tasks.job import open_job
from tasks.media import NotRegularFile, check_media_path, hash_entry
from voxflow.errors import NotMedia

BROKEN = b"this is a text file, not a video\n"


@contextmanager
def fifo(path: Path, patience_s: float = 60.0) -> Iterator[dict[str, bool]]:
    """A FIFO at ``path``; if a reader still blocks on it after ``patience_s``, a writer lets
    it go (so a regression fails the test instead of hanging it) and ``blocked`` says so."""
    os.mkfifo(path)
    seen = {"blocked": False}
    done = threading.Event()

    def release() -> None:
        if done.wait(patience_s):
            return
        try:  # succeeds only while a reader waits in open()
            os.close(os.open(path, os.O_WRONLY | os.O_NONBLOCK))
            seen["blocked"] = True
        except OSError:
            pass

    watcher = threading.Thread(target=release, daemon=True)
    watcher.start()
    try:
        yield seen
    finally:
        done.set()
        watcher.join()


def fingerprint(path: Path) -> tuple[bytes, int]:
    """A file's bytes and mtime, to show it was left exactly as it was."""
    return path.read_bytes(), os.lstat(path).st_mtime_ns


def plant_links(box: Path, outside: Path) -> dict[str, str]:
    """A link of every kind in ``box``; name -> where it points (to check they stay)."""
    (outside / "secret.mp4").write_bytes(SAMPLE.read_bytes())  # a private recording
    (outside / "folder").mkdir()
    targets = {
        "private.mp4": str(outside / "secret.mp4"),
        "album.mp4": str(outside / "folder"),
        "gone.mp4": str(outside / "nothing-here.mp4"),
        "loop.mp4": "loop.mp4",
        "ping.mp4": "pong.mp4",
        "pong.mp4": "ping.mp4",
    }
    for name, target in targets.items():
        os.symlink(target, box / name)
    return targets


def test_links_and_special_files_are_listed_as_skipped_and_never_opened(tmp_path, monkeypatch):
    box, outside = tmp_path / "inbox", tmp_path / "outside"
    box.mkdir()
    outside.mkdir()
    targets = plant_links(box, outside)
    os.symlink(outside / "folder", box / "notes")  # a link whatever its name
    (box / "talk.mp4").write_bytes(b"a regular file")
    (box / "archive").mkdir()  # a plain sub-folder: not scanned, not listed
    (box / "film.mkv").mkdir()  # a folder named like media: listed
    sock = socket.socket(socket.AF_UNIX)
    sock_path = box / "s.wav"
    bound = len(os.fsencode(sock_path)) < 100  # AF_UNIX paths are short
    if bound:
        sock.bind(str(sock_path))
    opened: list[str] = []
    real_open, real_builtin_open = os.open, builtins.open
    monkeypatch.setattr(
        os, "open", lambda p, *a, **k: opened.append(str(p)) or real_open(p, *a, **k)
    )
    monkeypatch.setattr(
        builtins, "open", lambda p, *a, **k: opened.append(str(p)) or real_builtin_open(p, *a, **k)
    )

    with fifo(box / "stream.mp4") as pipe:
        scan = scan_inbox(box, Ledger(tmp_path / LEDGER_NAME, {}))
    sock.close()

    assert not pipe["blocked"]
    assert [f.path.name for f in scan.pending] == ["talk.mp4"]
    expected = dict.fromkeys([*targets, "notes"], "symlink") | {
        "film.mkv": "not a regular file: folder",
        "stream.mp4": "not a regular file: FIFO",
    }
    if bound:
        expected["s.wav"] = "not a regular file: socket"
    assert scan.skipped == dict(sorted(expected.items()))
    assert {Path(p).name for p in opened} == {"talk.mp4"}  # nothing else was opened
    assert {name: os.readlink(box / name) for name in targets} == targets


def test_an_entry_is_hashed_through_itself_never_a_link_swapped_in(tmp_path):
    media, other = tmp_path / "talk.mp4", tmp_path / "other.mp4"
    media.write_bytes(b"mine")
    other.write_bytes(b"someone else's")
    listed = os.lstat(media)

    media.unlink()
    os.symlink(other, media)  # swapped for a link after it was listed
    with pytest.raises(NotRegularFile, match="symlink"):
        hash_entry(media, listed)
    with pytest.raises(NotRegularFile, match="symlink"):
        open_job(media, tmp_path / "out", follow_links=False)
    assert not (tmp_path / "out").exists()
    assert open_job(media, tmp_path / "out").sha256 == hash_entry(other)  # a user's own link

    media.unlink()
    os.rename(other, media)  # another regular file renamed over it
    with pytest.raises(NotRegularFile, match="replaced by another file"):
        hash_entry(media, listed)


def make_broken(box: Path, name: str = "broken.mp4") -> InboxFile:
    (box / name).write_bytes(BROKEN)
    [item] = [
        f for f in scan_inbox(box, Ledger(box / LEDGER_NAME, {})).pending if f.path.name == name
    ]
    return item


def no_renameat2(monkeypatch):
    monkeypatch.setattr(flows.inbox.quarantine, "_RENAMEAT2", None)


def neither_renameat2_nor_links(monkeypatch):
    monkeypatch.setattr(flows.inbox.quarantine, "_RENAMEAT2", None)

    def no_link(*args, **kwargs):
        raise OSError(errno.EPERM, "Operation not permitted (no hard links here)")

    monkeypatch.setattr(os, "link", no_link)


@pytest.mark.parametrize(
    "filesystem",
    [lambda mp: None, no_renameat2, neither_renameat2_nor_links],
    ids=["renameat2", "link-unlink", "check-rename"],
)
def test_quarantine_never_lands_on_a_taken_name(tmp_path, monkeypatch, filesystem):
    box, outside = tmp_path / "inbox", tmp_path / "outside"
    (box / "quarantine").mkdir(parents=True)
    outside.mkdir()
    (outside / "mine.txt").write_text("keep me\n")
    item = make_broken(box)
    planted = {  # each name quarantine would use first, taken by a link or a file
        "broken.mp4": str(outside),  # a link to a folder: shutil.move went into it
        "broken (2).mp4.error.txt": str(outside / "mine.txt"),  # the next note, a link
        "broken (3).mp4": None,  # a plain file
    }
    for name, target in planted.items():
        if target:
            os.symlink(target, box / "quarantine" / name)
        else:
            (box / "quarantine" / name).write_text("planted\n")
    filesystem(monkeypatch)

    moved = quarantine(item, box / "quarantine", ValueError("cannot decode"))

    assert moved == box / "quarantine" / "broken (4).mp4"
    assert moved.read_bytes() == BROKEN and not (box / "broken.mp4").exists()
    note = (box / "quarantine" / "broken (4).mp4.error.txt").read_text()
    assert note.startswith("broken.mp4 failed at") and "cannot decode" in note
    assert os.readlink(box / "quarantine" / "broken.mp4") == str(outside)
    assert os.readlink(box / "quarantine" / "broken (2).mp4.error.txt") == str(outside / "mine.txt")
    assert (box / "quarantine" / "broken (3).mp4").read_text() == "planted\n"
    assert sorted(os.listdir(outside)) == ["mine.txt"]
    assert (outside / "mine.txt").read_text() == "keep me\n"
    assert sorted(os.listdir(box / "quarantine")) == sorted(
        [*planted, moved.name, moved.name + ".error.txt"]
    )


def test_quarantine_refuses_a_link_a_file_or_a_folder_outside_the_inbox(tmp_path):
    box, outside = tmp_path / "inbox", tmp_path / "outside"
    box.mkdir()
    outside.mkdir()
    item = make_broken(box)

    os.symlink(outside, box / "quarantine")
    with pytest.raises(QuarantineRefused) as refused:
        quarantine(item, box / "quarantine", ValueError("x"))
    assert str(refused.value) == (
        f"the inbox's quarantine {box / 'quarantine'} is a symlink, not a folder inside the "
        "inbox; remove the link and run again (files never leave the inbox)"
    )
    os.unlink(box / "quarantine")
    (box / "quarantine").write_text("")
    with pytest.raises(QuarantineRefused, match="is a regular file, not a folder.*move it aside"):
        quarantine(item, box / "quarantine", ValueError("x"))
    os.unlink(box / "quarantine")
    with fifo(box / "quarantine") as pipe:
        with pytest.raises(QuarantineRefused, match="is a FIFO, not a folder.*move it aside"):
            quarantine(item, box / "quarantine", ValueError("x"))
    assert not pipe["blocked"]
    os.symlink(outside, box / "deep")
    with pytest.raises(QuarantineRefused, match=re.escape(f"quarantine {box / 'deep'} is a sym")):
        quarantine(item, box / "deep" / "failed", ValueError("x"))
    with pytest.raises(QuarantineRefused, match="is not a folder inside the inbox"):
        quarantine_folder(box, outside)
    with pytest.raises(QuarantineRefused, match="is not a folder inside the inbox"):
        quarantine_folder(box, "../outside")

    assert (box / "broken.mp4").read_bytes() == BROKEN
    assert os.listdir(outside) == []
    assert quarantine_folder(box, "failed/today") == box / "failed" / "today"  # made when needed
    assert quarantine(item, box / "failed" / "today", ValueError("x")).parent.is_dir()


class Swapped:
    """A file's request whose check finds what a batch would: the name is a link by now to
    ``target`` (``before`` the batch's first look, else after it), and the file cannot be
    decoded."""

    def __init__(self, item: InboxFile, target: Path, before: bool) -> None:
        self.item, self.target = item, target
        if before:
            self.swap()

    def swap(self) -> None:
        if not self.item.path.is_symlink():
            self.item.path.unlink()
            os.symlink(self.target, self.item.path)

    def check(self):
        self.swap()
        check_media_path(self.item.path)  # as the request's check does: a link to a folder fails
        raise NotMedia(str(self.item.path), "ffmpeg says: invalid data")


@pytest.mark.parametrize("target", ["secret.mp4", "folder"])
@pytest.mark.parametrize("before", [True, False], ids=["before-the-look", "after-the-look"])
def test_a_claimed_file_that_became_a_link_is_skipped_not_read_or_moved(tmp_path, before, target):
    box, outside = tmp_path / "inbox", tmp_path / "outside"
    box.mkdir()
    outside.mkdir()
    item = make_broken(box)  # listed and claimed as a regular file
    shutil.copy(SAMPLE, outside / "secret.mp4")
    (outside / "folder").mkdir()
    secret = fingerprint(outside / "secret.mp4")

    request = Swapped(item, outside / target, before)
    status, details = transcribe_file(item, request, {}, box / "quarantine")

    assert (status, details) == ("skipped", {"error": "symlink"})
    assert os.readlink(box / "broken.mp4") == str(outside / target)
    assert fingerprint(outside / "secret.mp4") == secret
    assert os.listdir(outside / "folder") == []
    assert not (box / "quarantine").exists()


def test_quarantine_does_not_move_a_file_that_became_a_link(tmp_path):
    box, outside = tmp_path / "inbox", tmp_path / "outside"
    box.mkdir()
    outside.mkdir()
    item = make_broken(box)
    (outside / "secret.mp4").write_bytes(b"private")
    (box / "broken.mp4").unlink()
    os.symlink(outside / "secret.mp4", box / "broken.mp4")

    with pytest.raises(NotRegularFile, match="symlink"):
        quarantine(item, box / "quarantine", ValueError("x"))

    assert os.readlink(box / "broken.mp4") == str(outside / "secret.mp4")
    assert os.listdir(box / "quarantine") == []  # made, and nothing moved into it
    assert (outside / "secret.mp4").read_bytes() == b"private"


@pytest.mark.usefixtures("prefect_api")
def test_one_inbox_run_among_planted_links_transcribes_none_and_quarantines_inside(
    warm_store, tmp_path
):
    box, outside, out = tmp_path / "inbox", tmp_path / "outside", tmp_path / "out"
    (box / "quarantine").mkdir(parents=True)
    outside.mkdir()
    targets = plant_links(box, outside)
    secret = fingerprint(outside / "secret.mp4")
    (box / "broken.mp4").write_bytes(BROKEN)  # text named .mp4: quarantined
    trap = outside / "trap"
    trap.mkdir()
    os.symlink(trap, box / "quarantine" / "broken.mp4")  # the name quarantine would use

    with fifo(box / "stream.mp4") as pipe:
        state = inbox(
            str(box), profile="cpu", output_dir=str(out), store=warm_store.root, min_age_s=0,
            return_state=True,
        )  # fmt: skip

    assert not pipe["blocked"]
    assert state.result() == {"done": [], "quarantined": ["broken.mp4"], "queued": []}
    assert (box / "quarantine" / "broken (2).mp4").read_bytes() == BROKEN
    assert "not a media file" in (box / "quarantine" / "broken (2).mp4.error.txt").read_text()
    assert os.readlink(box / "quarantine" / "broken.mp4") == str(trap) and os.listdir(trap) == []
    assert {name: os.readlink(box / name) for name in targets} == targets  # none moved
    assert stat.S_ISFIFO(os.lstat(box / "stream.mp4").st_mode)
    assert fingerprint(outside / "secret.mp4") == secret
    ledger = json.loads((out / LEDGER_NAME).read_text())["files"]
    assert [e["file"] for e in ledger.values()] == ["broken.mp4"]  # no link was hashed
    assert {p.name.rsplit("-", 1)[0] for p in out.iterdir() if p.is_dir()} <= {"broken"}

    rows = inbox_artifact_rows(state.state_details.flow_run_id)
    skipped = {row["file"]: row["note"] for row in rows if row["outcome"] == "skipped"}
    assert skipped == dict.fromkeys(sorted(targets), "symlink") | {
        "stream.mp4": "not a regular file: FIFO"
    }
    [row] = [row for row in rows if row["file"] == "broken.mp4"]
    assert row["outcome"] == "quarantined" and "not a media file" in row["note"]


@pytest.mark.usefixtures("prefect_api")
def test_an_inbox_whose_quarantine_is_a_link_refuses_the_run_in_one_line(tmp_path):
    box, outside, out = tmp_path / "inbox", tmp_path / "outside", tmp_path / "out"
    box.mkdir()
    outside.mkdir()
    (box / "broken.mp4").write_bytes(BROKEN)
    os.symlink(outside, box / "quarantine")

    with pytest.raises(QuarantineRefused) as refused:
        inbox(str(box), profile="cpu", output_dir=str(out), min_age_s=0)

    message = str(refused.value)
    assert "\n" not in message and f"{box / 'quarantine'} is a symlink" in message
    assert "remove the link" in message
    assert os.listdir(outside) == [] and (box / "broken.mp4").read_bytes() == BROKEN
    assert not (out / LEDGER_NAME).exists()  # nothing claimed


def inbox_artifact_rows(flow_run_id) -> list[dict]:
    """The rows of the table artifact an inbox run wrote."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import (
        ArtifactFilter,
        ArtifactFilterFlowRunId,
        ArtifactFilterKey,
    )

    with get_client(sync_client=True) as client:
        [artifact] = client.read_artifacts(
            artifact_filter=ArtifactFilter(
                flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id]),
                key=ArtifactFilterKey(any_=["inbox-cpu"]),
            )
        )
    data = artifact.data
    return json.loads(data) if isinstance(data, str) else data
