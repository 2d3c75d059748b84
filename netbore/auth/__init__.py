"""
Authentication: the edge's signing keys, keyrings and JWKS, the token
authority that issues and verifies netbore's JWTs, and API keys.

Modules, by what they hold:

 - L{netbore.auth.jwk}: key ids (RFC 7638 thumbprints) and public JWKs;
 - L{netbore.auth.keystore}: RS256 key files in the data directory,
   rotation and retirement;
 - L{netbore.auth.keyrings}: RS256 and HS256 keyrings, L{load_keyring};
 - L{netbore.auth.tokens}: L{TokenAuthority}, L{Claims}, L{TokenError};
 - L{netbore.auth.apikeys}: the edge's API keys file and the agent's key
   file;
 - L{netbore.auth.keys}: the C{python -m netbore.auth.keys} command.

The names below are loaded on first use: an agent that only reads its API
key file does not import PyJWT.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .apikeys import Account, ApiKeys, ApiKeysError, hash_api_key, read_api_key_file
    from .jwk import hmac_kid, rsa_kid
    from .keyrings import HMACKeyring, Keyring, RSAKeyring, load_keyring
    from .keystore import KeyFile, KeyringError, generate_key, read_keys, retire_key
    from .tokens import (
        EPHEMERAL,
        KINDS,
        LEEWAY,
        MANAGEMENT,
        RECREATE,
        Claims,
        TokenAuthority,
        TokenError,
    )

#: Each public name and the module that defines it.
_HOMES = {
    "Account": "apikeys",
    "ApiKeys": "apikeys",
    "ApiKeysError": "apikeys",
    "hash_api_key": "apikeys",
    "read_api_key_file": "apikeys",
    "hmac_kid": "jwk",
    "rsa_kid": "jwk",
    "HMACKeyring": "keyrings",
    "Keyring": "keyrings",
    "RSAKeyring": "keyrings",
    "load_keyring": "keyrings",
    "KeyFile": "keystore",
    "KeyringError": "keystore",
    "generate_key": "keystore",
    "read_keys": "keystore",
    "retire_key": "keystore",
    "EPHEMERAL": "tokens",
    "KINDS": "tokens",
    "LEEWAY": "tokens",
    "MANAGEMENT": "tokens",
    "RECREATE": "tokens",
    "Claims": "tokens",
    "TokenAuthority": "tokens",
    "TokenError": "tokens",
}

__all__ = [
    "Account",
    "ApiKeys",
    "ApiKeysError",
    "Claims",
    "EPHEMERAL",
    "HMACKeyring",
    "KINDS",
    "KeyFile",
    "Keyring",
    "KeyringError",
    "LEEWAY",
    "MANAGEMENT",
    "RECREATE",
    "RSAKeyring",
    "TokenAuthority",
    "TokenError",
    "generate_key",
    "hash_api_key",
    "hmac_kid",
    "load_keyring",
    "read_api_key_file",
    "read_keys",
    "retire_key",
    "rsa_kid",
]


def __getattr__(name: str) -> Any:
    """
    Import the module holding C{name} on first use (PEP 562).
    """
    home = _HOMES.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(f"{__name__}.{home}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
