"""Benchmark of PAM authentication (issue 5): a VO user's token login through the shipped
XOS snippets next to a local user's password login through pam_unix, in the same run, on
one private node.

    .venv/bin/python bench/bench_pam.py            # as root; about 9 minutes
    .venv/bin/python bench/bench_pam.py --quick    # fewer calls, under 3 minutes
    .venv/bin/python bench/bench_pam.py --rev worktree   # the files as they are, not HEAD

The code measured is ``pam_module``, ``xos_node``, ``nss_plugin``, ``xos_tokens`` and
``ca`` of commit ``--rev`` (default HEAD), exported with ``git archive`` (bench/frozen.py)
into a folder under /var/tmp (the node's private /tmp would hide one under /tmp). The node
is the PAM tests' (tests/pam/pam_fixtures.py ``pam_node``): a NodeNamespace whose private /etc/pam.d
holds the shipped ``xos-auth``, ``xos-account`` and ``xos-session`` snippets and the
shipped sshd example as service ``xos-test``; alice, the VO user, resolves through NSS
(userdb drop-ins) and is not in /etc/passwd. The helper pam_exec runs is a copy of the
console script pip installs as ``xos-pam`` (``#!<venv python>``, ``entry()``), with the
exported code first on sys.path and ``XOS_NODE_STATE`` set, since pam_exec passes no
environment but PAM's; its stderr (one line per run) is counted to prove that every call
went through the helper as many times as expected.

Inside the node, a small driver run by the virtualenv's python (which has python-pam) times
each call with ``time.perf_counter_ns``, after 5 untimed warm-up calls, 200 calls or 100 s
per row, whichever ends first (the 100,000-user python-pam row ends by time):

- **python-pam** ``pam.pam().authenticate(user, secret, service=...)``: pam_start,
  pam_authenticate, pam_acct_mgmt, pam_setcred, pam_end in the driver's process, i.e. what
  an application does; for XOS the helper runs twice (auth, then account).
- **pamtester** ``pamtester SERVICE USER authenticate``, the secret on stdin: wall time of
  the whole process, auth stage only. A pam_permit-only service gives pamtester's own cost
  (process, PAM set-up), shown as the floor.

The cases:

(a) XOS: alice types a valid access token (``token_for``: compact, ES256, audience this
    node) as her password, service ``xos-test`` (auth: ``@include xos-auth``, i.e.
    pam_localuser then pam_exec of the helper, which verifies the token offline against
    the node's JWKS and snapshot; account: pam_nologin, ``@include xos-account``).
(b) pam_unix: a local user (``add_local_user``) with a password hash in the node's private
    /etc/shadow made the way this system makes new ones: yescrypt at the default cost
    (Debian 12's common-password says ``pam_unix.so obscure yescrypt``), with ``mkpasswd
    -m yescrypt`` when installed, else libxcrypt's ``crypt_gensalt("$y$")`` + ``crypt``
    through ctypes, else ``openssl passwd -6`` (sha512crypt; the report says which).
    Service ``bench-unix`` = ``@include common-auth`` + ``@include common-account``: the
    stock Debian pam_unix stacks. The same user through ``xos-test`` is timed too (a node
    with XOS installed: pam_localuser steers local users past the helper to pam_unix).
(c) The snapshot's size: without the agent the helper loads the whole snapshot at every
    run, so (a) runs with a snapshot of 1,000 and of 100,000 users (``snapshot_doc`` of
    generated ``user_entry`` users plus alice, one VO group listing them all), written
    as the node agent stores it (``file_bytes(canonical(...))``: checksummed store file).
(d) The agent running: ``load_state(directory, user)`` asks the agent first, over its
    root-owned userdb socket (``io.xos.Node.GetLoginState``, one lookup in its memory),
    and reads the files only when it cannot. For each size, after the rows of (a), the
    bench starts ``python -m nss_plugin --snapshot <the state's snapshot.json>
    --socket-dir /run/systemd/userdb --poll 0`` inside the node (the helper's interpreter
    and exported code; /run/systemd/userdb is a root-owned 0755 folder bound there), checks
    from inside that the socket is root's in a directory only root can write (else the
    helper would silently read the files), and times (a) again. The account stage logs
    where its answer came from, "may log in (agent at revision N)" or "(snapshot at
    revision N)": every python-pam call is checked for the right one. The agent is
    stopped (its socket gone) before the next size's file rows. With the agent's socket
    in /run/systemd/userdb, nss-systemd asks it too (as on a real node).

Breakdown of the helper, each sample a fresh process started by the driver (as pam_exec
starts one): ``python -I -S -c pass`` (bare interpreter), ``python -c pass`` (the
interpreter with the virtualenv's site and .pth files, as the console script starts), the
helper alone (``xos-pam auth`` with the PAM variables and the token on stdin, no PAM), and a
probe process that does what ``xos-pam auth`` does while timing its phases in-process:
imports (``pam_module.cli`` and all it pulls in), ``load_state`` (read, checksum, JSON
parse, user validation; with the agent: its one Varlink call) and the token check
(``account_user`` + ``check_token``); wall − in-process = interpreter start-up and exit.
The helper alone and the probe run with and without the agent. A second probe times only the read +
checksum + parse (``read_document``), so load_state − it = validation. ``-X importtime``
(five runs, medians) names the heaviest imports.

Every measurement waits (at most 180 s) for a quiet machine first (measure.wait_quiet) and
records the machine's busy % while it ran (the driver's warm-up included; one busy core of
two, the run's own serial work, is 50 %). Everything
started is stopped, the node's mounts and temporary folders go with it (also on Ctrl-C and
SIGTERM). Figures go to stdout and to ``bench/results/pam-<time>.{json,md}``.
"""

from __future__ import annotations

import argparse
import ctypes
import datetime as dt
import json
import math
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import metadata
from pathlib import Path
from typing import Any

import frozen
from measure import Stats, busy_since, cpu_counters, machine_basics, save_results, wait_quiet

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
#: the PAM helper and everything it imports (xos_node imports ca; asking the agent imports
#: nss_plugin's Varlink client), and the agent's userdb server (nss_plugin)
frozen.PACKAGES = (*frozen.PACKAGES, "pam_module", "xos_node",  # type: ignore[assignment]
                   "nss_plugin")
FROZEN_DIR = "/var/tmp"  # visible inside the node (its /var is an overlay of the host's)
SIZES = (1000, 100_000)
AGENT_DIR = "/run/systemd/userdb"  # inside the node: where pam_module.state asks the agent
AGENT_SERVICE = "io.xos.Accounts"  # pam_module.state.AGENT_SOCKET's name
UID0 = 300_000  # generated users' uids (alice is 200001)
LOCAL_USER, LOCAL_UID = "localbench", 1500
LOCAL_PASSWORD = "local bench password 4711"
UNIX_SERVICE, PERMIT_SERVICE = "bench-unix", "bench-permit"
PAM_SERVICES = {
    UNIX_SERVICE: "# the stock Debian pam_unix stacks\n@include common-auth\n"
                  "@include common-account\n",
    PERMIT_SERVICE: "# the floor: PAM itself, no work\nauth required pam_permit.so\n"
                    "account required pam_permit.so\n",
}

# The console script pip writes for ``xos-pam = pam_module.cli:entry``, on the exported
# code, with the state directory pam_exec cannot pass and stderr kept for counting.
HELPER = """#!{python}
import os
import sys
sys.path.insert(0, {code!r})
os.environ.setdefault("XOS_NODE_STATE", {state!r})
sys.stderr = open({log!r}, "a")
from pam_module.cli import entry
if __name__ == "__main__":
    sys.exit(entry())
"""

# The driver, run inside the node by the virtualenv's python (-I): one measurement, the
# spec on stdin, the samples (ns) on stdout. Bounded by a count and a time budget.
INSIDE = r"""
import json, subprocess, sys, time
spec = json.loads(sys.stdin.read())
if spec["kind"] == "pam":
    import pam
    p = pam.pam()
    def once():
        if not p.authenticate(spec["user"], spec["secret"], service=spec["service"]):
            sys.exit(f"python-pam refused {spec['user']}: {p.code} {p.reason}")
else:
    data = spec["input"].encode()
    def once():
        r = subprocess.run(spec["argv"], input=data, env=spec["env"], capture_output=True)
        if r.returncode != 0:
            sys.exit(f"{spec['argv']} exited {r.returncode}: {r.stderr.decode()[-400:]}")
        return r.stdout
for _ in range(spec["warmup"]):
    once()
out, probe = [], []
deadline = time.perf_counter() + spec["seconds"]
for i in range(spec["calls"]):
    if i >= 10 and time.perf_counter() > deadline:
        break
    t = time.perf_counter_ns()
    answer = once()
    out.append(time.perf_counter_ns() - t)
    if spec.get("probe"):
        probe.append(json.loads(answer))
print(json.dumps({"ns": out, "probe": probe}))
"""

# What ``xos-pam auth`` does, its phases timed in-process. argv: code, state dir, mode
# ("auth": load_state from the files + token check; "agent": load_state asking the running
# agent for alice, as the helper does, + token check; "parse": read + read_document only);
# token on stdin.
PROBE = r"""
import time
t0 = time.perf_counter_ns()
import sys
sys.path.insert(0, sys.argv[1])
from pam_module.cli import main
from pam_module.checks import account_user, check_token, read_secret
from pam_module.state import load_state
from xos_node.store import read_document
t1 = time.perf_counter_ns()
directory, mode = sys.argv[2], sys.argv[3]
if mode in ("auth", "agent"):
    state = load_state(directory, "alice" if mode == "agent" else None)
    t2 = time.perf_counter_ns()
    if state.source != ("agent" if mode == "agent" else "snapshot"):
        sys.exit(f"load_state read from {state.source!r} in mode {mode!r}")
    check_token(state, account_user(state, "alice"), read_secret(sys.stdin.buffer))
else:
    with open(directory + "/snapshot.json", "rb") as f:
        read_document(f.read(), "snapshot.json")
    t2 = time.perf_counter_ns()
t3 = time.perf_counter_ns()
import json
print(json.dumps({"imports": t1 - t0, "load": t2 - t1, "check": t3 - t2, "inside": t3 - t0}))
"""


# -- the node -------------------------------------------------------------------------------
def local_hash(password: str) -> tuple[str, str]:
    """A hash of ``password`` as this system makes new ones, and how it was made."""
    mkpasswd = shutil.which("mkpasswd")
    if mkpasswd:
        made = subprocess.run([mkpasswd, "-m", "yescrypt", "--stdin"], input=password,
                              capture_output=True, text=True)
        if made.returncode == 0 and made.stdout.startswith("$y$"):
            return made.stdout.strip(), "yescrypt, default cost (mkpasswd -m yescrypt)"
    try:
        lib = ctypes.CDLL("libcrypt.so.1")
        lib.crypt_gensalt.restype = ctypes.c_char_p
        lib.crypt_gensalt.argtypes = [ctypes.c_char_p, ctypes.c_ulong, ctypes.c_char_p,
                                      ctypes.c_int]
        lib.crypt.restype = ctypes.c_char_p
        lib.crypt.argtypes = [ctypes.c_char_p, ctypes.c_char_p]
        setting = lib.crypt_gensalt(b"$y$", 0, None, 0)  # count 0: the default cost
        hashed = lib.crypt(password.encode(), setting) if setting else None
        if hashed and hashed.startswith(b"$y$"):
            return hashed.decode(), ("yescrypt, default cost (libxcrypt crypt_gensalt"
                                     " \"$y$\" + crypt via ctypes; mkpasswd not installed)")
    except (OSError, AttributeError):
        pass
    made = subprocess.run(["openssl", "passwd", "-6", "-stdin"], input=password,
                          capture_output=True, text=True, check=True)
    return made.stdout.strip(), "sha512crypt (openssl passwd -6): no yescrypt maker here"


def set_shadow_hash(ns: Any, user: str, hashed: str) -> None:
    """Put ``hashed`` in ``user``'s line of the node's private /etc/shadow (as the PAM
    fixtures' set_local_password does, with a hash made here)."""
    fields = [line.split(":") for line in ns.read_etc("shadow").splitlines()]
    if not any(f[0] == user for f in fields):
        raise ValueError(f"{user} has no shadow entry on the node")
    text = "\n".join(":".join([f[0], hashed, *f[2:]]) if f[0] == user else ":".join(f)
                     for f in fields) + "\n"
    copy = ns.write_etc("shadow", text, 0o640)
    os.chown(copy, 0, os.stat("/etc/shadow").st_gid)


def snapshot_for(n: int) -> dict[str, Any]:
    """The snapshot document of ``n`` users: alice among n - 1 generated ones."""
    from pam_fixtures import ALICE, snapshot_doc, user_entry

    users = [user_entry(f"u{i:07d}", UID0 + i) for i in range(n - 1)]
    users.insert(len(users) // 2, dict(ALICE))
    return snapshot_doc(users)


def install_snapshot(state: Path, keys: list[Any], n: int) -> int:
    """Write the node's state for ``n`` users, the snapshot as the agent stores it; the
    snapshot file's size."""
    from pam_fixtures import write_state

    from pam_module import load_state
    from xos_node.store import canonical, file_bytes

    document = snapshot_for(n)
    write_state(state, keys=keys, snapshot=document)
    data = file_bytes(canonical(document))
    (state / "snapshot.json").write_bytes(data)  # same file: root, 0644
    loaded = load_state(state)
    assert len(loaded.users) == n and "alice" in loaded.users, "snapshot not as written"
    return len(data)


# -- the agent --------------------------------------------------------------------------------
def agent_folder(node: Any) -> Path:
    """A root-owned 0755 folder of the node's temp area bound over /run/systemd/userdb
    inside (once per node): where the agent makes its socket, as pam_module.state wants
    it (a socket root made, in a directory only root can write)."""
    folder = node.ns.tmp / "agent-userdb"
    folder.mkdir(mode=0o755)
    folder.chmod(0o755)
    os.chown(folder, 0, 0)
    node.ns.bind_dir(folder, AGENT_DIR)
    return folder


@contextmanager
def agent_running(node: Any, folder: Path, python: str, code: str) -> Iterator[str]:
    """``python -m nss_plugin --snapshot <the state's store file> --socket-dir
    /run/systemd/userdb --poll 0`` inside the node, on the exported code (the helper's
    interpreter and code): the userdb server that also answers the helper's
    ``io.xos.Node.GetLoginState``. Yields its "serving ..." log line; stopped (and its
    socket gone) when the block ends."""
    log_path = node.ns.tmp / "agent.log"
    socket = folder / AGENT_SERVICE
    if socket.exists():
        raise RuntimeError(f"{socket} is left from an earlier agent")
    with log_path.open("ab") as log:
        proc = node.ns.popen([python, "-m", "nss_plugin", "--snapshot",
                              str(node.state / "snapshot.json"), "--socket-dir", AGENT_DIR,
                              "--poll", "0"],
                             env={"PYTHONPATH": code, "PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                             stdout=log, stderr=log)
    try:
        deadline = time.monotonic() + 300
        while not socket.exists():
            if proc.poll() is not None:
                raise RuntimeError(f"the agent exited ({proc.returncode}):"
                                   f" {log_path.read_text()[-800:]}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"no agent socket after 300 s: {log_path.read_text()[-800:]}")
            time.sleep(0.05)
        # what pam_module.state checks, seen from inside the node
        seen = node.ns.run(["stat", "-c", "%F|%u|%a", AGENT_DIR, f"{AGENT_DIR}/{AGENT_SERVICE}"],
                           check=True).stdout.split()
        directory, sock = (line.split("|") for line in seen)
        if directory[:2] != ["directory", "0"] or int(directory[2], 8) & 0o022 \
                or sock[:2] != ["socket", "0"]:
            raise RuntimeError(f"the helper would not ask this agent: {seen}")
        serving = [line for line in log_path.read_text().splitlines() if " serving " in line]
        yield serving[-1].split(" INFO ", 1)[-1] if serving else "?"
    finally:
        node.ns.stop(proc)
    if socket.exists():
        raise RuntimeError(f"{socket} is still there after the agent stopped")


# -- measuring --------------------------------------------------------------------------------
class Bench:
    def __init__(self, node: Any, python: str, calls: int, warmup: int, seconds: float
                 ) -> None:
        self.node, self.python = node, python
        self.calls, self.warmup, self.seconds = calls, warmup, seconds
        self.rows: list[dict[str, Any]] = []

    def helper_lines(self) -> list[str]:
        return self.node.helper_log().splitlines()

    def run(self, key: str, name: str, spec: dict[str, Any], *, calls: int | None = None,
            expect: dict[str, int] | None = None) -> dict[str, Any]:
        """One measurement inside the node; ``expect``: helper log lines per call, by
        the text they contain (checked over warm-up and timed calls)."""
        spec = {"calls": calls or self.calls, "warmup": self.warmup,
                "seconds": self.seconds, **spec}
        before = len(self.helper_lines())
        waited = wait_quiet()
        mark = cpu_counters()
        done = self.node.ns.run([self.python, "-I", "-c", INSIDE], input=json.dumps(spec),
                                timeout=self.seconds + 600)
        busy = busy_since(mark)
        if done.returncode != 0:
            raise RuntimeError(f"{name}: {done.stderr.strip()[-800:]}\n"
                               f"helper log: {self.node.helper_log()[-800:]}")
        answer = json.loads(done.stdout)
        stats = Stats([ns / 1e6 for ns in answer["ns"]], busy=busy, waited=waited)
        new = self.helper_lines()[before:]
        runs = spec["warmup"] + len(answer["ns"])
        seen = {text: sum(text in line for line in new) for text in (expect or {})}
        if expect is not None and (len(new) != runs * sum(expect.values()) or
                                   any(seen[t] != runs * k for t, k in expect.items())):
            raise RuntimeError(f"{name}: expected {expect} helper runs per call over {runs}"
                               f" calls, the log has {len(new)} lines: {new[-3:]}")
        row = {"key": key, "name": name, **stats.summary(), "p90": stats.percentile(90),
               "helper_runs_per_call": {t: seen[t] / runs for t in seen}}
        if answer["probe"]:
            row["probe_ms"] = {k: statistics.median(p[k] for p in answer["probe"]) / 1e6
                               for k in answer["probe"][0]}
        self.rows.append(row)
        print(f"  {name}: p50 {row['p50']:.2f} ms, p99 {row['p99']:.2f} ms (n {row['n']},"
              f" busy {row['busy_pct']:.0f} %)", flush=True)
        return row

    def python_pam(self, key: str, name: str, user: str, secret: str, service: str,
                   expect: dict[str, int] | None = None) -> dict[str, Any]:
        return self.run(key, name, {"kind": "pam", "user": user, "secret": secret,
                                    "service": service}, expect=expect)

    def command(self, key: str, name: str, argv: list[str], *, stdin: str = "",
                env: dict[str, str] | None = None, calls: int | None = None,
                probe: bool = False, expect: dict[str, int] | None = None) -> dict[str, Any]:
        return self.run(key, name, {"kind": "cmd", "argv": argv, "input": stdin,
                                    "env": env or {"PATH": "/usr/sbin:/usr/bin:/sbin:/bin"},
                                    "probe": probe}, calls=calls, expect=expect)


#: modules whose cumulative import time the report names (the rest is in the JSON)
NAMED_IMPORTS = ("pam_module", "xos_tokens", "jwt", "jwt.algorithms", "cryptography.x509",
                 "jwt.jwks_client", "xos_node", "pam_module.online")


def import_times(node: Any, python: str, code: str, runs: int = 5) -> dict[str, float]:
    """``-X importtime`` of the helper's imports inside the node: each module's cumulative
    import time (its own and its first-time imports), median of ``runs``, µs."""
    found: dict[str, list[int]] = {}
    for _ in range(runs):
        done = node.ns.run([python, "-X", "importtime", "-c",
                            f"import sys; sys.path.insert(0, {code!r}); import pam_module.cli"],
                           check=True, env={"PATH": "/usr/bin:/bin"})
        for line in done.stderr.splitlines():
            if line.startswith("import time:") and "cumulative" not in line:
                _, cumulative, name = line.split("|")
                found.setdefault(name.strip(), []).append(int(cumulative))
    medians = {k: statistics.median(v) for k, v in found.items()}
    return dict(sorted(medians.items(), key=lambda kv: -kv[1]))


# -- the report -------------------------------------------------------------------------------
def machine() -> dict[str, Any]:
    def package(name: str) -> str:
        return subprocess.run(["dpkg-query", "-W", "-f", "${Version}", name],
                              capture_output=True, text=True).stdout.strip() or "?"

    return {**machine_basics(), "linux_pam": package("libpam0g"),
            "pamtester": package("pamtester"), "libxcrypt": package("libcrypt1"),
            "python_pam": metadata.version("python-pam"),
            "cryptography": metadata.version("cryptography")}


def _ms(value: float) -> str:
    if math.isnan(value):
        return "-"
    return f"{value:,.0f}" if value >= 100 else f"{value:.1f}" if value >= 10 else f"{value:.2f}"


def markdown(result: dict[str, Any]) -> str:
    m, code = result["machine"], result["code"]
    rows = {r["key"]: r for r in result["rows"]}
    small, big = result["sizes"]
    sizes = result["snapshot_bytes"]
    lines = [f"### PAM authentication: XOS beside pam_unix ({small:,} and {big:,} users)", "",
             f"Run {result['started']} ({result['minutes']:.1f} min) on pam_module + xos_node"
             f" + nss_plugin + xos_tokens {code['commit'][:7]} ({code['source']}),"
             f" `{result['command']}`;"
             f" {m['cpu']}, {m['nproc']} cores, {m['memory_gib']} GiB; Python {m['python']},"
             f" Linux-PAM {m['linux_pam']}, python-pam {m['python_pam']}, pamtester"
             f" {m['pamtester']}, libxcrypt {m['libxcrypt']}, cryptography"
             f" {m['cryptography']}. Local password: {result['hash_method']}. Snapshot"
             f" files (agent's store format): {sizes[str(small)]:,} B and"
             f" {sizes[str(big)]:,} B.", "",
             "| login (inside one namespace node) | n | p50 ms | p90 ms | p99 ms | busy % |",
             "|---|---:|---:|---:|---:|---:|"]
    for r in result["rows"]:
        if r["key"].startswith("b_"):
            continue
        lines.append(f"| {r['name']} | {r['n']} | {_ms(r['p50'])} | {_ms(r['p90'])} |"
                     f" {_ms(r['p99'])} | {r['busy_pct']:.0f} |")

    floor = rows["pamtester_floor"]["p50"]
    unix_full, unix_auth = rows["unix_pam"]["p50"], rows["unix_pamtester"]["p50"]
    ratios: dict[str, dict[str, float]] = {}
    for n in (small, big):
        for path, infix in (("files", ""), ("agent", "_agent")):
            xos_full = rows[f"xos{n}{infix}_pam"]["p50"]
            xos_auth = rows[f"xos{n}{infix}_pamtester"]["p50"]
            ratios.setdefault(str(n), {}).update({
                f"{path}_python_pam": xos_full / unix_full,
                f"{path}_pamtester": xos_auth / unix_auth,
                f"{path}_pamtester_net": (xos_auth - floor) / (unix_auth - floor)})
    result["ratios"] = ratios
    lines += ["", f"| XOS ÷ pam_unix (p50s) | {small:,} users, agent | {small:,} users, files"
              f" | {big:,} users, agent | {big:,} users, files |",
              "|---|---:|---:|---:|---:|"]
    for key, label in (("python_pam", "python-pam authenticate (auth + account + setcred)"),
                       ("pamtester", "pamtester authenticate (auth only)"),
                       ("pamtester_net", "auth only, pamtester's floor subtracted")):
        lines.append(f"| {label} | " + " | ".join(
            f"{ratios[str(n)][f'{path}_{key}']:.1f}" for n in (small, big)
            for path in ("agent", "files")) + " |")
    for key, label in (("pam", "python-pam authenticate"), ("pamtester", "pamtester")):
        lines.append(f"| XOS {big:,} ÷ {small:,} users, {label} | | | " + " | ".join(
            f"{rows[f'xos{big}{infix}_{key}']['p50'] / rows[f'xos{small}{infix}_{key}']['p50']:.2f}"
            for infix in ("_agent", "")) + " |")

    lines += ["", f"Where one helper run goes (fresh processes, as pam_exec starts them;"
              f" p50 of {rows['b_bare']['n']} each, phases as medians):", "",
              f"| helper phase | {small:,} users, agent ms | {small:,} users, files ms |"
              f" {big:,} users, agent ms | {big:,} users, files ms |",
              "|---|---:|---:|---:|---:|"]
    columns = [(n, infix) for n in (small, big) for infix in ("_agent", "")]

    def line(label: str, values: list[float | None]) -> str:
        return f"| {label} | " + " | ".join("-" if v is None else _ms(v) for v in values) \
            + " |"

    for key, label in (("b_bare", "`python -I -S -c pass`: the bare interpreter"),
                       ("b_site", "`python -c pass`: interpreter + the venv's site/.pth")):
        lines.append(line(label, [rows[key]["p50"]] * 4))
    helper = [rows[f"b_helper{n}{infix}"]["p50"] for n, infix in columns]
    probe = [rows[f"b_probe{n}{infix}"] for n, infix in columns]
    phase = [row["probe_ms"] for row in probe]
    parse = {n: rows[f"b_parse{n}"]["probe_ms"]["load"] for n in (small, big)}
    lines.append(line("`xos-pam auth` alone, token on stdin, no PAM (wall)", helper))
    lines.append(line("`xos-pam account` alone, no PAM (wall)",
                      [rows[f"b_account{n}{infix}"]["p50"] for n, infix in columns]))
    lines.append(line("probe doing the same (wall)", [row["p50"] for row in probe]))
    for label, values in (
            ("of which start-up and exit (wall − in-process)",
             [row["p50"] - ph["inside"] for row, ph in zip(probe, phase, strict=True)]),
            ("of which imports (`pam_module.cli` and all it pulls in)",
             [ph["imports"] for ph in phase]),
            ("of which `load_state` (agent: one GetLoginState call; files: read, check,"
             " parse, validate)", [ph["load"] for ph in phase]),
            ("load_state's read + checksum + JSON parse (`read_document`, own processes)",
             [None if infix else parse[n] for n, infix in columns]),
            ("load_state's user validation (the difference)",
             [None if infix else ph["load"] - parse[n]
              for (n, infix), ph in zip(columns, phase, strict=True)]),
            ("of which token check (`account_user` + `check_token`)",
             [ph["check"] for ph in phase])):
        lines.append(line(label, values))
    agents = result.get("agents", {})
    if agents:
        lines += ["", "The agent: `python -m nss_plugin --snapshot <the state's snapshot.json>"
                  f" --socket-dir {AGENT_DIR} --poll 0` inside the node ("
                  + "; ".join(f"{int(n):,} users: {text}" for n, text in agents.items())
                  + "); its socket root-owned in a root-owned 0755 directory, checked before"
                  " its rows; every python-pam call's account stage logged \"may log in"
                  " (agent at revision …)\" with it running and \"(snapshot at revision …)\""
                  " without."]
    imports = result["import_times"]
    named = ", ".join(f"{name} {imports[name] / 1000:.1f}" for name in NAMED_IMPORTS
                      if name in imports)
    lines += ["", f"Imports, cumulative ms (`-X importtime` inside the node, median of five;"
              f" nested: each includes what it imports first): {named}; site (start-up)"
              f" {imports.get('site', math.nan) / 1000:.1f}.", ""]
    return "\n".join(lines)


# -- main ---------------------------------------------------------------------------------------
def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--calls", type=int, default=200, help="timed calls per login row")
    parser.add_argument("--breakdown-calls", type=int, default=30,
                        help="fresh processes per breakdown row")
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=100.0,
                        help="time budget of one row (at least 10 calls are made)")
    parser.add_argument("--quick", action="store_true", help="40 calls, 10 per breakdown row")
    parser.add_argument("--rev", default="HEAD",
                        help="commit to measure (git archive); 'worktree' for the files")
    args = parser.parse_args()
    if args.quick:
        args.calls, args.breakdown_calls, args.warmup, args.seconds = 40, 10, 3, 40.0
    return args


def main() -> None:
    args = parse_args()
    if os.geteuid() != 0:
        sys.exit("run as root: the node is made of Linux namespaces and mounts")
    # SIGTERM unwinds like Ctrl-C, so the node and the exported code go too.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    if args.rev != "worktree" and not frozen.is_frozen_run():
        tempfile.tempdir = FROZEN_DIR
        sys.exit(frozen.run_frozen(args.rev, __file__))
    sys.path += [str(TESTS / "pam"), str(TESTS)]  # the node harness and the PAM fixtures
    from e2e.nodens import missing_requirements
    from pam_fixtures import ALICE, PYTHON, SERVICE, pam_node, token_for

    import ca
    import nss_plugin
    import pam_module
    import xos_node
    import xos_tokens
    from xos_tokens import SigningKey

    missing = missing_requirements("pamtester", "openssl")
    if missing:
        sys.exit(f"cannot run here: {missing}")
    code, code_info = frozen.code_under_test(pam_module, xos_node, xos_tokens, ca,
                                             nss_plugin)
    started = dt.datetime.now(dt.UTC)
    clock = time.monotonic()
    key = SigningKey.generate()
    hashed, hash_method = local_hash(LOCAL_PASSWORD)
    snapshot_bytes: dict[str, int] = {}
    agents: dict[str, str] = {}
    print(f"local password: {hash_method}", flush=True)
    with pam_node(users=[ALICE], keys=[key]) as node:
        node.helper.write_text(HELPER.format(python=PYTHON, code=code, state=str(node.state),
                                             log=str(node.log)))
        for service, text in PAM_SERVICES.items():
            node.ns.write_etc(f"pam.d/{service}", text, 0o644)
        node.ns.add_local_user(LOCAL_USER, LOCAL_UID, LOCAL_UID)
        set_shadow_hash(node.ns, LOCAL_USER, hashed)
        where = node.ns.run([PYTHON, "-c", f"import sys; sys.path.insert(0, {code!r}); "
                             "import ca, nss_plugin, pam_module, xos_node, xos_tokens as t; "
                             "print(ca.__file__, pam_module.__file__, xos_node.__file__, "
                             "t.__file__, nss_plugin.__file__)"], check=True, env={}
                            ).stdout.split()
        where += node.ns.run([PYTHON, "-c", "import nss_plugin; print(nss_plugin.__file__)"],
                             check=True, env={"PYTHONPATH": code}).stdout.split()  # the agent
        assert all(f.startswith(code) for f in where), f"the node imports {where}"
        folder = agent_folder(node)
        bench = Bench(node, PYTHON, args.calls, args.warmup, args.seconds)
        accepted = "auth (xos-test) alice: accepted an access token"
        revision = snapshot_for(1)["revision"]
        # the account stage says where its answer came from: the files, or the agent
        xos_files_account = f"account (xos-test) alice: may log in (snapshot at revision" \
                            f" {revision})"
        xos_agent_account = f"account (xos-test) alice: may log in (agent at revision" \
                            f" {revision})"
        xos = {accepted: 1, xos_files_account: 1}
        xos_agent = {accepted: 1, xos_agent_account: 1}
        xos_auth = {accepted: 1}

        print("pam_unix and floors", flush=True)
        bench.python_pam("unix_pam", f"pam_unix: local user, python-pam authenticate"
                         f" (service {UNIX_SERVICE}: common-auth + common-account)",
                         LOCAL_USER, LOCAL_PASSWORD, UNIX_SERVICE, expect={})
        bench.command("unix_pamtester", "pam_unix: local user, pamtester authenticate",
                      ["pamtester", UNIX_SERVICE, LOCAL_USER, "authenticate"],
                      stdin=LOCAL_PASSWORD + "\n", expect={})
        bench.python_pam("unix_xos_stack", "pam_unix: local user, python-pam authenticate"
                         f" through the shipped sshd example ({SERVICE})",
                         LOCAL_USER, LOCAL_PASSWORD, SERVICE, expect={})
        bench.python_pam("pam_floor", "floor: python-pam authenticate, pam_permit only",
                         LOCAL_USER, "-", PERMIT_SERVICE, expect={})
        bench.command("pamtester_floor", "floor: pamtester authenticate, pam_permit only",
                      ["pamtester", PERMIT_SERVICE, LOCAL_USER, "authenticate"],
                      stdin="\n", expect={})
        calls = args.breakdown_calls
        bench.command("b_bare", "python -I -S -c pass", [PYTHON, "-I", "-S", "-c", "pass"],
                      calls=calls)
        bench.command("b_site", "python -c pass", [PYTHON, "-c", "pass"], calls=calls)
        import_list = import_times(node, PYTHON, code)

        for n in SIZES:
            print(f"XOS, {n:,} users", flush=True)
            snapshot_bytes[str(n)] = install_snapshot(node.state, [key], n)
            token = token_for(key, ALICE)  # 20 minutes: longer than the rows that use it
            bench.python_pam(f"xos{n}_pam", f"XOS, {n:,}-user snapshot files (no agent):"
                             f" token, python-pam authenticate ({SERVICE}: xos-auth,"
                             " xos-account)",
                             "alice", token, SERVICE, expect=xos)
            bench.command(f"xos{n}_pamtester", f"XOS, {n:,}-user snapshot files (no agent):"
                          " token, pamtester authenticate",
                          ["pamtester", SERVICE, "alice", "authenticate"],
                          stdin=token + "\n", expect=xos_auth)
            pam_env = {"PAM_USER": "alice", "PAM_TYPE": "auth", "PAM_SERVICE": SERVICE}
            account_env = {**pam_env, "PAM_TYPE": "account"}
            bench.command(f"b_helper{n}", f"xos-pam auth alone, {n:,} users",
                          [str(node.helper), "auth"], stdin=token, env=pam_env, calls=calls,
                          expect=xos_auth)
            bench.command(f"b_account{n}", f"xos-pam account alone, {n:,} users",
                          [str(node.helper), "account"], env=account_env, calls=calls,
                          expect={xos_files_account: 1})
            bench.command(f"b_probe{n}", f"probe: auth phases, {n:,} users",
                          [PYTHON, "-c", PROBE, code, str(node.state), "auth"], stdin=token,
                          env={}, calls=calls, probe=True)
            bench.command(f"b_parse{n}", f"probe: read_document only, {n:,} users",
                          [PYTHON, "-c", PROBE, code, str(node.state), "parse"], env={},
                          calls=calls, probe=True)

            print(f"XOS, {n:,} users, the agent running", flush=True)
            with agent_running(node, folder, PYTHON, code) as serving:
                agents[str(n)] = serving
                print(f"  agent: {serving}", flush=True)
                bench.python_pam(f"xos{n}_agent_pam", f"XOS, {n:,} users, agent running:"
                                 f" token, python-pam authenticate ({SERVICE}: xos-auth,"
                                 " xos-account)", "alice", token, SERVICE, expect=xos_agent)
                bench.command(f"xos{n}_agent_pamtester", f"XOS, {n:,} users, agent running:"
                              " token, pamtester authenticate",
                              ["pamtester", SERVICE, "alice", "authenticate"],
                              stdin=token + "\n", expect=xos_auth)
                bench.command(f"b_helper{n}_agent", f"xos-pam auth alone, {n:,} users, agent",
                              [str(node.helper), "auth"], stdin=token, env=pam_env,
                              calls=calls, expect=xos_auth)
                bench.command(f"b_account{n}_agent", f"xos-pam account alone, {n:,} users,"
                              " agent", [str(node.helper), "account"], env=account_env,
                              calls=calls, expect={xos_agent_account: 1})
                bench.command(f"b_probe{n}_agent", f"probe: auth phases, {n:,} users, agent",
                              [PYTHON, "-c", PROBE, code, str(node.state), "agent"],
                              stdin=token, env={}, calls=calls, probe=True)
    result = {"started": started.isoformat(timespec="seconds"), "code": code_info,
              "command": " ".join([".venv/bin/python", "bench/bench_pam.py", *sys.argv[1:]]),
              "machine": machine(), "minutes": (time.monotonic() - clock) / 60,
              "hash_method": hash_method,
              "hash_scheme": "$".join(hashed.split("$")[:3 if hashed[:3] == "$y$" else 2]),
              "sizes": list(SIZES), "snapshot_bytes": snapshot_bytes, "agents": agents,
              "import_times": import_list, "rows": bench.rows}
    text = markdown(result)  # adds the ratios to ``result``
    save_results(f"pam-{started.strftime('%Y%m%dT%H%M%SZ')}", result, text)


if __name__ == "__main__":
    main()
