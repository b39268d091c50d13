"""The sync loop: keep the node's snapshot current, and keep serving it whatever happens.

Order of business, one ``step()`` at a time:

1. At start, the stored snapshot (if any) is announced through ``on_change`` before the
   service is asked anything, so the node resolves its users even when the VO service
   is down at boot.
2. No snapshot yet, or the service said ``resync_required``, or an answer was refused:
   take a full snapshot. Otherwise ask for the changes since our revision, long-polling
   (``wait``) so that the service answers as soon as something changes.
3. Each new snapshot is validated whole before use, saved atomically, swapped in, and
   only then announced through ``on_change``. A refused or failed answer changes
   nothing: the current snapshot keeps serving. An answer that only moves the revision
   on (changes in other VOs) moves it on in memory without rewriting the file: at the
   scale of DESIGN.md the revision moves every second, and the view did not change.
4. Failures (unreachable service, refused key, invalid answer) are logged with their
   reason and retried after a bounded, jittered exponential backoff; the jitter keeps
   100,000 nodes from hammering a service that just came back, all in the same second.

``step()`` never raises for anything the network, the service or the disk can do, and
returns what happened, so tests drive the loop deterministically; ``run()`` repeats it
until its stop event is set.
"""

from __future__ import annotations

import contextlib
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from .errors import (
    CorruptSnapshot,
    ResyncRequired,
    ServiceError,
    StaleAnswer,
    StoreError,
    SyncRefused,
)
from .model import DEFAULT_LIMITS, Limits, Snapshot, carries_changes
from .store import SnapshotStore

log = logging.getLogger(__name__)

INTERVAL = 2.0
WAIT = 25  # under the 30 s that proxies and load balancers commonly allow an idle answer
MAX_BACKOFF = 300.0

#: what one step did
SNAPSHOT, CHANGES, UNCHANGED, FAILED, REFUSED = (
    "snapshot", "changes", "unchanged", "failed", "refused")


class Source(Protocol):
    """What the loop needs of the service (``client.NodeClient`` in production)."""

    node: str

    def snapshot(self) -> dict[str, Any]: ...

    def changes(self, since: int, wait: int = 0) -> dict[str, Any]: ...


@dataclass(frozen=True)
class StepResult:
    """What one step did: ``outcome`` (one of the constants above), the revision served
    after it (None before any snapshot), the seconds until the next step, and the reason
    of a failure or refusal; ``saved`` is False when a new snapshot is served from
    memory but could not be written (the next step tries again)."""

    outcome: str
    revision: int | None
    delay: float
    error: str | None = None
    saved: bool = True


class SyncLoop:
    """Syncs ``client``'s node into ``store``; ``on_change(snapshot)`` after each save.

    ``snapshot`` is the view to serve right now (None until there is one); it is only
    ever replaced by a whole, validated successor, so readers need no lock.

    ``interval`` is the shortest time between the starts of two polls (a long-poll that
    waited longer is followed at once); ``wait`` is the long-poll's wait, 0 for none."""

    def __init__(self, client: Source, store: SnapshotStore,
                 on_change: Callable[[Snapshot], None], *, interval: float = INTERVAL,
                 max_backoff: float = MAX_BACKOFF, wait: int = 0,
                 limits: Limits = DEFAULT_LIMITS, rng: random.Random | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if interval <= 0 or max_backoff < interval:
            raise ValueError("need 0 < interval <= max_backoff")
        self.client, self.store, self.on_change = client, store, on_change
        self.interval, self.max_backoff, self.limits = interval, max_backoff, limits
        self.wait, self._clock = wait, clock
        self.failures = 0
        self._rng = rng or random.Random()  # noqa: S311 -- jitter, not a secret
        self._resync = False
        self._unsaved = False
        self._announced = False
        self.snapshot: Snapshot | None = self._load()

    def _load(self) -> Snapshot | None:
        try:
            stored = self.store.load()
        except CorruptSnapshot:
            # store.load logged why; keep the evidence and start from a fresh snapshot
            with contextlib.suppress(StoreError):
                moved = self.store.quarantine()
                log.error("moved the refused snapshot to %s", moved)
            return None
        except StoreError as error:
            log.error("cannot use the stored snapshot: %s", error.message)
            return None
        if stored is not None and stored.node != self.client.node:
            log.error("the stored snapshot is for node %s, not %s: ignoring it", stored.node,
                      self.client.node)
            return None
        if stored is not None:
            log.info("serving the stored snapshot of revision %d", stored.revision)
        return stored

    # -- one step ----------------------------------------------------------------------
    def step(self) -> StepResult:
        """Announce the stored snapshot (first step only), then sync once."""
        if not self._announced:
            self._announced = True
            if self.snapshot is not None:
                self._notify(self.snapshot)
        if self._unsaved and self.snapshot is not None:
            self._save(self.snapshot)
        started = self._clock()
        try:
            if self.snapshot is None or self._resync:
                outcome = self._take_snapshot()
            else:
                outcome = self._poll()
        except ServiceError as error:
            return self._failed(FAILED, error.message)
        except SyncRefused as error:
            if not isinstance(error, StaleAnswer):
                self._resync = True  # a fresh snapshot is checked whole; try that next
            return self._failed(REFUSED, f"refused the service's answer: {error.reason}")
        self.failures = 0
        delay = max(0.0, self.interval - (self._clock() - started))
        return StepResult(outcome, self._revision(), delay, saved=not self._unsaved)

    def _poll(self) -> str:
        current = self.snapshot
        assert current is not None
        answer = self.client.changes(current.revision, self.wait)
        try:
            successor = current.apply_changes(answer, self.limits)
        except ResyncRequired as signal:
            log.info("%s; taking a snapshot", signal.message)
            self._resync = True
            return self._take_snapshot()
        if successor is current:
            return UNCHANGED
        if not carries_changes(answer):
            self.snapshot = successor  # same view at a later revision: nothing to save
            return UNCHANGED
        self._install(successor, answer)
        return CHANGES

    def _take_snapshot(self) -> str:
        fresh = Snapshot.from_json(self.client.snapshot(), self.client.node, self.limits)
        previous = self.snapshot
        if previous is not None and fresh.revision < previous.revision:
            log.warning("the service's revision went back from %d to %d (a restored"
                        " database?); taking its snapshot", previous.revision, fresh.revision)
        self._resync = False
        self._install(fresh.keeping_departed(previous))
        return SNAPSHOT

    def _install(self, snapshot: Snapshot, answer: dict[str, Any] | None = None) -> None:
        """Save, swap, announce: in this order, so what is announced survives a crash.

        A changes ``answer`` is journalled (the store's cost follows the change); a
        snapshot is saved whole. A snapshot that cannot be saved (disk full) is still
        swapped in: serving a revocation from memory beats serving the stale file; the
        save is retried, whole."""
        self._save(snapshot, answer)
        self.snapshot = snapshot
        self._notify(snapshot)

    def _save(self, snapshot: Snapshot, answer: dict[str, Any] | None = None) -> None:
        try:
            if answer is not None and not self._unsaved:
                self.store.append(snapshot, answer)
            else:
                self.store.save(snapshot)
        except StoreError as error:
            self._unsaved = True
            log.error("cannot save the snapshot of revision %d: %s", snapshot.revision,
                      error.message)
        else:
            self._unsaved = False

    def _notify(self, snapshot: Snapshot) -> None:
        try:
            self.on_change(snapshot)
        except Exception:  # the consumer's bug must not stop the node's sync
            log.exception("the on_change callback failed for revision %d", snapshot.revision)

    def _failed(self, outcome: str, reason: str) -> StepResult:
        self.failures += 1
        delay = self.backoff()
        served = self._revision()
        log.warning("sync of node %s %s: %s; serving %s; next attempt in %.0f s",
                    self.client.node, "refused" if outcome == REFUSED else "failed", reason,
                    f"revision {served}" if served is not None else "nothing yet", delay)
        return StepResult(outcome, served, delay, error=reason, saved=not self._unsaved)

    def backoff(self) -> float:
        """interval x 2^failures, at most ``max_backoff``, jittered down to half of it."""
        ceiling = min(self.max_backoff, self.interval * 2.0 ** min(self.failures, 32))
        return ceiling / 2 + self._rng.uniform(0, ceiling / 2)

    def _revision(self) -> int | None:
        return self.snapshot.revision if self.snapshot is not None else None

    # -- forever -----------------------------------------------------------------------
    def run(self, stop: threading.Event) -> None:
        """Step until ``stop`` is set; returns within one wait of it being set."""
        while not stop.is_set():
            try:
                delay = self.step().delay
            except Exception:  # the last line of defence: a bug must not end the sync
                log.exception("unexpected failure in the sync loop")
                self.failures += 1
                delay = self.backoff()
            stop.wait(delay)
