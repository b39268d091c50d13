"""The public surface: the exported names, and a library that imports no framework."""

from __future__ import annotations

import subprocess
import sys

import ca

EXPECTED = {
    "CAError", "InvalidRequest", "MalformedInput", "BadSignature", "WeakKey",
    "ForbiddenExtension", "PolicyError", "KeyStoreError",
    "MAX_INPUT_BYTES", "check_public_key", "load_csr", "new_private_key",
    "encrypt_private_key", "decrypt_private_key",
    "XOS_ARC", "XOS_VO_ATTRIBUTES_OID", "XOS_NODE_ATTRIBUTES_OID", "VOAttributes",
    "NodeAttributes",
    "IssuingCA", "create_root", "create_issuing", "PrivateKey",
    "issue_user_certificate", "issue_node_certificate",
    "load_ssh_public_key", "ssh_public_line", "SSHCertificateAuthority",
    "Revoked", "build_crl", "CertStatus", "answer_ocsp",
    "read_passphrase", "write_private", "write_public", "check_private",
}


def test_exports():
    assert set(ca.__all__) == EXPECTED
    assert all(hasattr(ca, name) for name in EXPECTED)
    assert ca.MAX_INPUT_BYTES == 16 * 1024


def test_error_tree():
    for name in ("MalformedInput", "BadSignature", "WeakKey", "ForbiddenExtension"):
        assert issubclass(getattr(ca, name), ca.InvalidRequest)
    for name in ("InvalidRequest", "PolicyError", "KeyStoreError"):
        assert issubclass(getattr(ca, name), ca.CAError)


def test_ca_imports_only_the_standard_library_cryptography_and_pyasn1():
    code = (
        "import sys, ca\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in"
        " {'vo_service', 'flask', 'sqlalchemy', 'werkzeug', 'jwt', 'pydantic'})\n"
        "print(','.join(bad))\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=60)
    assert result.stdout.strip() == ""
