"""The shipped PAM and sshd configuration, as text an installer (or a test) can place.

The files live next to this module (``pam.d/``, ``sshd_config.d/``) so that operators can
read them as they are; they name the helper as :data:`HELPER`, the path a package
installs it under. :func:`pam_file` can put another path in its place (a test's wrapper,
a virtualenv), because pam_exec needs an absolute path and passes no PATH.
"""

from __future__ import annotations

from importlib import resources

HELPER = "/usr/sbin/xos-pam"
PAM_SNIPPETS = ("xos-auth", "xos-account", "xos-session")
PAM_FILES = (*PAM_SNIPPETS, "sshd")
SSHD_CONFIG = "xos.conf"


def pam_file(name: str, helper: str = HELPER) -> str:
    """The text of ``pam.d/<name>`` with the helper at ``helper`` (absolute, no spaces:
    pam_exec splits its arguments at white space)."""
    if name not in PAM_FILES:
        raise ValueError(f"no PAM file {name!r}; there are {PAM_FILES}")
    if not helper.startswith("/") or any(c.isspace() for c in helper):
        raise ValueError(f"the helper must be an absolute path without spaces: {helper!r}")
    text = resources.files(__package__).joinpath("pam.d", name).read_text(encoding="utf-8")
    return text.replace(HELPER, helper)


def sshd_config() -> str:
    """The text of ``sshd_config.d/xos.conf``."""
    return resources.files(__package__).joinpath("sshd_config.d", SSHD_CONFIG).read_text(
        encoding="utf-8")
