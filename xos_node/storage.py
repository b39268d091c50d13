"""Shared storage laid out per VO and per group, so that Unix group membership, the
same on every node, decides who reaches which files.

``<root>/<vo>/<group>/...`` mirrors the VO paths: each directory is owned by root and
the group's gid, mode 2770 (setgid: files made inside keep the group; closed to
others). A subgroup's members are also members of every group above it, so they can
traverse the parents. Paths come from the snapshot and are checked component by
component; nothing is followed through a symbolic link.
"""

from __future__ import annotations

import os
import re
import stat
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

COMPONENT = re.compile(r"^[a-z][a-z0-9-]{0,30}$")
MODE = 0o2770


class StorageError(Exception):
    """The layout cannot be made safely (a bad path, a symbolic link, a foreign file)."""


@dataclass(frozen=True)
class Directory:
    path: Path
    gid: int
    created: bool


def _components(vo_path: str) -> list[str]:
    parts = vo_path.split("/")
    if len(parts) < 2 or parts[0] != "" or not all(COMPONENT.match(p) for p in parts[1:]):
        raise StorageError(f"refusing group path {vo_path[:80]!r}")
    return parts[1:]


def _ensure(path: Path, gid: int) -> bool:
    """Make ``path`` (whose parent exists and is ours) a root:gid 2770 directory."""
    created = False
    try:
        os.mkdir(path, 0o700)
        created = True
    except FileExistsError:
        pass
    info = os.lstat(path)
    if stat.S_ISLNK(info.st_mode) or not stat.S_ISDIR(info.st_mode):
        raise StorageError(f"{path} exists and is not a directory (a link is never followed)")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
    try:
        os.fchown(fd, 0, gid)
        os.fchmod(fd, MODE)
    finally:
        os.close(fd)
    return created


def lay_out(root: Path, groups: Iterable[Mapping[str, Any]]) -> list[Directory]:
    """Make (or repair) the directory of every group under ``root``; parents first."""
    root = Path(root)
    if not root.is_dir() or root.is_symlink():
        raise StorageError(f"{root} is not a directory")
    by_path = {str(g["path"]): int(g["gid"]) for g in groups}
    made: list[Directory] = []
    for vo_path in sorted(by_path, key=lambda p: (p.count("/"), p)):
        parts = _components(vo_path)
        parent = "/" + "/".join(parts[:-1]) if len(parts) > 1 else None
        if parent is not None and parent not in by_path:
            raise StorageError(f"{vo_path} has no parent group {parent} in the snapshot")
        target = root.joinpath(*parts)
        made.append(Directory(target, by_path[vo_path], _ensure(target, by_path[vo_path])))
    return made
