"""The size cap and text-to-bytes rule for everything a requester sends."""

from __future__ import annotations

from ..errors import MalformedInput

#: Largest PEM/DER/OpenSSH input accepted; a CSR or key line is a few kilobytes at most.
MAX_INPUT_BYTES = 16 * 1024


def as_bytes(data: bytes | str, what: str) -> bytes:
    """Return ``data`` as bytes; refuse non-ASCII text, other types, empty or oversized input."""
    if isinstance(data, str):
        if not data.isascii():
            raise MalformedInput(f"the {what} text is not ASCII")
        data = data.encode("ascii")
    if not isinstance(data, bytes):
        raise MalformedInput(f"the {what} must be bytes or text")
    if len(data) > MAX_INPUT_BYTES:
        raise MalformedInput(f"the {what} is larger than {MAX_INPUT_BYTES} bytes")
    if not data.strip():
        raise MalformedInput(f"the {what} is empty")
    return data
