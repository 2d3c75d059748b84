"""
Key ids and public JWKs: the RFC 7638 thumbprints netbore uses as C{kid}.

A C{kid} is always computed from the key, never taken from a file name or a
token, so that a key file cannot claim another key's id.
"""

from __future__ import annotations

import base64
import hashlib
import json

from cryptography.hazmat.primitives.asymmetric import rsa

__all__ = ["b64url", "hmac_kid", "rsa_kid", "rsa_members"]


def b64url(data: bytes) -> str:
    """
    C{data} in unpadded base64url (RFC 7515 §2).
    """
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64url_uint(value: int) -> str:
    return b64url(value.to_bytes((value.bit_length() + 7) // 8 or 1, "big"))


def _thumbprint(members: dict[str, str]) -> str:
    """
    RFC 7638: base64url SHA-256 of the required members, sorted, no blanks.
    """
    canonical = json.dumps(members, separators=(",", ":"), sort_keys=True)
    return b64url(hashlib.sha256(canonical.encode("utf-8")).digest())


def rsa_members(public: rsa.RSAPublicKey) -> dict[str, str]:
    """
    The required members of C{public}'s JWK (C{e}, C{kty}, C{n}).
    """
    numbers = public.public_numbers()
    return {"e": _b64url_uint(numbers.e), "kty": "RSA", "n": _b64url_uint(numbers.n)}


def rsa_kid(public: rsa.RSAPublicKey) -> str:
    """
    The C{kid} of an RSA key: its RFC 7638 JWK thumbprint.
    """
    return _thumbprint(rsa_members(public))


def hmac_kid(secret: bytes) -> str:
    """
    The C{kid} of an HS256 secret: the RFC 7638 thumbprint of its C{oct}
    JWK, a hash that does not reveal the secret.
    """
    return _thumbprint({"k": b64url(secret), "kty": "oct"})
