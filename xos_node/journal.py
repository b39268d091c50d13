"""The snapshot's journal: the changes answers applied since the snapshot file was written.

Why: rewriting a 100,000-user snapshot file (16 MB of canonical JSON, checksummed,
fsynced) for every suspension would make a change cost the population. The agent appends
each changes answer it applied to ``snapshot.journal`` instead (one line, fsync: the
cost of the change) and rewrites the snapshot file only now and then (compaction), which
starts the journal afresh.

One line per answer, written by :func:`entry_bytes` and read back by :func:`read_entries`:

    {"base":"<sha256 of the snapshot file's body>","sha256":"<sha256 of C>","changes":C}

where C is the answer's canonical JSON. ``base`` binds the journal to one snapshot file:
entries for another (a journal left behind by a compaction that crashed before removing
it) are not used. A last line without its newline is an append cut short by a crash and
is dropped; any other damage refuses the journal whole (``CorruptSnapshot``).

Between two entries the revision may jump: the service's answers without changes for
this node move the revision on without being journalled (they change nothing here).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from typing import Any

from .errors import CorruptSnapshot

JOURNAL_NAME = "snapshot.journal"
_OPEN = b'{"base":"'
_SHA = b'","sha256":"'
_CHANGES = b'","changes":'
_DIGEST = 64  # hex characters of a SHA-256


def canonical(document: Mapping[str, Any]) -> bytes:
    """The one byte form that a checksum covers (sorted keys, ASCII)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"),
                      ensure_ascii=True).encode()


def entry_bytes(base: str, answer: Mapping[str, Any]) -> bytes:
    """One journal line for a changes answer applied to the snapshot file ``base``."""
    body = canonical(answer)
    return (_OPEN + base.encode() + _SHA + hashlib.sha256(body).hexdigest().encode()
            + _CHANGES + body + b"}\n")


def read_entries(data: bytes, base: str, where: object) -> list[dict[str, Any]]:
    """The answers journalled for the snapshot file ``base``, in order, each checked
    against its checksum; [] for a journal of another snapshot file."""
    lines = data.split(b"\n")
    lines.pop()  # after the last newline: nothing, or an append cut short by a crash
    entries: list[dict[str, Any]] = []
    sha_at = len(_OPEN) + _DIGEST
    body_at = sha_at + len(_SHA) + _DIGEST + len(_CHANGES)
    for number, line in enumerate(lines, 1):
        if not (line.startswith(_OPEN) and line[sha_at:sha_at + len(_SHA)] == _SHA
                and line[body_at - len(_CHANGES):body_at] == _CHANGES
                and line.endswith(b"}")):
            raise CorruptSnapshot(f"{where}: line {number} is not a journal entry")
        if line[len(_OPEN):sha_at] != base.encode():
            if number == 1 and not entries:
                return []  # the journal of an older snapshot file
            raise CorruptSnapshot(f"{where}: line {number} belongs to another snapshot file")
        body = line[body_at:-1]
        if hashlib.sha256(body).hexdigest().encode() != line[sha_at + len(_SHA):
                                                               body_at - len(_CHANGES)]:
            raise CorruptSnapshot(f"{where}: line {number} does not match its checksum")
        try:
            answer = json.loads(body)
        except (ValueError, RecursionError):
            raise CorruptSnapshot(f"{where}: line {number} is not JSON") from None
        if not isinstance(answer, dict):
            raise CorruptSnapshot(f"{where}: line {number} is not a changes answer")
        entries.append(answer)
    return entries
