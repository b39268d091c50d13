"""One watcher of the global revision per service process, for the nodes' long-polls.

Why: a long-polling node used to look at the database four times a second on its own,
so 100 waiting nodes cost the service half a core doing nothing, and the answers to a
change queued behind those looks. Now one thread per process looks (one cheap query,
and only while some node waits), and on each move notes which VOs the new revisions
touched; a waiting node is woken only when one of its VOs was touched (or when a
revision touched no VO: a node's VO set changed, which may concern any node), then
computes its answer once. Idle waiting costs nothing per node.

The watcher also ends its thread after a while with nobody waiting, so that nothing
outlives its use.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from typing import Any

from flask import Flask
from sqlalchemy import select

from ..db import db
from .models import AccountChange, Counter

log = logging.getLogger(__name__)

STEP = 0.25  # seconds between looks at the revision while a node waits
IDLE_EXIT = 10.0  # seconds without waiters before the thread ends
KEPT = 4096  # revision moves remembered; a waiter older than them simply looks again


class RevisionWatch:
    """Wakes long-polls when a revision touches their VOs; see the module docstring."""

    def __init__(self, app: Flask, step: float = STEP) -> None:
        self.app, self.step = app, step
        self._cond = threading.Condition()
        self._waiters = 0
        self._thread: threading.Thread | None = None
        self._closing = False
        self._revision: int | None = None  # the last revision seen
        self._floor = 0  # waiters that checked before this may have missed a move
        self._moves: deque[tuple[int, frozenset[int] | None]] = deque(maxlen=KEPT)

    def wait(self, checked: int, vo_ids: frozenset[int], timeout: float) -> bool:
        """Block until a revision after ``checked`` (the revision a node's answer was
        computed at) touched one of ``vo_ids``, or ``timeout`` seconds; True if woken
        by such a move (the caller then computes its answer again)."""
        deadline = time.monotonic() + timeout
        with self._cond:
            self._waiters += 1
            self._start()
            self._cond.notify_all()  # a watcher idling for a waiter looks again at once
            try:
                while not self._concerns(checked, vo_ids):
                    remaining = deadline - time.monotonic()
                    if remaining <= 0:
                        return False
                    self._cond.wait(remaining)
                return True
            finally:
                self._waiters -= 1

    def _concerns(self, checked: int, vo_ids: frozenset[int]) -> bool:
        if self._revision is None:
            return False  # the watcher has not looked yet
        if checked < self._floor:
            return True  # something may have moved before the watcher looked
        return any(end > checked and (vos is None or vos & vo_ids)
                   for end, vos in reversed(self._moves))

    def _start(self) -> None:
        if self._thread is None:
            self._revision = None
            self._thread = threading.Thread(target=self._run, name="xos-revision-watch",
                                            daemon=True)
            self._thread.start()

    def close(self) -> None:
        """End the thread now (the app is going away); a later wait starts a new one."""
        with self._cond:
            thread, self._closing = self._thread, True
            self._cond.notify_all()
        if thread is not None:
            thread.join(5)
        with self._cond:
            self._closing = False

    def _run(self) -> None:
        with self.app.app_context():
            while True:
                with self._cond:  # no looking while nobody waits
                    if not self._waiters and not self._closing:
                        self._cond.wait(IDLE_EXIT)
                    if not self._waiters or self._closing:
                        self._thread = None
                        self._cond.notify_all()
                        return
                try:
                    self._look()
                except Exception:  # a database hiccup: waiters time out, then look again
                    log.exception("cannot read the revision")
                finally:
                    db.session.remove()
                time.sleep(self.step)

    def _look(self) -> None:
        current = int(db.session.scalar(select(Counter.value).where(
            Counter.name == "revision")) or 0)
        with self._cond:
            last = self._revision
        if last is None:
            with self._cond:
                self._revision = self._floor = current
                self._moves.clear()
                self._cond.notify_all()
            return
        if current <= last:
            return
        rows = db.session.execute(select(AccountChange.revision, AccountChange.vo_id).where(
            AccountChange.revision > last, AccountChange.revision <= current).distinct()).all()
        revisions = {revision for revision, _ in rows}
        # a revision without account changes is a node's new VO set: wake every node
        vos = frozenset(vo for _, vo in rows) if len(revisions) == current - last else None
        with self._cond:
            self._revision = current
            self._moves.append((current, vos))
            self._cond.notify_all()


def revision_watch(app: Any) -> RevisionWatch:
    """The process's watcher for ``app`` (made on first use)."""
    watch = app.extensions.get("xos_revision_watch")
    if watch is None:
        watch = app.extensions.setdefault("xos_revision_watch", RevisionWatch(app))
    return watch  # type: ignore[no-any-return]
