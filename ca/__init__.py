"""The XOS certificate authority: pure functions over ``cryptography`` and ``pyasn1``.

No database, no web framework, no global state: callers pass keys, certificates and
lookups in, and get certificates, CRLs and OCSP answers out. Everything that other
packages may use is exported here; ``ca._internal`` is private. See docs/ca.md.
"""

from ._internal.signing import PrivateKey
from .attributes import (
    XOS_ARC,
    XOS_NODE_ATTRIBUTES_OID,
    XOS_VO_ATTRIBUTES_OID,
    NodeAttributes,
    VOAttributes,
)
from .authority import IssuingCA, create_issuing, create_root
from .errors import (
    BadSignature,
    CAError,
    ForbiddenExtension,
    InvalidRequest,
    KeyStoreError,
    MalformedInput,
    PolicyError,
    WeakKey,
)
from .issue import issue_node_certificate, issue_user_certificate
from .keys import (
    MAX_INPUT_BYTES,
    check_public_key,
    decrypt_private_key,
    encrypt_private_key,
    load_csr,
    new_private_key,
)
from .revocation import CertStatus, Revoked, answer_ocsp, build_crl
from .ssh import SSHCertificateAuthority, load_ssh_public_key, ssh_public_line
from .store import check_private, read_passphrase, write_private, write_public

__all__ = [
    "MAX_INPUT_BYTES",
    "XOS_ARC",
    "XOS_NODE_ATTRIBUTES_OID",
    "XOS_VO_ATTRIBUTES_OID",
    "BadSignature",
    "CAError",
    "CertStatus",
    "ForbiddenExtension",
    "InvalidRequest",
    "IssuingCA",
    "KeyStoreError",
    "MalformedInput",
    "NodeAttributes",
    "PolicyError",
    "PrivateKey",
    "Revoked",
    "SSHCertificateAuthority",
    "VOAttributes",
    "WeakKey",
    "answer_ocsp",
    "build_crl",
    "check_private",
    "check_public_key",
    "create_issuing",
    "create_root",
    "decrypt_private_key",
    "encrypt_private_key",
    "issue_node_certificate",
    "issue_user_certificate",
    "load_csr",
    "load_ssh_public_key",
    "new_private_key",
    "read_passphrase",
    "ssh_public_line",
    "write_private",
    "write_public",
]
