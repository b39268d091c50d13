"""The sync loop, driven step by step against a scripted service: what it asks, what it
saves and announces, and that nothing the service does makes it drop what it serves."""

from __future__ import annotations

import logging
import random
import threading
from pathlib import Path

import pytest
from node_fixtures import (
    NODE,
    REVISION,
    Reply,
    ScriptedSource,
    changes_answer,
    resync_answer,
    snapshot_answer,
    user,
)

from xos_node import BadAnswer, Refused, Snapshot, SnapshotStore, StoreError, SyncLoop, Unreachable
from xos_node.sync import CHANGES, FAILED, REFUSED, SNAPSHOT, UNCHANGED

DAVE = changes_answer(users=[user("dave", 200003)])


class Recorder:
    """An on_change that checks the snapshot was saved before it was announced."""

    def __init__(self, store: SnapshotStore) -> None:
        self.store = store
        self.seen: list[Snapshot] = []

    def __call__(self, snapshot: Snapshot) -> None:
        stored = self.store.load()
        assert stored is not None and stored.revision == snapshot.revision
        self.seen.append(snapshot)

    @property
    def revisions(self) -> list[int]:
        return [s.revision for s in self.seen]


@pytest.fixture
def store(tmp_path: Path) -> SnapshotStore:
    return SnapshotStore(tmp_path / "state")


@pytest.fixture
def recorder(store: SnapshotStore) -> Recorder:
    return Recorder(store)


def loop_for(source: ScriptedSource, store: SnapshotStore, on_change: Recorder,
             **options: float) -> SyncLoop:
    return SyncLoop(source, store, on_change, rng=random.Random(7), **options)  # type: ignore[arg-type]


def test_first_a_snapshot_then_changes(store: SnapshotStore, recorder: Recorder) -> None:
    source = ScriptedSource(
        snapshots=[snapshot_answer()],
        deltas=[changes_answer(users=[user("dave", 200003)],
                               members_added=[{"user": "dave", "group": "atlas"}]),
                changes_answer(since=REVISION + 1, revision=REVISION + 1)])
    loop = loop_for(source, store, recorder, interval=5)
    assert loop.snapshot is None
    first = loop.step()
    assert (first.outcome, first.revision, first.error) == (SNAPSHOT, REVISION, None)
    assert 4.9 < first.delay <= 5
    assert loop.step().outcome == CHANGES
    assert loop.snapshot is not None and "dave" in loop.snapshot.groups["atlas"].members
    assert loop.step().outcome == UNCHANGED
    assert source.asked == ["snapshot", f"changes since {REVISION}",
                            f"changes since {REVISION + 1}"]
    assert recorder.revisions == [REVISION, REVISION + 1]  # nothing announced for no change
    assert store.load() == loop.snapshot


def test_an_answer_that_only_moves_the_revision_is_not_rewritten(store: SnapshotStore,
                                                                 recorder: Recorder) -> None:
    source = ScriptedSource(snapshots=[snapshot_answer()],
                            deltas=[changes_answer(revision=REVISION + 40)])
    loop = loop_for(source, store, recorder)
    loop.step()
    assert loop.step().outcome == UNCHANGED
    assert loop.snapshot is not None and loop.snapshot.revision == REVISION + 40
    stored = store.load()
    assert stored is not None and stored.revision == REVISION  # the same view, not rewritten
    assert recorder.revisions == [REVISION]


def test_resync_required_takes_a_snapshot_in_the_same_step(store: SnapshotStore,
                                                          recorder: Recorder) -> None:
    source = ScriptedSource(snapshots=[snapshot_answer(), snapshot_answer(REVISION + 3)],
                            deltas=[resync_answer()])
    loop = loop_for(source, store, recorder)
    loop.step()
    result = loop.step()
    assert (result.outcome, result.revision) == (SNAPSHOT, REVISION + 3)
    assert source.asked == ["snapshot", f"changes since {REVISION}", "snapshot"]


@pytest.mark.parametrize("error", [
    Unreachable("cannot reach the VO service at https://vo.example: Connection refused"),
    Refused("the VO service refused node wn1.grid.example (HTTP 401): unknown key"),
    BadAnswer("https://vo.example/api/v1/... sent unreadable JSON"),
])
def test_failures_keep_the_snapshot_and_back_off(store: SnapshotStore, recorder: Recorder,
                                                 error: Exception,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    source = ScriptedSource(snapshots=[snapshot_answer()], deltas=[error] * 12)
    loop = loop_for(source, store, recorder, interval=2, max_backoff=60)
    loop.step()
    served = loop.snapshot
    delays = []
    with caplog.at_level(logging.WARNING, logger="xos_node"):
        for _ in range(12):
            result = loop.step()
            assert (result.outcome, result.revision) == (FAILED, REVISION)
            assert result.error == str(error)
            delays.append(result.delay)
    assert loop.snapshot is served and store.load() == served
    ceilings = [min(60, 2 * 2**n) for n in range(1, 13)]
    assert all(c / 2 <= d <= c for d, c in zip(delays, ceilings, strict=True))
    assert max(delays) <= 60 and delays[-1] >= 30  # grows, and stays bounded
    assert str(error) in caplog.text and "serving revision 10" in caplog.text


def test_success_after_failures_resets_the_backoff(store: SnapshotStore,
                                                   recorder: Recorder) -> None:
    script: list[Reply] = [Unreachable("down"), Unreachable("down"), Unreachable("down"), DAVE]
    source = ScriptedSource(deltas=script)
    store.save(Snapshot.from_json(snapshot_answer()))
    loop = loop_for(source, store, recorder, interval=1)
    for _ in range(3):
        assert loop.step().outcome == FAILED
    assert loop.failures == 3
    result = loop.step()
    assert result.outcome == CHANGES and result.delay <= 1 and loop.failures == 0


def test_a_refused_delta_keeps_the_snapshot_and_takes_a_fresh_one_next(
        store: SnapshotStore, recorder: Recorder) -> None:
    hostile = changes_answer(users=[user("root", 1000)],
                             members_added=[{"user": "mallory", "group": "atlas"}])
    source = ScriptedSource(snapshots=[snapshot_answer(), snapshot_answer(REVISION + 2)],
                            deltas=[hostile])
    loop = loop_for(source, store, recorder)
    loop.step()
    served = loop.snapshot
    result = loop.step()
    assert result.outcome == REFUSED and "mallory is not a user" in (result.error or "")
    assert loop.snapshot is served and "root" not in served.users  # type: ignore[union-attr]
    assert loop.step().outcome == SNAPSHOT
    assert source.asked[-1] == "snapshot"


def test_a_stale_answer_is_dropped_without_a_resync(store: SnapshotStore,
                                                    recorder: Recorder) -> None:
    source = ScriptedSource(snapshots=[snapshot_answer()],
                            deltas=[changes_answer(since=REVISION - 5, revision=REVISION - 1),
                                    DAVE])
    loop = loop_for(source, store, recorder)
    loop.step()
    assert loop.step().outcome == REFUSED
    assert loop.step().outcome == CHANGES
    assert source.asked.count("snapshot") == 1


def test_a_bad_snapshot_is_refused_and_nothing_is_served(store: SnapshotStore,
                                                         recorder: Recorder) -> None:
    bad = snapshot_answer()
    bad["users"][0]["name"] = "alice:x:0:0"
    source = ScriptedSource(snapshots=[bad, snapshot_answer(node="wn9.grid.example")])
    loop = loop_for(source, store, recorder)
    assert loop.step().outcome == REFUSED
    result = loop.step()
    assert result.outcome == REFUSED and "not for wn1.grid.example" in (result.error or "")
    assert loop.snapshot is None and store.load() is None and recorder.seen == []


def test_the_stored_snapshot_is_served_while_the_service_is_down(
        store: SnapshotStore, recorder: Recorder) -> None:
    store.save(Snapshot.from_json(snapshot_answer()))
    source = ScriptedSource(deltas=[Unreachable("down")])
    loop = loop_for(source, store, recorder)
    assert loop.snapshot is not None and loop.snapshot.revision == REVISION  # at once
    result = loop.step()
    assert (result.outcome, result.revision) == (FAILED, REVISION)
    assert recorder.revisions == [REVISION]  # announced before the service was asked
    assert source.asked == [f"changes since {REVISION}"]


def test_a_corrupt_store_is_set_aside_and_a_snapshot_taken(
        store: SnapshotStore, recorder: Recorder, caplog: pytest.LogCaptureFixture) -> None:
    store.save(Snapshot.from_json(snapshot_answer()))
    store.path.write_bytes(store.path.read_bytes()[:100])
    with caplog.at_level(logging.ERROR, logger="xos_node"):
        loop = loop_for(ScriptedSource(snapshots=[snapshot_answer(REVISION + 1)]), store,
                        recorder)
    assert loop.snapshot is None and "not complete JSON" in caplog.text
    assert (store.directory / "snapshot.json.corrupt").exists()
    assert loop.step().outcome == SNAPSHOT and store.load() == loop.snapshot


def test_a_stored_snapshot_of_another_node_is_ignored(store: SnapshotStore,
                                                      recorder: Recorder) -> None:
    store.save(Snapshot.from_json(snapshot_answer(node="wn9.grid.example")))
    loop = loop_for(ScriptedSource(snapshots=[snapshot_answer()]), store, recorder)
    assert loop.snapshot is None
    assert loop.step().outcome == SNAPSHOT and getattr(loop.snapshot, "node", None) == NODE


def test_a_snapshot_that_cannot_be_saved_still_serves_and_is_saved_later(
        store: SnapshotStore, monkeypatch: pytest.MonkeyPatch) -> None:
    seen: list[int] = []
    source = ScriptedSource(snapshots=[snapshot_answer()],
                            deltas=[changes_answer(users=[user("bob", 200001, locked=True)]),
                                    changes_answer(since=REVISION + 1, revision=REVISION + 1)])
    loop = SyncLoop(source, store, lambda s: seen.append(s.revision))
    loop.step()
    def disk_full(*args: object) -> None:
        raise StoreError("cannot write snapshot.json: No space left on device")

    with monkeypatch.context() as patched:  # neither a journal line nor a whole file
        patched.setattr(store, "save", disk_full)
        patched.setattr(store, "append", disk_full)
        result = loop.step()
    assert result.outcome == CHANGES and not result.saved
    assert loop.snapshot is not None and loop.snapshot.users["bob"].locked  # the revocation
    assert seen == [REVISION, REVISION + 1]
    assert loop.step().saved
    assert store.load() == loop.snapshot


def test_a_failing_on_change_does_not_stop_the_loop(store: SnapshotStore,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    def broken(snapshot: Snapshot) -> None:
        raise RuntimeError("consumer bug")

    source = ScriptedSource(snapshots=[snapshot_answer()], deltas=[DAVE])
    loop = SyncLoop(source, store, broken)
    with caplog.at_level(logging.ERROR, logger="xos_node"):
        assert loop.step().outcome == SNAPSHOT
        assert loop.step().outcome == CHANGES
    assert "on_change callback failed" in caplog.text


def test_run_steps_until_stopped(store: SnapshotStore) -> None:
    polled = threading.Event()

    class Source(ScriptedSource):
        def changes(self, since: int, wait: int = 0) -> dict[str, object]:
            polled.set()
            return changes_answer(revision=REVISION)

    loop = SyncLoop(Source(snapshots=[snapshot_answer()]), store, lambda s: None,
                    interval=0.01)
    stop = threading.Event()
    runner = threading.Thread(target=loop.run, args=(stop,), name="xos-node-sync-test")
    runner.start()
    try:
        assert polled.wait(10)
    finally:
        stop.set()
        runner.join(10)
    assert not runner.is_alive()
    assert loop.snapshot is not None and loop.snapshot.revision == REVISION


def test_run_survives_a_bug_in_a_step(store: SnapshotStore,
                                      caplog: pytest.LogCaptureFixture) -> None:
    stop = threading.Event()
    calls: list[str] = []

    class Buggy(ScriptedSource):
        def snapshot(self) -> dict[str, object]:
            calls.append("snapshot")
            if len(calls) >= 2:
                stop.set()
            raise KeyError("a bug")

    loop = SyncLoop(Buggy(), store, lambda s: None, interval=0.01, max_backoff=0.02)
    with caplog.at_level(logging.ERROR, logger="xos_node"):
        loop.run(stop)
    assert calls == ["snapshot", "snapshot"] and "unexpected failure" in caplog.text


def test_bad_timing_options_are_refused(store: SnapshotStore) -> None:
    with pytest.raises(ValueError, match="interval"):
        SyncLoop(ScriptedSource(), store, lambda s: None, interval=0)
    with pytest.raises(ValueError, match="interval"):
        SyncLoop(ScriptedSource(), store, lambda s: None, interval=10, max_backoff=5)
