"""A private "compute node" for end-to-end tests: namespaces, private /etc files, real sshd.

Why: the node side of XOS (NSS, PAM, sshd trusting a VO's SSH CA) can only be tested for
real with root-owned system files and daemons. Everything here runs inside private
network + mount + UTS + PID namespaces that die with the test, and with pytest even when
pytest is SIGKILLed, so the host's /etc, /run, /var, /root, /home and /tmp are never
written and no process, socket or mount outlives the test.

How the pieces fit (checked on Debian 12, util-linux 2.38, OpenSSH 9.2):

- The holder is ``setpriv --pdeathsig KILL unshare --net --mount --uts --pid --fork
  --kill-child --mount-proc --propagation private python -c <wait for EOF on stdin>``.
  It is PID 1 of its own PID namespace: when it exits the kernel kills everything inside,
  including sshd's per-connection children, which call setsid() and so escape a
  process-group kill. It exits when pytest closes (or loses) the stdin pipe, and
  ``setpriv``/``--kill-child`` kill it when its parent dies.
- /etc, /run, /var, /root and /home are overlay-mounted inside the namespace (upper layer
  in the temp folder), /tmp is a private tmpfs with the namespace's temp folder mapped
  back in at the same path. Why: sshd needs /run/sshd (absent on the host) and records
  failed logins in /var/log/btmp, the ssh tools may write ~/.ssh, PAM and jobs write homes
  and /tmp. Bind-mount targets that do not exist are created in these private layers only.
- util-linux ``mount`` creates /run/mount (libmount's utab) on the host even inside a
  private mount namespace; every command here runs with ``LIBMOUNT_UTAB`` pointing into
  the temp folder.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path, PurePosixPath
from types import TracebackType
from typing import Any

PREFIX = "xos-nodens-"
TMP_ROOT = "/tmp"  # the temp folder must live here: _SETUP maps it through the private /tmp
PRIVATE_DIRS: tuple[str, ...] = ("/etc", "/run", "/var", "/root", "/home")
DEFAULT_TIMEOUT = 30.0
NS_KINDS = ("net", "mnt", "uts", "pid")
REQUIRED_TOOLS = ("unshare", "nsenter", "mount", "ip", "hostname", "getent")
SSHD = "/usr/sbin/sshd"  # sshd re-executes itself and insists on an absolute path
SSH_TOOLS = (SSHD, "ssh", "ssh-keygen")

_USERNAME = re.compile(r"^[a-z_][a-z0-9_-]{0,31}$")

# The holder: PID 1 of the namespace. It reaps orphans adopted from the namespace (SIGCHLD
# ignored) and ends at EOF on stdin, i.e. as soon as pytest closes or loses the pipe. Before
# exiting it kills everything inside and waits until it is gone: processes left for the
# kernel's own teardown can end up as zombies of the host's PID 1, and the holder's exit
# then stalls (1-2 s here) until that reaps them.
_HOLDER = """
import os, signal, sys, time
signal.signal(signal.SIGCHLD, signal.SIG_IGN)
sys.stdout.write("ready\\n")
sys.stdout.flush()
sys.stdin.buffer.read()
deadline = time.monotonic() + 5
while time.monotonic() < deadline:
    try:
        os.kill(-1, signal.SIGKILL)
    except ProcessLookupError:
        pass
    if not [p for p in os.listdir("/proc") if p.isdigit() and p != "1"]:
        break
    time.sleep(0.002)
"""

# One nsenter call that makes the node private: overlays, private /tmp, loopback, hostname.
_SETUP = r"""
set -eu
tmp="$1"; hostname="$2"; shift 2
for d in "$@"; do
    [ -d "$d" ] || continue
    base="$tmp/overlay$(echo "$d" | tr / _)"
    mkdir -p "$base/upper" "$base/work"
    mount -n -t overlay overlay -o "lowerdir=$d,upperdir=$base/upper,workdir=$base/work" "$d"
done
mkdir -p /run/xos-nodens-tmp
mount -n --bind "$tmp" /run/xos-nodens-tmp
# Folders under /tmp that must stay visible (the project itself, when checked out there).
i=0
for keep in $(echo "${XOS_NODENS_KEEP:-}" | tr ':' ' '); do
    mkdir -p "/run/xos-nodens-keep$i"
    mount -n --bind "$keep" "/run/xos-nodens-keep$i"
    i=$((i + 1))
done
mount -n -t tmpfs -o mode=1777,nosuid,nodev tmpfs /tmp
mkdir -p "$tmp"
mount -n --move /run/xos-nodens-tmp "$tmp"
rmdir /run/xos-nodens-tmp
i=0
for keep in $(echo "${XOS_NODENS_KEEP:-}" | tr ':' ' '); do
    mkdir -p "$keep"
    mount -n --move "/run/xos-nodens-keep$i" "$keep"
    rmdir "/run/xos-nodens-keep$i"
    i=$((i + 1))
done
ip link set lo up
hostname "$hostname"
"""


# -- helpers ---------------------------------------------------------------------------------
def _kept_paths() -> list[str]:
    """What the private /tmp must not hide: this project (and its virtual environment)
    when it is checked out under /tmp, as a CI clone may be; processes inside run its code
    and may have their working directory there."""
    kept = []
    for path in (Path(__file__).resolve().parents[2], Path(sys.prefix).resolve(),
                 Path.cwd().resolve()):
        if path.is_relative_to(TMP_ROOT) and path != Path(TMP_ROOT) and \
                not any(path.is_relative_to(k) for k in kept) and " " not in str(path):
            kept = [k for k in kept if not Path(k).is_relative_to(path)] + [str(path)]
    return kept


def missing_requirements(*tools: str) -> str | None:
    """Why these tests cannot run here (not root, a tool missing), or None: skip, not fail."""
    if os.geteuid() != 0:
        return "needs root (namespaces, mounts, sshd)"
    for tool in (*REQUIRED_TOOLS, *tools):
        if shutil.which(tool) is None and not Path(tool).is_file():
            return f"{tool} is not installed"
    return None


def pid_alive(pid: int) -> bool:
    """True while ``pid`` is a running (not zombie) process: a zombie holds nothing."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")


def _children_of(pid: int) -> list[int]:
    """PIDs whose parent is ``pid`` (/proc/PID/task/*/children is not compiled in here)."""
    found = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            stat = Path(entry.path, "stat").read_text()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
            found.append(int(entry.name))
    return found


def namespace_members(kind: str, inode: int) -> list[int]:
    """Host PIDs still inside the namespace ``kind`` with ``inode``: proof of no leftovers."""
    pids = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry.name}/ns/{kind}").st_ino == inode and pid_alive(
                int(entry.name)
            ):
                pids.append(int(entry.name))
        except (FileNotFoundError, ProcessLookupError, PermissionError):
            continue
    return pids


def sweep_stale_tempdirs() -> list[Path]:
    """Remove temp folders of dead pytest processes: SIGKILL leaves nothing else behind."""
    removed = []
    for path in Path(TMP_ROOT).glob(f"{PREFIX}*"):
        match = re.match(rf"{re.escape(PREFIX)}(\d+)-", path.name)
        if match and path.is_dir() and not pid_alive(int(match.group(1))):
            shutil.rmtree(path, ignore_errors=True)
            removed.append(path)
    return removed


def _group_members(pgid: int) -> list[int]:
    """Live PIDs in process group ``pgid`` (nsenter and what it started inside)."""
    members = []
    for entry in os.scandir("/proc"):
        if not entry.name.isdigit():
            continue
        try:
            fields = Path(entry.path, "stat").read_text().rsplit(")", 1)[1].split()
        except (FileNotFoundError, ProcessLookupError):
            continue
        if int(fields[2]) == pgid and fields[0] not in ("Z", "X"):
            members.append(int(entry.name))
    return members


def _stop_group(proc: subprocess.Popen[Any], grace: float = 3.0) -> None:
    """Stop what nsenter runs inside first, then nsenter.

    Why this order: when nsenter dies first, its child inside the namespace is handed to the
    host's PID 1 (or a host subreaper), not to the holder; its zombie then stalls the
    namespace's teardown until the host's init gets round to reaping it (1-2 s here).
    """
    if proc.poll() is None:
        for sig, wait in ((signal.SIGTERM, grace), (signal.SIGKILL, 5.0)):
            # Right after popen() nsenter may not have forked yet: give it a moment.
            deadline = time.monotonic() + 0.5
            while not (inside := [p for p in _group_members(proc.pid) if p != proc.pid]):
                if proc.poll() is not None or time.monotonic() > deadline:
                    break
                time.sleep(0.002)
            for pid in inside or [proc.pid]:
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, sig)
            try:
                proc.wait(wait)
                break
            except subprocess.TimeoutExpired:
                continue
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if _group_members(proc.pid):
            # Stragglers (e.g. a daemonized child); the pgid stays reserved while they live.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
    for stream in (proc.stdin, proc.stdout, proc.stderr):
        if stream is not None:
            with contextlib.suppress(OSError):
                stream.close()


class NodeCommandError(subprocess.CalledProcessError):
    """A failed ``run(check=True)`` whose message carries stderr: the reason is usually there."""

    def __str__(self) -> str:
        err = self.stderr.decode(errors="replace") if isinstance(self.stderr, bytes) else (
            self.stderr or "")
        return f"{super().__str__()}\n{err.strip()}"


# -- the namespace -----------------------------------------------------------------------------
class NodeNamespace:
    """A compute node in private namespaces; everything it starts dies when the block ends.

    Open it in a thread that outlives it (normally pytest's main thread): PR_SET_PDEATHSIG
    fires when the creating *thread* exits, not the process.
    """

    def __init__(
        self,
        hostname: str = "xos-node",
        *,
        private_dirs: Sequence[str] = PRIVATE_DIRS,
        timeout: float = DEFAULT_TIMEOUT,
    ) -> None:
        self.hostname = hostname
        self.private_dirs = tuple(private_dirs)
        self.timeout = timeout
        self._tmp: Path | None = None
        self._unshare: subprocess.Popen[bytes] | None = None
        self._pid: int | None = None
        self._procs: list[subprocess.Popen[Any]] = []
        self._etc: dict[str, Path] = {}
        self._counter = 0
        self.ns_inodes: dict[str, int] = {}

    # -- life cycle --------------------------------------------------------------------------
    def __enter__(self) -> NodeNamespace:
        sweep_stale_tempdirs()
        self._tmp = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-", dir=TMP_ROOT))
        try:
            self._start_holder()
            self.run(
                ["sh", "-c", _SETUP, "setup", str(self._tmp), self.hostname,
                 *self.private_dirs],
                check=True, env={**os.environ, "XOS_NODENS_KEEP": ":".join(_kept_paths())},
            )
            self.write_etc("hostname", f"{self.hostname}\n")
            self.write_etc(
                "hosts",
                f"127.0.0.1\tlocalhost\n127.0.1.1\t{self.hostname}\n::1\tlocalhost\n",
            )
        except BaseException:
            self.close()
            raise
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def tmp(self) -> Path:
        """The namespace's private temp folder (0700), visible at the same path inside."""
        if self._tmp is None:
            raise RuntimeError("NodeNamespace is not open")
        return self._tmp

    @property
    def pid(self) -> int:
        """Host PID of the holder (PID 1 inside); the target of nsenter."""
        if self._pid is None:
            raise RuntimeError("NodeNamespace is not open")
        return self._pid

    @property
    def holder_pids(self) -> tuple[int, ...]:
        """Host PIDs of unshare and the holder, for tests that prove they are gone."""
        pids = [self._unshare.pid] if self._unshare else []
        return tuple(pids + ([self._pid] if self._pid else []))

    def _start_holder(self) -> None:
        argv = ["unshare", "--net", "--mount", "--uts", "--pid", "--fork", "--kill-child",
                "--mount-proc", "--propagation", "private", "--",
                sys.executable, "-I", "-S", "-c", _HOLDER]
        if shutil.which("setpriv"):
            argv = ["setpriv", "--pdeathsig", "KILL", "--", *argv]
        errlog = self.tmp / "holder.err"
        with errlog.open("wb") as err:
            self._unshare = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                start_new_session=True,
            )
        assert self._unshare.stdout is not None
        ready, _, _ = select.select([self._unshare.stdout], [], [], 10)
        line = self._unshare.stdout.readline() if ready else b""
        if line != b"ready\n":
            raise RuntimeError(f"namespace holder did not start: {errlog.read_text()!r}")
        deadline = time.monotonic() + 5
        while not (children := _children_of(self._unshare.pid)):
            if time.monotonic() > deadline:
                raise RuntimeError("cannot find the namespace holder process")
            time.sleep(0.01)
        self._pid = children[0]
        self.ns_inodes = {k: os.stat(f"/proc/{self._pid}/ns/{k}").st_ino for k in NS_KINDS}

    def close(self) -> None:
        """Kill everything started here, then the holder; wait for them; remove the temp dir."""
        try:
            while self._procs:
                _stop_group(self._procs.pop())
        finally:
            try:
                self._stop_holder()
            finally:
                self._pid = None
                if self._tmp is not None:
                    tmp, self._tmp = self._tmp, None
                    shutil.rmtree(tmp, ignore_errors=True)
                    if tmp.exists():
                        raise RuntimeError(f"could not remove {tmp}")

    def _stop_holder(self) -> None:
        if self._unshare is None:
            return
        unshare, self._unshare = self._unshare, None
        assert unshare.stdin is not None and unshare.stdout is not None
        with contextlib.suppress(OSError):
            unshare.stdin.close()  # EOF: the holder kills everything inside and exits
        try:
            unshare.wait(10)
        except subprocess.TimeoutExpired:
            unshare.kill()  # --kill-child: the holder gets SIGKILL too
            if self._pid is not None and pid_alive(self._pid):
                os.kill(self._pid, signal.SIGKILL)
            unshare.wait()
        unshare.stdout.close()
        deadline = time.monotonic() + 5
        while self.ns_inodes and any(
            namespace_members(kind, self.ns_inodes[kind]) for kind in ("net", "pid")
        ):
            if time.monotonic() > deadline:
                raise RuntimeError("processes survived the namespace holder")
            time.sleep(0.01)

    # -- processes ---------------------------------------------------------------------------
    def _command(self, argv: Sequence[str | os.PathLike[str]], cwd: str | None) -> list[str]:
        return ["nsenter", f"--target={self.pid}", "--net", "--mount", "--uts", "--pid",
                f"--wdns={cwd or '/'}", "--", *map(os.fspath, argv)]

    def _env(self, env: Mapping[str, str] | None) -> dict[str, str]:
        merged = dict(os.environ if env is None else env)
        merged.setdefault("LIBMOUNT_UTAB", str(self.tmp / "libmount-utab"))
        return merged

    def popen(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        cwd: str | None = None,
        env: Mapping[str, str] | None = None,
        track: bool = True,
        **kw: Any,
    ) -> subprocess.Popen[Any]:
        """Start a long-lived process inside; it and its process group die on exit."""
        kw.pop("start_new_session", None)
        kw.setdefault("stdin", subprocess.DEVNULL)
        proc: subprocess.Popen[Any] = subprocess.Popen(
            self._command(argv, cwd), env=self._env(env), start_new_session=True, **kw
        )
        if track:
            self._procs.append(proc)
        return proc

    def stop(self, proc: subprocess.Popen[Any], grace: float = 3.0) -> int:
        """Stop one process started by popen() before the namespace ends; its exit code."""
        _stop_group(proc, grace)
        with contextlib.suppress(ValueError):
            self._procs.remove(proc)
        return proc.returncode

    def run(
        self,
        argv: Sequence[str | os.PathLike[str]],
        *,
        input: str | bytes | None = None,
        timeout: float | None = None,
        check: bool = False,
        capture_output: bool = True,
        text: bool = True,
        **kw: Any,
    ) -> subprocess.CompletedProcess[Any]:
        """Run a command inside and wait, always with a timeout (the whole group is killed)."""
        if capture_output:
            kw.setdefault("stdout", subprocess.PIPE)
            kw.setdefault("stderr", subprocess.PIPE)
        if input is not None:
            kw["stdin"] = subprocess.PIPE
        limit = self.timeout if timeout is None else timeout
        proc = self.popen(argv, text=text, track=False, **kw)
        try:
            out, err = proc.communicate(input, timeout=limit)
        except subprocess.TimeoutExpired:
            _stop_group(proc, grace=0.5)
            raise subprocess.TimeoutExpired(list(map(os.fspath, argv)), limit) from None
        except BaseException:
            _stop_group(proc, grace=0.5)
            raise
        result = subprocess.CompletedProcess(list(map(os.fspath, argv)), proc.returncode,
                                             out, err)
        if check and result.returncode != 0:
            raise NodeCommandError(result.returncode, result.args, out, err)
        return result

    # -- files -------------------------------------------------------------------------------
    def _is_private(self, target: str) -> bool:
        path = PurePosixPath(target)
        return path.is_relative_to("/tmp") or any(
            path.is_relative_to(d) for d in self.private_dirs
        )

    def make_dir(self, path: str, mode: int = 0o755, uid: int = 0, gid: int = 0) -> None:
        """Create a directory inside, only in a private layer (never on the host)."""
        if not self._is_private(path):
            raise ValueError(f"{path} is not under a private directory {self.private_dirs}")
        self.run(["install", "-d", "-m", f"{mode:o}", "-o", str(uid), "-g", str(gid), path],
                 check=True)

    def _mountpoint(self, target: str, directory: bool) -> None:
        if self.run(["test", "-e", target]).returncode == 0:
            return
        if not self._is_private(target):
            raise ValueError(f"{target} does not exist and is not under a private directory")
        parent = str(PurePosixPath(target).parent)
        script = 'mkdir -p "$1" && ' + ('mkdir "$2"' if directory else ': > "$2"')
        self.run(["sh", "-c", script, "mkpoint", parent, target], check=True)

    def _bind(self, source: Path, target: str, readonly: bool, directory: bool) -> None:
        if not PurePosixPath(target).is_absolute():
            raise ValueError(f"bind target must be absolute: {target}")
        self._mountpoint(target, directory)
        self.run(["mount", "-n", "--bind", str(source), target], check=True)
        if readonly:
            self.run(["mount", "-n", "-o", "remount,bind,ro", target], check=True)

    def bind_file(self, source: str | Path, target: str, *, readonly: bool = False) -> None:
        """Bind a private host file over ``target`` inside only (edit it in place, not by
        rename: the mount holds the inode)."""
        source = Path(source)
        if not source.is_file():
            raise FileNotFoundError(source)
        self._bind(source, target, readonly, directory=False)

    def bind_dir(self, source: str | Path, target: str, *, readonly: bool = False) -> None:
        """Bind a private host directory over ``target`` inside only."""
        source = Path(source)
        if not source.is_dir():
            raise NotADirectoryError(source)
        self._bind(source, target, readonly, directory=True)

    def _etc_name(self, name: str) -> PurePosixPath:
        rel = PurePosixPath(name)
        if rel.is_absolute() or ".." in rel.parts or not rel.parts:
            raise ValueError(f"bad /etc name: {name!r}")
        return rel

    def etc_path(self, name: str) -> Path:
        """The host path of the private copy of /etc/<name> (writing it changes the node)."""
        return self.tmp / "etc" / self._etc_name(name)

    def write_etc(self, name: str, text: str, mode: int | None = None) -> Path:
        """Write a private /etc/<name> and bind it over the real one inside the namespace."""
        rel = self._etc_name(name)
        copy = self.etc_path(name)
        copy.parent.mkdir(parents=True, exist_ok=True)
        with copy.open("w") as fh:  # in place: an existing bind mount follows the inode
            fh.write(text)
        if mode is not None:
            copy.chmod(mode)
        if str(rel) not in self._etc:
            self._etc[str(rel)] = copy
            self.bind_file(copy, f"/etc/{rel}")
        return copy

    def read_etc(self, name: str) -> str:
        """/etc/<name> as the node sees it: the private copy, else the host's file."""
        rel = self._etc_name(name)
        if str(rel) in self._etc:
            return self._etc[str(rel)].read_text()
        return Path("/etc", rel).read_text()

    def _private_etc(self, name: str) -> Path:
        """Ensure a private copy of /etc/<name> (same mode and owner as the host's) exists."""
        if name not in self._etc:
            host = Path("/etc", name)
            st = host.stat()
            copy = self.write_etc(name, host.read_text(), st.st_mode & 0o7777)
            os.chown(copy, st.st_uid, st.st_gid)
        return self._etc[name]

    def add_local_user(
        self,
        name: str,
        uid: int,
        gid: int,
        home: str | None = None,
        groups: Sequence[str | tuple[str, int]] = (),
        *,
        shell: str = "/bin/sh",
        gecos: str = "",
        create_home: bool = True,
    ) -> None:
        """Add a local account to the node's private passwd/group/shadow.

        The shadow password is ``*``: no password, yet not "locked" for sshd (only a ``!``
        prefix is), so certificate logins with UsePAM no work. lastchg is today and there is
        no max age, because sshd without PAM treats lastchg 0 as "password expired".
        ``groups`` names existing groups, or (name, gid) pairs created when missing.
        """
        if not _USERNAME.match(name):
            raise ValueError(f"bad user name {name!r}")
        home = home or f"/home/{name}"
        passwd = self._private_etc("passwd")
        group = self._private_etc("group")
        shadow = self._private_etc("shadow")
        entries = [line.split(":") for line in passwd.read_text().splitlines() if line]
        if any(e[0] == name or e[2] == str(uid) for e in entries):
            raise ValueError(f"user {name} or uid {uid} already exists on the node")
        lines = group.read_text().splitlines()
        if not any(ln.split(":")[2:3] == [str(gid)] for ln in lines):
            lines.append(f"{name}:x:{gid}:")  # the private group, unless gid already exists
        for entry in groups:
            gname, ggid = (entry, None) if isinstance(entry, str) else entry
            index = next((i for i, ln in enumerate(lines) if ln.split(":")[0] == gname), None)
            if index is None:
                if ggid is None:
                    raise ValueError(f"group {gname} does not exist on the node")
                lines.append(f"{gname}:x:{ggid}:{name}")
                continue
            fields = lines[index].split(":")
            members = [m for m in fields[3].split(",") if m]
            if name not in members:
                fields[3] = ",".join([*members, name])
                lines[index] = ":".join(fields)
        _append_line(passwd, f"{name}:x:{uid}:{gid}:{gecos}:{home}:{shell}")
        _append_line(shadow, f"{name}:*:{int(time.time() // 86400)}::::::")
        with group.open("w") as fh:
            fh.write("\n".join(lines) + "\n")
        if create_home:
            self.make_dir(home, 0o700, uid, gid)

    def getent(self, database: str, key: str) -> str | None:
        """One NSS lookup inside the node (None when not found): what sshd would see."""
        result = self.run(["getent", database, key])
        return result.stdout.strip() if result.returncode == 0 else None

    def new_path(self, stem: str) -> Path:
        """A fresh, unused path in the temp folder (for keys, known_hosts and the like)."""
        self._counter += 1
        return self.tmp / f"{stem}-{self._counter}"


def _append_line(path: Path, line: str) -> None:
    """Append one line in place (the file is bind-mounted: keep its inode)."""
    text = path.read_text()
    with path.open("a") as fh:
        fh.write(("" if not text or text.endswith("\n") else "\n") + line + "\n")


# -- SSH keys and certificates -----------------------------------------------------------------
def keygen(ns: NodeNamespace, path: Path, comment: str = "xos-test") -> Path:
    """Make an ed25519 key pair (inside the node, so ~/.ssh stays untouched); the public key."""
    ns.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", comment, "-f", path],
           check=True)
    return Path(f"{path}.pub")


def sign_key(
    ns: NodeNamespace,
    ca_key: Path,
    public_key: Path,
    identity: str,
    principals: Sequence[str],
    validity: str = "+5m",
    *,
    host: bool = False,
) -> Path:
    """Sign ``public_key`` with ``ca_key`` (user or host certificate); the certificate path."""
    argv: list[str | Path] = ["ssh-keygen", "-q", "-s", ca_key, "-I", identity,
                              "-n", ",".join(principals), "-V", validity]
    ns.run([*argv, *(["-h"] if host else []), public_key], check=True)
    return public_key.with_name(public_key.name.removesuffix(".pub") + "-cert.pub")


def fingerprint(ns: NodeNamespace, key: Path) -> str:
    """SHA256 fingerprint of a key, as sshd writes it in its log."""
    out = ns.run(["ssh-keygen", "-l", "-f", key], check=True).stdout
    return out.split()[1]


# -- sshd --------------------------------------------------------------------------------------
class SshServer:
    """A real ``sshd -D -e`` inside a NodeNamespace, with its own host key and config."""

    def __init__(
        self,
        ns: NodeNamespace,
        *,
        port: int = 2222,
        trusted_user_ca_keys: Path | None = None,
        host_ca_key: Path | None = None,
        host_principals: Sequence[str] = ("127.0.0.1",),
        use_pam: bool = False,
        log_level: str = "VERBOSE",
        extra_config: str = "",
    ) -> None:
        self.ns = ns
        self.port = port
        self.trusted_user_ca_keys = trusted_user_ca_keys
        self.host_ca_key = host_ca_key
        self.host_principals = tuple(host_principals)
        self.use_pam = use_pam
        self.log_level = log_level
        self.extra_config = extra_config
        self.dir = ns.tmp / f"sshd-{port}"
        self.host_key = self.dir / "ssh_host_ed25519_key"
        self.host_key_pub = Path(f"{self.host_key}.pub")
        self.host_cert: Path | None = None
        self.config_path = self.dir / "sshd_config"
        self.log_path = self.dir / "sshd.log"
        self.proc: subprocess.Popen[Any] | None = None

    def __enter__(self) -> SshServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def config_text(self) -> str:
        """The sshd_config: certificates only, principal must equal the user name."""
        lines = [
            f"Port {self.port}",
            "ListenAddress 127.0.0.1",
            f"HostKey {self.host_key}",
            *([f"HostCertificate {self.host_cert}"] if self.host_cert else []),
            *([f"TrustedUserCAKeys {self.trusted_user_ca_keys}"]
              if self.trusted_user_ca_keys else []),
            "AuthorizedPrincipalsFile none",
            "AuthorizedKeysFile none",
            "PubkeyAuthentication yes",
            "PasswordAuthentication no",
            "KbdInteractiveAuthentication no",
            f"UsePAM {'yes' if self.use_pam else 'no'}",
            "PermitRootLogin no",
            f"PidFile {self.dir / 'sshd.pid'}",
            "StrictModes no",
            "UseDNS no",
            "PrintMotd no",
            "PrintLastLog no",
            "X11Forwarding no",
            "LoginGraceTime 15",
            f"LogLevel {self.log_level}",
            self.extra_config,
        ]
        return "\n".join(lines) + "\n"

    def start(self, timeout: float = 10.0) -> SshServer:
        """Make keys and config, start sshd, return once it listens (or raise with its log)."""
        self.dir.mkdir(mode=0o700, exist_ok=True)
        self.ns.make_dir("/run/sshd", 0o755)  # privilege separation dir, compiled in
        if not self.host_key.exists():
            keygen(self.ns, self.host_key, f"host-{self.port}")
        if self.host_ca_key is not None and self.host_cert is None:
            self.host_cert = sign_key(self.ns, self.host_ca_key, self.host_key_pub,
                                      f"{self.ns.hostname}-{self.port}",
                                      self.host_principals, "-5m:+1h", host=True)
        self.config_path.write_text(self.config_text())
        test = self.ns.run([SSHD, "-t", "-f", self.config_path])
        if test.returncode != 0:
            raise RuntimeError(f"sshd rejects its config: {test.stderr.strip()}")
        with self.log_path.open("ab") as log:
            self.proc = self.ns.popen([SSHD, "-D", "-e", "-f", self.config_path],
                                      stdout=log, stderr=log)
        try:
            self.wait_for_log(f"Server listening on 127.0.0.1 port {self.port}", timeout)
        except (RuntimeError, TimeoutError):
            self.stop()
            raise
        return self

    def stop(self) -> None:
        """Stop sshd (connections still open die with the namespace)."""
        if self.proc is not None:
            self.ns.stop(self.proc)
            self.proc = None

    @property
    def log(self) -> str:
        """Everything sshd wrote so far (``-e``: its log goes to stderr, kept in a file)."""
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def wait_for_log(self, pattern: str, timeout: float = 5.0) -> re.Match[str]:
        """Wait until the log matches ``pattern`` (a regex); a clear error if sshd died."""
        regex = re.compile(pattern)
        deadline = time.monotonic() + timeout
        while True:
            if match := regex.search(self.log):
                return match
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"sshd exited ({self.proc.returncode}):\n{self.log}")
            if time.monotonic() > deadline:
                raise TimeoutError(f"sshd log never matched {pattern!r}:\n{self.log}")
            time.sleep(0.02)


def host_ca_known_hosts(ns: NodeNamespace, host_ca_pub: Path, port: int,
                        host: str = "127.0.0.1") -> Path:
    """A known_hosts file that trusts only host certificates from ``host_ca_pub``."""
    path = ns.new_path("known_hosts-ca")
    names = f"{host},[{host}]:{port}"  # a non-22 port is looked up as [host]:port
    path.write_text(f"@cert-authority {names} {host_ca_pub.read_text().strip()}\n")
    return path


def ssh_login(
    ns: NodeNamespace,
    user: str,
    key_path: Path,
    cert_path: Path | None,
    command: Sequence[str] = ("id", "-un"),
    *,
    port: int = 2222,
    host: str = "127.0.0.1",
    host_ca_pub: Path | None = None,
    known_hosts: Path | None = None,
    strict: str | None = None,
    timeout: float = 20.0,
    extra_options: Sequence[str] = (),
) -> subprocess.CompletedProcess[str]:
    """Log in with the real ``ssh`` client inside ``ns`` and run ``command``.

    Host keys: with ``host_ca_pub`` the host is pinned by a ``@cert-authority`` line and
    StrictHostKeyChecking=yes; otherwise a fresh known_hosts with accept-new. ssh also
    loads ``<key>-cert.pub`` on its own, so a plain-key login refuses to run next to one.
    """
    if cert_path is None and Path(f"{key_path}-cert.pub").exists():
        raise ValueError(f"{key_path}-cert.pub exists: ssh would offer it anyway")
    if known_hosts is None:
        if host_ca_pub is not None:
            known_hosts = host_ca_known_hosts(ns, host_ca_pub, port, host)
        else:
            known_hosts = ns.new_path("known_hosts")
    if strict is None:
        strict = "yes" if host_ca_pub is not None else "accept-new"
    options = {
        "BatchMode": "yes",
        "IdentitiesOnly": "yes",
        "IdentityAgent": "none",
        "UserKnownHostsFile": str(known_hosts),
        "GlobalKnownHostsFile": "/dev/null",
        "StrictHostKeyChecking": strict,
        "UpdateHostKeys": "no",
        "ConnectTimeout": "5",
        **({"CertificateFile": str(cert_path)} if cert_path is not None else {}),
    }
    argv = ["ssh", "-F", "/dev/null", "-T", "-i", str(key_path), "-p", str(port), "-l", user]
    for name, value in options.items():
        argv += ["-o", f"{name}={value}"]
    argv += [*extra_options, host, "--", *command]
    return ns.run(argv, timeout=timeout)


@contextlib.contextmanager
def node_with_sshd(
    hostname: str = "xos-node", **sshd_options: Any
) -> Iterator[tuple[NodeNamespace, SshServer]]:
    """A node and its running sshd in one block (the common case in tests)."""
    with NodeNamespace(hostname) as ns, SshServer(ns, **sshd_options) as server:
        yield ns, server


__all__ = [
    "NodeCommandError", "NodeNamespace", "SshServer", "fingerprint", "host_ca_known_hosts",
    "keygen", "missing_requirements", "namespace_members", "node_with_sshd", "pid_alive",
    "sign_key", "ssh_login", "sweep_stale_tempdirs",
]
