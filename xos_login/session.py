"""The stored login as the commands use it: which service, which CA, and an access token
that is fresh (refreshed under the store's lock, the rotated refresh token saved).
"""

from __future__ import annotations

import datetime as dt
import os

from .errors import BadAnswer, LoginEnded, NotLoggedIn, UsageError
from .http import Service, normalize_url
from .oauth import Tokens, refresh, unverified_claims
from .store import Credentials, Store

#: a cached access token is reused only if it stays valid at least this long
EARLY_REFRESH = dt.timedelta(seconds=60)
NOT_LOGGED_IN = "not logged in: run 'xos-login login'"


class Session:
    """``url`` and ``ca_file`` are what the user gave (option or environment), if any."""

    def __init__(self, store: Store, url: str | None, ca_file: str | None) -> None:
        self.store = store
        self.url = normalize_url(url) if url else None
        self.explicit_ca = os.path.abspath(ca_file) if ca_file else None

    def ca_file(self, url: str) -> str | None:
        """--ca-file, or the CA file remembered for this very service."""
        if self.explicit_ca:
            return self.explicit_ca
        settings = self.store.settings()
        return settings.get("ca_file") if settings.get("url") == url else None

    def login_service(self) -> Service:
        """The service to log in to: --url, XOS_URL, or the one remembered last time."""
        url = self.url or self.store.settings().get("url")
        if not url:
            raise UsageError("which VO service? pass --url https://... or set XOS_URL")
        return Service(url, self.ca_file(normalize_url(url)))

    def credentials(self) -> Credentials:
        credentials = self.store.credentials()
        if credentials is None:
            raise NotLoggedIn(NOT_LOGGED_IN)
        if self.url and normalize_url(credentials.url) != self.url:
            raise UsageError(f"logged in at {credentials.url}, not at {self.url}: run"
                             " 'xos-login login' to log in there")
        return credentials

    def service(self, credentials: Credentials) -> Service:
        return Service(credentials.url, self.ca_file(credentials.url))

    def save_login(self, service: Service, tokens: Tokens, typed_username: str | None
                   ) -> Credentials:
        if tokens.refresh_token is None:
            raise BadAnswer(f"the VO service at {service.url} gave no refresh token")
        name = unverified_claims(tokens.access_token).get("preferred_username")
        username = name if isinstance(name, str) else typed_username or "?"
        credentials = Credentials(service.url, username, tokens.access_token,
                                  tokens.expires_at, tokens.refresh_token)
        with self.store.locked():
            self.store.save_credentials(credentials)
            settings = {"url": service.url}
            ca_file = self.ca_file(service.url)
            if ca_file:
                settings["ca_file"] = ca_file
            self.store.save_settings(settings)
        return credentials

    def access_token(self, audience: str | None = None) -> tuple[str, Credentials]:
        """A fresh access token for the service (or for the node ``audience``).

        The cached token is reused while it has more than EARLY_REFRESH left; else the
        refresh token is redeemed and its successor saved before the token is returned.
        A node's token is never cached as the login's own. When the service says the
        login is over, the useless credentials are deleted."""
        with self.store.locked():
            credentials = self.credentials()  # read again under the lock: fresh
            now = dt.datetime.now(dt.UTC)
            if audience is None and credentials.expires_at - now > EARLY_REFRESH:
                return credentials.access_token, credentials
            try:
                tokens = refresh(self.service(credentials), credentials.refresh_token,
                                 audience)
            except LoginEnded:
                self.store.delete_credentials()
                raise
            updated = credentials.replace(
                refresh_token=tokens.refresh_token or credentials.refresh_token)
            if audience is None:
                updated = updated.replace(access_token=tokens.access_token,
                                          expires_at=tokens.expires_at)
            self.store.save_credentials(updated)
            return tokens.access_token, updated
