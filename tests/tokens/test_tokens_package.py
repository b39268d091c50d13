"""The package's contract with its importers: compute nodes import it without the service."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import xos_tokens

ROOT = Path(__file__).resolve().parents[2]
# cryptography registers its compiled bindings under top-level names too
ALLOWED_THIRD_PARTY = ("jwt", "cryptography", "_cffi_backend", "cffi", "_openssl", "_rust")


def test_imports_only_the_standard_library_pyjwt_and_cryptography() -> None:
    """In a fresh interpreter: no Flask, no SQLAlchemy, no vo_service is loaded."""
    probe = (
        "import sys; before = set(sys.modules); import xos_tokens; "
        "new = sorted({m.split('.')[0] for m in set(sys.modules) - before}); "
        "print(' '.join(new))"
    )
    out = subprocess.run([sys.executable, "-c", probe], cwd=ROOT, check=True,
                         capture_output=True, text=True).stdout.split()
    stdlib = set(sys.stdlib_module_names)
    foreign = [m for m in out if m not in stdlib and m not in ALLOWED_THIRD_PARTY
               and m != "xos_tokens"]
    assert foreign == [], foreign


def test_public_names() -> None:
    for name in ("TokenError", "InvalidToken", "ALGORITHM", "MAX_TOKEN_BYTES",
                 "DEFAULT_LEEWAY", "SigningKey", "jwks", "KeySet", "sign_access_token",
                 "Claims", "verify_access_token"):
        assert name in xos_tokens.__all__ and hasattr(xos_tokens, name)
    assert (xos_tokens.ALGORITHM, xos_tokens.MAX_TOKEN_BYTES, xos_tokens.DEFAULT_LEEWAY) == \
        ("ES256", 8192, 60)
    assert issubclass(xos_tokens.InvalidToken, xos_tokens.TokenError)
