"""``xos-run``: start a job as the VO user a token names, with exactly that user's VO
groups, after checking the token and the node's policy.

Run by root (or a setuid-root launcher). The token must be valid for this node's
audience and its subject (the global id) must be a user of the snapshot who is not
locked; the user's groups are the
private group plus every VO group listing them, nothing inherited from the caller. The
node's policy names the VOs whose members may run jobs here (default: every VO the node
serves). The job gets a clean environment and starts in the user's home directory.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import xos_tokens

JOB_PATH = "/usr/local/bin:/usr/bin:/bin"


class RunRefused(Exception):
    """The job may not start: the message says why."""


@dataclass(frozen=True)
class Identity:
    name: str
    uid: int
    gid: int
    groups: tuple[int, ...]
    vos: tuple[str, ...]


def identity(snapshot: Mapping[str, Any], name: str) -> Identity:
    """The user ``name`` as the snapshot knows them; RunRefused for unknown or locked."""
    user = next((u for u in snapshot.get("users", []) if u.get("name") == name), None)
    if user is None:
        raise RunRefused(f"{name!r} is not a user of this node's VOs")
    if user.get("locked"):
        raise RunRefused(f"{name!r} has no active membership on this node")
    mine = [g for g in snapshot.get("groups", []) if name in g.get("members", ())]
    return Identity(name, int(user["uid"]), int(user["gid"]),
                    tuple(sorted(int(g["gid"]) for g in mine)),
                    tuple(sorted({str(g["vo"]) for g in mine})))


def check(token: str, snapshot: Mapping[str, Any], keys: xos_tokens.KeySet, *, node: str,
          issuer: str, allowed_vos: Sequence[str] | None = None) -> Identity:
    """The identity a job runs as, or RunRefused saying why not."""
    try:
        claims = xos_tokens.verify_access_token(token, keys=keys, issuer=issuer, audience=node)
    except xos_tokens.InvalidToken as error:
        raise RunRefused(f"the token is not valid here: {error}") from None
    # ``sub`` (the global id) decides: the service's tokens for a node carry no user name
    name = next((u["name"] for u in snapshot.get("users", []) if u.get("id") == claims.subject),
                None)
    if name is None:
        raise RunRefused("the token's subject is not a user of this node's VOs")
    if claims.preferred_username is not None and claims.preferred_username != name:
        raise RunRefused("the token's user name is not its subject's")
    who = identity(snapshot, name)
    allowed = set(allowed_vos) if allowed_vos is not None else set(snapshot.get("vos", []))
    if not allowed & set(who.vos):
        raise RunRefused(f"{who.name!r} is in no VO allowed to run jobs on this node")
    return who


def run(who: Identity, command: Sequence[str], *, home: str | None = None,
        extra_env: Mapping[str, str] | None = None) -> int:
    """Start ``command`` as ``who`` (uid, gid and exactly their groups); return its exit
    status. The environment is rebuilt, not inherited."""
    if not command:
        raise RunRefused("no command given")
    home = home or f"/home/{who.name}"
    env = {"PATH": JOB_PATH, "HOME": home, "USER": who.name, "LOGNAME": who.name,
           "XOS_VOS": ",".join(who.vos), **(extra_env or {})}
    cwd = home if os.path.isdir(home) else "/"
    completed = subprocess.run(list(command), user=who.uid, group=who.gid,  # noqa: S603
                               extra_groups=list(who.groups) or [who.gid], env=env, cwd=cwd,
                               check=False)
    return completed.returncode


def _load(state: Path) -> tuple[dict[str, Any], xos_tokens.KeySet, dict[str, Any],
                                list[str] | None]:
    from .store import SnapshotStore

    snapshot = SnapshotStore(state).load()
    if snapshot is None:
        raise RunRefused(f"no accounts in {state} yet (xos-node sync)")
    node = json.loads((state / "node.json").read_text())
    keys = xos_tokens.KeySet(json.loads((state / "jwks.json").read_text()))
    policy_file = state / "policy.json"
    allowed = json.loads(policy_file.read_text()).get("run_vos") if policy_file.exists() \
        else None
    return snapshot.to_json(), keys, node, allowed


def main(argv: Sequence[str] | None = None) -> int:
    """``xos-run [--state-dir D] -- COMMAND...`` with the token in ``XOS_TOKEN`` (never on
    the command line, where every user could read it)."""
    parser = argparse.ArgumentParser(prog="xos-run", description=__doc__.splitlines()[0])
    parser.add_argument("--state-dir", type=Path, default=Path("/var/lib/xos-node"))
    parser.add_argument("command", nargs=argparse.REMAINDER)
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    token = os.environ.get("XOS_TOKEN", "")
    try:
        if os.geteuid() != 0:
            raise RunRefused("xos-run must run as root (it switches to the job's user)")
        if not token:
            raise RunRefused("set XOS_TOKEN to an access token for this node")
        snapshot, keys, node, allowed = _load(args.state_dir)
        who = check(token, snapshot, keys, node=node["node"], issuer=node["issuer"],
                    allowed_vos=allowed)
        return run(who, command)
    except (RunRefused, OSError, ValueError, xos_tokens.TokenError) as error:
        print(f"xos-run: {error}", file=sys.stderr)
        return os.EX_NOPERM
