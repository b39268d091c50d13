"""Configuration keys and their defaults, in one place.

Layers, later wins: these defaults, ``XOS_*`` environment variables
(``app.config.from_prefixed_env("XOS")``), the instance file ``xos.cfg``, then a test
mapping. ``validate`` refuses to start on an unusable configuration.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .errors import ConfigurationError

#: Key names and defaults. ``SQLALCHEMY_DATABASE_URI`` defaults to a SQLite file in
#: the instance folder (set in the app factory, since it depends on that path).
DEFAULTS: dict[str, Any] = {
    "UID_MIN": 200_000,
    "UID_MAX": 399_999,
    "GID_MIN": 400_000,
    "GID_MAX": 499_999,
    # Extra names refused for users and groups, on top of names.RESERVED_NAMES.
    "RESERVED_NAMES": [],
    # Largest request body the API reads; larger bodies get 413.
    "MAX_CONTENT_LENGTH": 256 * 1024,
    "API_PAGE_SIZE_DEFAULT": 50,
    "API_PAGE_SIZE_MAX": 500,
    "SQLALCHEMY_ENGINE_OPTIONS": {"pool_pre_ping": True},
    # Certificates. CA_DIR defaults to <instance>/ca (made by 'xos-ca init'); the key
    # passphrase comes from CA_PASSPHRASE_FILE or XOS_CA_PASSPHRASE.
    "CA_DIR": None,
    "CA_PASSPHRASE_FILE": None,
    # The service's public base URL, written into certificates (CRL and OCSP addresses).
    "PUBLIC_URL": "http://127.0.0.1:8080",
    "CERT_ORGANIZATION": "XOS",
    # Highest lifetime a VO may allow its members' XOS and SSH certificates (hours).
    "CERT_USER_MAX_HOURS": 168,
    "CERT_NODE_DAYS": 30,
    "CRL_VALIDITY_HOURS": 24,
    "ENROLMENT_TOKEN_HOURS": 24,
    # Single sign-on. SECRET_KEY signs form CSRF tokens; it is required and must be the
    # same in every replica (never generated at start).
    "SECRET_KEY": None,
    "ACCESS_TOKEN_MINUTES": 10,
    "REFRESH_TOKEN_HOURS": 24,      # a refresh token unused this long expires
    "REFRESH_FAMILY_DAYS": 14,      # a login ends this long after it began, refreshed or not
    "TOKEN_KEY_ROTATE_DAYS": 30,
    "TOKEN_KEY_PUBLISH_MINUTES": 60,  # a new signing key is in the JWKS this long first
    "DEVICE_CODE_MINUTES": 10,
    "DEVICE_POLL_SECONDS": 5,
    # How many reverse proxies in front of the service set X-Forwarded-For/-Proto/-Host
    # (0: none; trust no such header).
    "TRUSTED_PROXIES": 0,
    # Institutional LDAP (optional): see vo_service/auth/ldap.py for the keys.
    "LDAP_URL": None,
}

# Numbers no range may touch: system accounts, systemd's dynamic users (61184-65519),
# nobody/nogroup and (uid_t)-1 (65534-65535), systemd's container range
# (524288-1879048191), and everything from 2^31 (signed 32-bit trouble in old tools).
FORBIDDEN_NUMBERS: tuple[tuple[int, int, str], ...] = (
    (0, 999, "system accounts"),
    (61184, 65519, "systemd dynamic users"),
    (65534, 65535, "nobody and (uid_t)-1"),
    (524288, 1879048191, "systemd container ranges"),
    (2**31, 2**32 - 1, "numbers at or above 2^31"),
)


def _check_range(name: str, low: Any, high: Any) -> None:
    if not isinstance(low, int) or not isinstance(high, int) or isinstance(low, bool) \
            or isinstance(high, bool):
        raise ConfigurationError(f"{name}_MIN and {name}_MAX must be integers")
    if low > high:
        raise ConfigurationError(f"{name}_MIN ({low}) is above {name}_MAX ({high})")
    for start, end, why in FORBIDDEN_NUMBERS:
        if low <= end and start <= high:
            raise ConfigurationError(
                f"{name} range {low}-{high} overlaps {start}-{end} ({why})"
            )
    if low < 0 or high >= 2**31:  # negative, or past 2^32 (beyond the table above)
        raise ConfigurationError(f"{name} range {low}-{high} is outside 1000-{2**31 - 1}")


def _check_positive(config: Mapping[str, Any], name: str, most: int) -> None:
    value = config[name]
    if not isinstance(value, int) or isinstance(value, bool) or not 1 <= value <= most:
        raise ConfigurationError(f"{name} must be a whole number from 1 to {most}")


def validate(config: Mapping[str, Any]) -> None:
    """Raise ConfigurationError when the number ranges or certificate settings are
    unusable."""
    _check_positive(config, "CERT_USER_MAX_HOURS", 24 * 366)
    _check_positive(config, "CERT_NODE_DAYS", 3650)
    _check_positive(config, "CRL_VALIDITY_HOURS", 24 * 366)
    for name, most in (("ACCESS_TOKEN_MINUTES", 24 * 60), ("REFRESH_TOKEN_HOURS", 24 * 366),
                       ("REFRESH_FAMILY_DAYS", 3660), ("TOKEN_KEY_ROTATE_DAYS", 3660),
                       ("TOKEN_KEY_PUBLISH_MINUTES", 7 * 24 * 60),
                       ("DEVICE_CODE_MINUTES", 60), ("DEVICE_POLL_SECONDS", 60),
                       ("ENROLMENT_TOKEN_HOURS", 24 * 30)):
        _check_positive(config, name, most)
    hops = config["TRUSTED_PROXIES"]
    if not isinstance(hops, int) or isinstance(hops, bool) or not 0 <= hops <= 5:
        raise ConfigurationError("TRUSTED_PROXIES must be a whole number from 0 to 5")
    secret = config.get("SECRET_KEY")
    if not isinstance(secret, str | bytes) or len(secret) < 32:
        raise ConfigurationError("SECRET_KEY must be set (XOS_SECRET_KEY), at least 32"
                                 " characters, the same in every service process")
    url = config["PUBLIC_URL"]
    if not isinstance(url, str) or not url.startswith(("http://", "https://")) \
            or any(c in url for c in " \n\r\t\"<>"):
        raise ConfigurationError("PUBLIC_URL must be an http:// or https:// address")
    _check_range("UID", config["UID_MIN"], config["UID_MAX"])
    _check_range("GID", config["GID_MIN"], config["GID_MAX"])
    if config["UID_MIN"] <= config["GID_MAX"] and config["GID_MIN"] <= config["UID_MAX"]:
        raise ConfigurationError(
            "the UID and GID ranges overlap; user private groups (gid = uid) would clash"
            " with VO groups"
        )
