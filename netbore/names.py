"""
Tunnel names: validation, reserved labels and random names.

A name is one lowercase DNS label (RFC 1035 §2.3.1 as relaxed by RFC 1123):
1–63 characters of ``[a-z0-9-]``, neither starting nor ending with ``-``.
"""

from __future__ import annotations

import re
import secrets

__all__ = [
    "RESERVED",
    "InvalidName",
    "check_name",
    "is_valid_label",
    "random_name",
    "split_host",
]

RESERVED: frozenset[str] = frozenset({"control", "www", "api", "admin", "edge", "connect", "metrics", "status"})

_LABEL = re.compile(r"\A[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?\Z")

# Random names: 10 characters over a 32-letter alphabet without look-alikes
# (0/o, 1/l) give 50 bits, unguessable for a name a viewer must know.
_ALPHABET = "abcdefghijkmnpqrstuvwxyz23456789"
RANDOM_NAME_LENGTH = 10


class InvalidName(ValueError):
    """
    A requested name is not one acceptable DNS label, or is reserved.
    """


def is_valid_label(label: str) -> bool:
    """
    Is C{label} one lowercase DNS label (reserved or not)?
    """
    return _LABEL.match(label) is not None


def check_name(name: str) -> str:
    """
    Return C{name} unchanged when it may be a tunnel name.

    @raise InvalidName: with a message for a person when it may not.
        Names are refused, never rewritten: C{"MyApp"} is an error.
    """
    if not is_valid_label(name):
        raise InvalidName(
            f"{name!r} is not a valid tunnel name: use 1-63 characters of "
            "a-z, 0-9 and '-', not starting or ending with '-'"
        )
    if name in RESERVED:
        raise InvalidName(f"{name!r} is reserved and cannot be a tunnel name")
    return name


def random_name() -> str:
    """
    A fresh, unguessable, DNS-safe name that is never reserved.
    """
    # The first character is a letter so that a name never looks numeric.
    first = secrets.choice(_ALPHABET[:24])
    rest = "".join(secrets.choice(_ALPHABET) for _ in range(RANDOM_NAME_LENGTH - 1))
    return first + rest


def split_host(host: bytes | str | None, domain: str) -> str | None:
    """
    The tunnel label addressed by a C{Host} header, or L{None} when the
    header addresses the edge itself (the control API and C{/connect}).

    The port is stripped and the name case-folded; C{<label>.<domain>} with
    one valid, non-reserved label is a tunnel name.  Anything else (the bare
    domain, C{control.<domain>}, an IP literal, a deeper name) is not.
    """
    if host is None:
        return None
    if isinstance(host, bytes):
        try:
            host = host.decode("ascii")
        except UnicodeDecodeError:
            return None
    host = host.strip().lower()
    if host.startswith("["):  # IPv6 literal, with or without a port
        return None
    host = host.rsplit(":", 1)[0] if ":" in host else host
    host = host.rstrip(".")
    suffix = "." + domain.lower().rstrip(".")
    if not host.endswith(suffix):
        return None
    label = host[: -len(suffix)]
    if not is_valid_label(label) or label in RESERVED:
        return None
    return label
