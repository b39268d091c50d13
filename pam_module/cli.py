"""``xos-pam {auth,account,session}``: the helper that pam_exec runs, and its exit codes.

pam_exec's contract (Linux-PAM 1.5.2, checked on this machine): exit 0 is success and
anything else, including death by a signal, is a failure (PAM_SYSTEM_ERR); the child gets
only the PAM environment (PAM_USER, PAM_TYPE, PAM_SERVICE, PAM_RHOST, PAM_TTY and what
pam_env put there: no PATH, no PYTHONPATH); with ``expose_authtok`` (auth only) the typed
secret arrives on stdin, at most 511 bytes and unterminated; pam_exec waits for the child
without any time limit. Hence the rules here:

- 0 only when a check passed. Every error, including a bug, exits non-zero; there is no
  ``--help`` (a PAM line mistyped as ``xos-pam --help`` must not "succeed").
- The stage given on the command line must be the stage PAM runs it in (PAM_TYPE): a
  session helper placed on an account line would otherwise approve everyone.
- A watchdog (SIGALRM with its default action, so it fires even inside a blocking C call
  such as a DNS lookup) kills the process after ``--timeout`` plus a margin.
- Reasons go to syslog (authpriv) and stderr (``pam_exec log=FILE`` keeps it); the typed
  secret never does.
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import syslog
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import BinaryIO, NoReturn

from .checks import account_user, check_token, looks_like_token, pam_user, read_secret
from .errors import PamHelperError, Refused, UsageError
from .home import DEFAULT_HOME_BASE, make_home
from .state import load_state, state_directory

PROG = "xos-pam"
STAGES = ("auth", "account", "session")
#: PAM_TYPE values under which each stage may run (pam_exec runs session lines twice).
PAM_TYPES: Mapping[str, frozenset[str]] = {
    "auth": frozenset({"auth"}),
    "account": frozenset({"account"}),
    "session": frozenset({"open_session", "close_session"}),
}
MAX_TIMEOUT = 60.0
#: seconds the VO service has to check a VO password (pam_module.online)
DEFAULT_TIMEOUT = 5.0
#: Time for start-up, reading the snapshot and verifying, on top of ``--timeout``.
WATCHDOG_MARGIN = 3.0


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        raise UsageError(message)


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not 0 < value <= MAX_TIMEOUT:
        raise argparse.ArgumentTypeError(f"must be more than 0 and at most {MAX_TIMEOUT:g}")
    return value


def _absolute(text: str) -> Path:
    if not text.startswith("/"):
        raise argparse.ArgumentTypeError(f"must be an absolute path: {text!r}")
    return Path(text)


def _parser() -> _Parser:
    parser = _Parser(prog=PROG, add_help=False, allow_abbrev=False,
                     description="XOS PAM helper, run by pam_exec.")
    parser.add_argument("stage", choices=STAGES)
    parser.add_argument("--state", metavar="DIR",
                        help="state directory (default: $XOS_NODE_STATE or /var/lib/xos-node)")
    parser.add_argument("--timeout", type=_seconds, default=DEFAULT_TIMEOUT, metavar="SECONDS",
                        help="time allowed for asking the VO service (auth)")
    parser.add_argument("--home-base", type=_absolute, default=DEFAULT_HOME_BASE, metavar="DIR",
                        help="where homes are made (session)")
    return parser


# -- logging --------------------------------------------------------------------------
def _clean(text: str, limit: int = 300) -> str:
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[:limit] + "..."


def _log(priority: int, environ: Mapping[str, str], stage: str, message: str) -> None:
    """One line to syslog (authpriv) and stderr: stage, PAM service, remote host, user."""
    where = _clean(environ.get("PAM_SERVICE", "-"), 40)
    if environ.get("PAM_RHOST"):
        where += f" from {_clean(environ['PAM_RHOST'], 80)}"
    user = _clean(environ.get("PAM_USER") or "-", 40)
    line = _clean(f"{stage} ({where}) {user}: {message}")
    syslog.openlog(PROG, syslog.LOG_PID, syslog.LOG_AUTHPRIV)
    syslog.syslog(priority, line)
    if sys.stderr is not None:
        print(f"{PROG}: {line}", file=sys.stderr)


# -- the stages -----------------------------------------------------------------------
def _auth(args: argparse.Namespace, environ: Mapping[str, str], stdin: BinaryIO) -> str:
    name = pam_user(environ.get("PAM_USER"))
    state = load_state(state_directory(environ, args.state), name)
    user = account_user(state, name)
    secret = read_secret(stdin)
    if looks_like_token(secret):
        claims = check_token(state, user, secret)
        return f"accepted an access token (jti {claims.jti[:40]})"
    from .online import check_password  # HTTP and TLS: only a typed password needs them

    check_password(state, user, secret, timeout=args.timeout)
    return "accepted the VO password (checked online)"


def _account(args: argparse.Namespace, environ: Mapping[str, str], stdin: BinaryIO) -> str:
    name = pam_user(environ.get("PAM_USER"))
    state = load_state(state_directory(environ, args.state), name)
    account_user(state, name)  # raises unless the user may log in now
    return f"may log in ({state.source} at revision {state.revision})"


def _session(args: argparse.Namespace, environ: Mapping[str, str], stdin: BinaryIO) -> str:
    if environ.get("PAM_TYPE") == "close_session":
        return "nothing to do when a session closes"
    name = pam_user(environ.get("PAM_USER"))
    state = load_state(state_directory(environ, args.state), name)
    user = account_user(state, name)
    created = make_home(user, args.home_base)
    home = args.home_base / user.name
    return f"created {home} (0700)" if created else f"{home} exists"


_COMMANDS: Mapping[str, Callable[[argparse.Namespace, Mapping[str, str], BinaryIO], str]] = {
    "auth": _auth, "account": _account, "session": _session}


def _arm_watchdog(seconds: float) -> None:
    """SIGALRM with its default action: the kernel ends the process even inside a C call
    that Python cannot interrupt; pam_exec then reports a failure, never a hang."""
    signal.signal(signal.SIGALRM, signal.SIG_DFL)
    signal.setitimer(signal.ITIMER_REAL, seconds)


def main(argv: Sequence[str] | None = None, *, environ: Mapping[str, str] | None = None,
         stdin: BinaryIO | None = None, watchdog: bool = False) -> int:
    """Run one stage; the exit code for pam_exec (0 only when the check passed).

    ``environ`` and ``stdin`` default to the process's own (what pam_exec provides);
    ``watchdog`` arms the kill timer, which only the real process entry point wants.
    """
    env = os.environ if environ is None else environ
    stage = "xos-pam"
    try:
        args = _parser().parse_args(list(sys.argv[1:] if argv is None else argv))
        stage = args.stage
        if watchdog:
            _arm_watchdog(args.timeout + WATCHDOG_MARGIN)
        pam_type = env.get("PAM_TYPE")
        if pam_type is not None and pam_type not in PAM_TYPES[stage]:
            raise UsageError(f"run by the PAM {_clean(pam_type, 20)!r} stage: the pam_exec "
                             f"line must call '{stage}' only from {sorted(PAM_TYPES[stage])}")
        if stdin is None:
            if sys.stdin is None:
                raise Refused("no standard input")
            stdin = sys.stdin.buffer
        message = _COMMANDS[stage](args, env, stdin)
    except PamHelperError as error:
        _log(syslog.LOG_NOTICE, env, stage, f"refused: {error}")
        return error.exit_code
    except Exception as error:  # a bug must fail the login, never pass it or hang it
        where = error.__traceback__
        while where is not None and where.tb_next is not None:
            where = where.tb_next
        place = f"{Path(where.tb_frame.f_code.co_filename).name}:{where.tb_lineno}" \
            if where is not None else "?"
        # the type and place only: an arbitrary message might quote the secret
        _log(syslog.LOG_ERR, env, stage, f"internal error {type(error).__name__} at {place}")
        return os.EX_SOFTWARE
    _log(syslog.LOG_INFO, env, stage, message)
    return 0


def entry() -> NoReturn:
    """The console script (``xos-pam``) and ``python -m pam_module``: with the watchdog."""
    raise SystemExit(main(watchdog=True))
