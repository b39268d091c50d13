"""The snapshot store: atomic, durable, private, and refusing a damaged file whole."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import stat
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from node_fixtures import NODE, changes_answer, snapshot_answer, user

from xos_node import CorruptSnapshot, Snapshot, SnapshotStore, StoreError
from xos_node.store import FILE_NAME, canonical

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def snap() -> Snapshot:
    return Snapshot.from_json(snapshot_answer(), node=NODE)


@pytest.fixture
def newer(snap: Snapshot) -> Snapshot:
    return snap.apply_changes(changes_answer(users=[user("dave", 200003)]))


@pytest.fixture
def umask_zero() -> Iterator[None]:
    """Files must be private by how they are created, not thanks to the umask."""
    old = os.umask(0)
    try:
        yield
    finally:
        os.umask(old)


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def leftovers(directory: Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if p.name.endswith(".tmp"))


def test_save_then_load_gives_the_same_snapshot(tmp_path: Path, snap: Snapshot,
                                                umask_zero: None) -> None:
    store = SnapshotStore(tmp_path / "state" / "xos-node")
    assert store.load() is None  # nothing yet, and nothing created by looking
    assert not store.directory.exists()
    store.save(snap)
    assert store.load() == snap
    assert mode(store.directory) == 0o700 and mode(store.path) == 0o600
    assert leftovers(store.directory) == []
    document = json.loads(store.path.read_bytes())
    assert document["format"] == "xos-node-snapshot" and document["version"] == 1
    assert document["sha256"] == hashlib.sha256(canonical(document["snapshot"])).hexdigest()


def test_the_temporary_file_is_private_from_its_creation(tmp_path: Path, snap: Snapshot,
                                                         umask_zero: None,
                                                         monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    seen: list[tuple[str, int]] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        info = os.fstat(fd)
        if stat.S_ISREG(info.st_mode):
            seen.append((os.readlink(f"/proc/self/fd/{fd}"), stat.S_IMODE(info.st_mode)))
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    SnapshotStore(tmp_path).save(snap)
    assert len(seen) == 1
    name, created = seen[0]
    assert Path(name).parent == tmp_path and Path(name).name.endswith(".tmp")
    assert created == 0o600


def test_a_loose_directory_of_ours_is_tightened_on_save(tmp_path: Path, snap: Snapshot) -> None:
    tmp_path.chmod(0o755)
    SnapshotStore(tmp_path).save(snap)
    assert mode(tmp_path) == 0o700


def test_a_directory_others_may_write_is_not_read(tmp_path: Path, snap: Snapshot) -> None:
    store = SnapshotStore(tmp_path)
    store.save(snap)
    tmp_path.chmod(0o777)
    with pytest.raises(StoreError, match="writable by others"):
        store.load()


def test_a_symlinked_state_directory_is_refused(tmp_path: Path, snap: Snapshot) -> None:
    (tmp_path / "real").mkdir(mode=0o700)
    (tmp_path / "link").symlink_to(tmp_path / "real")
    with pytest.raises(StoreError, match="symlink"):
        SnapshotStore(tmp_path / "link").save(snap)


def test_a_failed_rename_leaves_the_old_file(tmp_path: Path, snap: Snapshot, newer: Snapshot,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path)
    store.save(snap)

    def no_space(*args: Any) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", no_space)
    with pytest.raises(StoreError, match="No space left on device"):
        store.save(newer)
    monkeypatch.undo()
    assert store.load() == snap
    assert leftovers(tmp_path) == []


def test_a_failed_fsync_leaves_the_old_file(tmp_path: Path, snap: Snapshot, newer: Snapshot,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    store = SnapshotStore(tmp_path)
    store.save(snap)

    def broken_disk(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(os, "fsync", broken_disk)
    with pytest.raises(StoreError, match="Input/output error"):
        store.save(newer)
    monkeypatch.undo()
    assert store.load() == snap and leftovers(tmp_path) == []


CRASH = """
import os, sys
sys.path.insert(0, sys.argv[1])
sys.path.insert(0, sys.argv[2])
from node_fixtures import snapshot_answer, user, changes_answer
from xos_node import Snapshot, SnapshotStore

snap = Snapshot.from_json(snapshot_answer()).apply_changes(
    changes_answer(users=[user("dave", 200003)]))
def crash(*args):
    os._exit(9)  # the process dies between the written temporary file and the rename
os.replace = crash
SnapshotStore(sys.argv[3]).save(snap)
"""


def test_a_crash_mid_write_leaves_the_old_file(tmp_path: Path, snap: Snapshot,
                                               newer: Snapshot) -> None:
    store = SnapshotStore(tmp_path)
    store.save(snap)
    done = subprocess.run([sys.executable, "-c", CRASH, str(ROOT), str(Path(__file__).parent),
                           str(tmp_path)], capture_output=True, timeout=60, check=False)
    assert done.returncode == 9, done.stderr.decode()
    assert len(leftovers(tmp_path)) == 1  # the dead writer's file, complete but never renamed
    assert store.load() == snap
    store.save(newer)  # the next writer clears what the crash left
    assert leftovers(tmp_path) == [] and store.load() == newer


def _damage(store: SnapshotStore, how: str) -> None:
    data = store.path.read_bytes()
    if how == "truncated":
        store.path.write_bytes(data[:len(data) // 2])
    elif how == "empty":
        store.path.write_bytes(b"")
    elif how == "one digit changed":
        store.path.write_bytes(data.replace(b'"uid":200001', b'"uid":200009'))
    elif how == "not ours":
        store.path.write_bytes(b'{"users": []}')
    elif how == "binary garbage":
        store.path.write_bytes(os.urandom(256))
    elif how == "newer format":
        document = json.loads(data)
        document["version"] = 2
        store.path.write_text(json.dumps(document))
    elif how == "invalid with a matching checksum":
        document = json.loads(data)
        document["snapshot"]["users"][0]["name"] = "ali:ce"
        document["sha256"] = hashlib.sha256(canonical(document["snapshot"])).hexdigest()
        store.path.write_text(json.dumps(document))


@pytest.mark.parametrize("how, message", [
    ("truncated", "not complete JSON"),
    ("empty", "not complete JSON"),
    ("binary garbage", "not complete JSON"),
    ("one digit changed", "does not match its checksum"),
    ("not ours", "not an xos-node snapshot file"),
    ("newer format", "format version 2"),
    ("invalid with a matching checksum", "invalid snapshot: .*POSIX-safe"),
])
def test_a_damaged_file_is_refused_whole_and_reported(tmp_path: Path, snap: Snapshot, how: str,
                                                      message: str,
                                                      caplog: pytest.LogCaptureFixture) -> None:
    store = SnapshotStore(tmp_path)
    store.save(snap)
    _damage(store, how)
    with caplog.at_level(logging.ERROR, logger="xos_node"), \
            pytest.raises(CorruptSnapshot, match=message):
        store.load()
    assert any("refusing the stored snapshot" in r.getMessage() for r in caplog.records)


def test_quarantine_moves_a_refused_file_aside(tmp_path: Path, snap: Snapshot) -> None:
    store = SnapshotStore(tmp_path)
    store.save(snap)
    _damage(store, "truncated")
    moved = store.quarantine()
    assert moved == tmp_path / (FILE_NAME + ".corrupt") and moved.exists()
    assert store.load() is None and store.quarantine() is None
    store.save(snap)
    assert store.load() == snap


# -- the journal: a change costs a line, not a rewrite -------------------------------------
def test_changes_are_journalled_and_replayed(tmp_path: Path, snap: Snapshot) -> None:
    store = SnapshotStore(tmp_path / "state")
    store.save(snap)
    written = store.path.read_bytes()
    suspend = changes_answer(users=[user("bob", 200001, locked=True)])
    first = snap.apply_changes(suspend)
    store.append(first, suspend)
    # answers without changes move the revision on and are not journalled: a gap
    quiet = changes_answer(since=first.revision, revision=first.revision + 5)
    moved = first.apply_changes(quiet)
    join = changes_answer(since=moved.revision, revision=moved.revision + 1,
                          users=[user("dave", 200003)])
    last = moved.apply_changes(join)
    store.append(last, join)
    assert store.path.read_bytes() == written  # the snapshot file was not rewritten
    assert len(store.journal.read_bytes().splitlines()) == 2
    assert mode(store.journal) == 0o600
    loaded = SnapshotStore(tmp_path / "state").load()
    assert loaded == last and loaded is not None and loaded.users["bob"].locked


def test_the_journal_is_compacted_into_a_whole_save(tmp_path: Path, snap: Snapshot) -> None:
    store = SnapshotStore(tmp_path / "state", compact_at=1)  # every answer compacts
    store.save(snap)
    answer = changes_answer(users=[user("dave", 200003)])
    newer = snap.apply_changes(answer)
    store.append(newer, answer)
    assert not store.journal.exists()
    assert json.loads(store.path.read_text())["snapshot"]["revision"] == newer.revision
    assert SnapshotStore(tmp_path / "state").load() == newer


def _journalled(tmp_path: Path, snap: Snapshot) -> tuple[SnapshotStore, Snapshot]:
    """A stored ``snap`` and, journalled after it, bob's suspension."""
    store = SnapshotStore(tmp_path / "state")
    store.save(snap)
    answer = changes_answer(users=[user("bob", 200001, locked=True)])
    newer = snap.apply_changes(answer)
    store.append(newer, answer)
    return store, newer


def test_a_torn_last_line_is_dropped_and_damage_refused(tmp_path: Path,
                                                        snap: Snapshot) -> None:
    store, newer = _journalled(tmp_path, snap)
    line = store.journal.read_bytes()
    store.journal.write_bytes(line + line[:40])  # a crash in the middle of an append
    assert SnapshotStore(tmp_path / "state").load() == newer
    store.journal.write_bytes(line.replace(b'"locked":true', b'"locked":false'))
    with pytest.raises(CorruptSnapshot, match="does not match its checksum"):
        SnapshotStore(tmp_path / "state").load()
    store.journal.write_bytes(line + line)  # the same answer twice: a replay
    with pytest.raises(CorruptSnapshot, match="entry 2 does not apply"):
        SnapshotStore(tmp_path / "state").load()


def test_a_journal_left_by_a_crashed_compaction_is_not_used(tmp_path: Path,
                                                            snap: Snapshot) -> None:
    store, newer = _journalled(tmp_path, snap)
    stale = store.journal.read_bytes()
    store.save(newer)  # compaction ...
    store.journal.write_bytes(stale)  # ... that crashed before removing the old journal
    assert SnapshotStore(tmp_path / "state").load() == newer
