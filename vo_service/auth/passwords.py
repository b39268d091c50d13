"""VO passwords (argon2id) and the login check behind the password grant and the
device-approval page: VO password, or the institutional directory for linked users.

argon2id at OWASP's first recommended setting (19 MiB, 2 passes, 1 lane); hashes carry
their parameters, and an older setting is upgraded at the next successful login.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select

from ..authz import Actor
from ..context import ServiceContext
from ..errors import AuthenticationRequired, InvalidInput, InvalidTransition
from ..timeutil import utcnow
from ..users.models import User
from .models import LdapLink, PasswordCredential
from .throttle import Limit, Throttle

HASHER = PasswordHasher(time_cost=2, memory_cost=19 * 1024, parallelism=1)
PASSWORD_MIN, PASSWORD_MAX = 10, 256
ACCOUNT_LIMIT, ADDRESS_LIMIT = 5, 50
WRONG = "wrong username or password"
# Verified when the user is unknown, so that the answer takes as long either way.
_DUMMY = HASHER.hash("not a real password, only for timing")


def check_password_rules(password: object) -> str:
    if not isinstance(password, str) or not PASSWORD_MIN <= len(password) <= PASSWORD_MAX:
        raise InvalidInput(f"a password has {PASSWORD_MIN} to {PASSWORD_MAX} characters")
    if "\x00" in password:
        raise InvalidInput("a password may not contain NUL")
    return password


class PasswordService:
    def __init__(self, ctx: ServiceContext) -> None:
        self.ctx = ctx
        self.session = ctx.session

    def set(self, actor: Actor, user: User, password: str) -> None:
        """The user themself or a service admin sets a VO password."""
        if actor.user_id != user.id:
            self.ctx.authz.require_service_admin(actor)
        digest = HASHER.hash(check_password_rules(password))
        row = self.session.get(PasswordCredential, user.id)
        if row is None:
            self.session.add(PasswordCredential(user_id=user.id, hash=digest))
        else:
            row.hash, row.updated_at = digest, utcnow()
        self.session.flush()
        self.ctx.audit.append(actor.label, "user.password", "user", str(user.id),
                              after={"set": True})

    def link_ldap(self, actor: Actor, user: User, ldap_username: str) -> None:
        from .ldap import USERNAME

        self.ctx.authz.require_service_admin(actor)
        if not isinstance(ldap_username, str) or not USERNAME.fullmatch(ldap_username):
            raise InvalidInput("an LDAP username is 1 to 64 of A-Z, a-z, 0-9, '.', '_',"
                               " '@', '-'")
        row = self.session.get(LdapLink, user.id)
        if row is None:
            self.session.add(LdapLink(user_id=user.id, ldap_username=ldap_username))
        else:
            row.ldap_username = ldap_username
        self.session.flush()
        self.ctx.audit.append(actor.label, "user.ldap_link", "user", str(user.id),
                              after={"ldap_username": ldap_username})


class Login:
    """Check a username and password once, throttled per account and per address.

    Failures are committed before the error is raised, so that a rolled-back request
    still counts against the attacker."""

    def __init__(self, ctx: ServiceContext, config: Mapping[str, Any]) -> None:
        self.ctx = ctx
        self.session = ctx.session
        self.config = config

    def authenticate(self, username: str, password: str, address: str) -> User:
        name = (username or "")[:64].lower()
        throttle = Throttle(self.session, [Limit(f"user:{name}", ACCOUNT_LIMIT),
                                           Limit(f"addr:{address[:64]}", ADDRESS_LIMIT)])
        throttle.check()
        user = self.session.scalar(select(User).where(User.username == name)) \
            if name and len(name) <= 32 else None
        if not password or len(password) > PASSWORD_MAX or user is None \
                or not self._password_ok(user, password):
            throttle.failure()
            self.session.commit()
            raise AuthenticationRequired(WRONG)
        throttle.success(f"user:{name}")
        if user.status != "active":
            raise InvalidTransition(f"the account {user.username!r} is {user.status}")
        return user

    def _password_ok(self, user: User, password: str) -> bool:
        link = self.session.get(LdapLink, user.id)
        if link is not None and self.config.get("LDAP_URL"):
            from .ldap import LdapDirectory

            try:
                LdapDirectory(self.config).authenticate(link.ldap_username, password)
            except AuthenticationRequired:
                return False
            return True
        row = self.session.get(PasswordCredential, user.id)
        try:
            HASHER.verify(row.hash if row else _DUMMY, password)
        except (VerifyMismatchError, VerificationError, InvalidHashError):
            return False
        if row is None:
            return False
        if HASHER.check_needs_rehash(row.hash):
            row.hash = HASHER.hash(password)
        return True
