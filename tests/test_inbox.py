"""The inbox flow: each new file once, by content; failures to quarantine with a note."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest
from test_store_faults import can_mount, mount

from conftest import SAMPLE
from flows.inbox.files import LEDGER_NAME, InboxBusy, Ledger, locked_ledger, pending_files
from flows.inbox.flow import inbox
from profiles import load_profile
from voxflow.errors import BadInput, ModelNotWarmed, OutputFull


def test_pending_files_skip_hidden_fresh_and_duplicate_content(tmp_path):
    (tmp_path / "a.wav").write_bytes(b"one")
    (tmp_path / "b.wav").write_bytes(b"one")  # same content as a.wav
    (tmp_path / "c.wav").write_bytes(b"two")
    (tmp_path / ".partial.wav").write_bytes(b"three")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "d.wav").write_bytes(b"four")

    found = pending_files(tmp_path, Ledger(tmp_path / LEDGER_NAME, {}))
    assert [f.path.name for f in found] == ["a.wav", "c.wav"]
    assert pending_files(tmp_path, Ledger(tmp_path / LEDGER_NAME, {}), min_age_s=3600) == []


def test_ledger_is_rewritten_whole_and_marks_done_content(tmp_path):
    ledger = Ledger(tmp_path / "out" / LEDGER_NAME, {})
    (tmp_path / "a.wav").write_bytes(b"one")
    [item] = pending_files(tmp_path, ledger)
    ledger.record(item, "done", outputs={})

    reread = Ledger.load(ledger.path)
    assert reread.is_done(item.sha256)
    assert pending_files(tmp_path, reread) == []
    assert [p.name for p in ledger.path.parent.iterdir()] == [LEDGER_NAME]  # no temp files left


def test_a_ledger_locked_too_long_names_the_lock_to_remove(tmp_path):
    with locked_ledger(tmp_path / LEDGER_NAME), pytest.raises(InboxBusy, match="ledger.json.lock"):
        with locked_ledger(tmp_path / LEDGER_NAME, timeout=0.1):
            pass


def test_unreadable_ledger_names_the_file(tmp_path):
    (tmp_path / LEDGER_NAME).write_text("{not json")
    with pytest.raises(ValueError, match=LEDGER_NAME):
        Ledger.load(tmp_path / LEDGER_NAME)


@pytest.mark.usefixtures("prefect_api")
def test_inbox_transcribes_new_files_once_and_quarantines_failures(warm_store, tmp_path):
    box, out = tmp_path / "inbox", tmp_path / "out"
    box.mkdir()
    shutil.copy(SAMPLE, box / "talk.mp4")
    shutil.copy(SAMPLE, box / "talk-copy.mp4")  # same bytes: done once
    (box / "broken.mp4").write_bytes(b"this is not a video")

    ended = inbox(str(box), profile="cpu", output_dir=str(out), store=warm_store.root,
                  min_age_s=0, return_state=True)  # fmt: skip
    first = ended.result()

    assert first == {"done": ["talk-copy.mp4"], "quarantined": ["broken.mp4"], "queued": []}
    # The runs list tells it from a run that did every file: its state says what it moved.
    assert ended.is_completed() and ended.name == "Quarantined"
    assert "1 file(s) quarantined: broken.mp4" in ended.message
    assert not (box / "broken.mp4").exists()
    note = (box / "quarantine" / "broken.mp4.error.txt").read_text()
    assert (box / "quarantine" / "broken.mp4").exists() and "not a media file" in note
    ledger = json.loads((out / LEDGER_NAME).read_text())["files"]
    assert sorted(e["status"] for e in ledger.values()) == ["done", "quarantined"]
    assert any(Path(p).exists() for e in ledger.values() for p in e.get("outputs", {}).values())

    (box / "later.mp4").write_bytes(SAMPLE.read_bytes())  # a known content under a new name
    again = inbox(str(box), profile="cpu", output_dir=str(out), store=warm_store.root,
                  min_age_s=0, return_state=True)  # fmt: skip
    assert again.result() == {"done": [], "quarantined": [], "queued": []}
    assert again.name == "Completed"  # nothing moved


@pytest.mark.usefixtures("prefect_api")
def test_inbox_on_a_cold_volume_fails_and_leaves_the_files(tmp_path):
    box = tmp_path / "inbox"
    box.mkdir()
    shutil.copy(SAMPLE, box / "talk.mp4")

    with pytest.raises(ModelNotWarmed):
        inbox(
            str(box),
            profile="cpu",
            output_dir=str(tmp_path / "out"),
            store=str(tmp_path / "cold"),
            min_age_s=0,
        )
    assert (box / "talk.mp4").exists() and not (box / "quarantine").exists()


def test_only_media_files_are_candidates(tmp_path):
    box = tmp_path / "inbox"
    box.mkdir()
    for name in ("notes.txt", "talk.mp4.part", "README", "cover.jpg", "talk.MP4", "voice.opus"):
        (box / name).write_bytes(name.encode())
    ledger = Ledger(tmp_path / LEDGER_NAME, {})

    assert [f.path.name for f in pending_files(box, ledger)] == ["talk.MP4", "voice.opus"]


@pytest.mark.usefixtures("prefect_api")
def test_a_full_output_disk_fails_the_run_and_leaves_the_file_in_the_inbox(warm_store, tmp_path):
    if not can_mount(tmp_path):
        pytest.skip("mount is not permitted here")
    box, out = tmp_path / "inbox", tmp_path / "out"
    box.mkdir()
    out.mkdir()
    shutil.copy(SAMPLE, box / "talk.mp4")
    mount("-t", "tmpfs", "-o", "size=300k", "tmpfs", str(out))  # less than the 27 s of audio
    try:
        with pytest.raises(OutputFull):
            inbox(str(box), profile="cpu", output_dir=str(out), store=warm_store.root, min_age_s=0)
        assert (box / "talk.mp4").exists() and not (box / "quarantine").exists()

        mount("-o", "remount,size=20m", str(out))  # room again: the next run does the file
        done = inbox(
            str(box), profile="cpu", output_dir=str(out), store=warm_store.root, min_age_s=0
        )
        assert done == {"done": ["talk.mp4"], "quarantined": [], "queued": []}
    finally:
        subprocess.run(["umount", str(out)], check=True)


@pytest.mark.usefixtures("prefect_api")
def test_a_batch_loads_each_model_once_for_all_its_files_and_releases_them(warm_store, tmp_path):
    from tasks.registry import POOL

    box, out = tmp_path / "inbox", tmp_path / "out"
    box.mkdir()
    for i, suffix in enumerate((".m4a", ".wav", ".mp3")):  # three contents, three containers
        subprocess.run(
            ["ffmpeg", "-v", "error", "-ss", str(3 * i), "-t", "6", "-i", str(SAMPLE), "-vn",
             str(box / f"part {i}{suffix}")],
            check=True, timeout=60,
        )  # fmt: skip
    POOL.release()  # whatever earlier tests of this process left loaded
    before = len(POOL.loads)

    done = inbox(
        str(box), profile="cpu", output_dir=str(out), store=warm_store.root, min_age_s=0,
        batch_size=3,
    )  # fmt: skip

    assert len(done["done"]) == 3
    loaded = POOL.loads[before:]
    model_stages = [s.stage for s in load_profile("cpu").enabled_stages() if s.model]
    assert sorted(name.split(":")[0] for name in loaded) == sorted(model_stages)
    assert len(POOL) == 0  # released when the batch ended


@pytest.mark.usefixtures("prefect_api")
def test_bad_batch_settings_are_refused_before_any_file_is_claimed(tmp_path):
    (tmp_path / "talk.mp4").write_bytes(SAMPLE.read_bytes())
    with pytest.raises(BadInput, match="batch_size >= 1"):
        inbox(str(tmp_path), profile="cpu", output_dir=str(tmp_path / "out"), batch_size=0)
    assert not (tmp_path / "out" / LEDGER_NAME).exists()
