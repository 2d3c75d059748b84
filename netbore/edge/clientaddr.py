"""
Who the client is: the peer of the connection, or, when that peer is a
trusted proxy (C{--trusted-proxy CIDR}), the client the proxies name in
C{X-Forwarded-For}, and the scheme they name in C{X-Forwarded-Proto}.

Sans-IO: strings and bytes in, strings out.  One rule for every place that
needs a client's address (the failed-authentication budget of the control
API and C{/connect}, logs, the viewer path's forwarding fields):

 - a peer outside every trusted range is the client, whatever it sends;
 - from a trusted peer, C{X-Forwarded-For} is walked right to left past
   addresses in trusted ranges; the first address outside them is the
   client (each proxy appends the address it got the request from, so the
   entries right of it were written by proxies we trust).  Every entry
   trusted: the leftmost.  An entry that is not an address ends the walk
   at the last trusted hop;
 - addresses are normalised (an IPv4-mapped IPv6 address is its IPv4
   address), so that one client has one budget however it connects.

The PROXY protocol (Twisted's C{haproxy:} endpoint wrapper) is the other
way to learn the client behind a load balancer: the transport's peer is
then already the client, and needs no trust here.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable, Sequence

__all__ = ["TrustedProxies", "normalise", "parse_network"]

_Network = ipaddress.IPv4Network | ipaddress.IPv6Network
_Address = ipaddress.IPv4Address | ipaddress.IPv6Address

_SCHEMES = frozenset({"http", "https"})


def parse_network(text: str) -> _Network:
    """
    A CIDR range (C{10.0.0.0/8}, C{2001:db8::/32}) or a single address.

    @raise ValueError: naming C{text} when it is neither.
    """
    try:
        return ipaddress.ip_network(text.strip(), strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IP address or CIDR range") from None


def _address(text: str) -> _Address | None:
    """
    The address in one C{X-Forwarded-For} entry or a transport's host:
    C{1.2.3.4}, C{1.2.3.4:5678}, C{2001:db8::1}, C{[2001:db8::1]:443};
    L{None} for anything else.
    """
    text = text.strip()
    if text.startswith("["):
        text = text[1:].partition("]")[0]
    elif text.count(":") == 1:
        text = text.partition(":")[0]
    try:
        address = ipaddress.ip_address(text.partition("%")[0])
    except ValueError:
        return None
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return address.ipv4_mapped
    return address


def normalise(host: str) -> str:
    """
    The one spelling of a transport's host for limits and logs: an address
    in its compressed form, IPv4-mapped IPv6 as IPv4; anything else
    (C{"unknown"}, a UNIX socket's path) as it is.
    """
    address = _address(host)
    return str(address) if address is not None else host


def _entries(values: Iterable[bytes | str]) -> list[str]:
    entries: list[str] = []
    for value in values:
        text = value.decode("latin-1") if isinstance(value, bytes) else value
        entries.extend(part.strip() for part in text.split(","))
    return entries


class TrustedProxies:
    """
    The trusted proxy ranges of C{--trusted-proxy}; with none, every peer is
    its own client.
    """

    def __init__(self, networks: Sequence[str] = ()) -> None:
        self.networks: tuple[_Network, ...] = tuple(parse_network(n) for n in networks)

    def __bool__(self) -> bool:
        return bool(self.networks)

    def _trusted(self, address: _Address) -> bool:
        return any(address.version == n.version and address in n for n in self.networks)

    def trusts(self, host: str) -> bool:
        """
        Is the peer C{host} a trusted proxy?
        """
        if not self.networks:
            return False
        address = _address(host)
        return address is not None and self._trusted(address)

    def client(self, peer: str, forwarded_for: Iterable[bytes | str] | None) -> str:
        """
        The client's address: C{peer}'s, or, from a trusted C{peer}, the
        last untrusted hop of the C{X-Forwarded-For} values
        C{forwarded_for} (every field of that name, in order).
        """
        address = _address(peer)
        client = str(address) if address is not None else peer
        if forwarded_for is None or address is None or not self._trusted(address):
            return client
        for entry in reversed(_entries(forwarded_for)):
            address = _address(entry)
            if address is None:
                break
            client = str(address)
            if not self._trusted(address):
                break
        return client

    def secure(self, peer: str, forwarded_proto: Iterable[bytes | str] | None, secure: bool) -> bool:
        """
        Did the viewer come over TLS: what the last C{X-Forwarded-Proto}
        value says (C{http} or C{https}) from a trusted C{peer}, else
        C{secure}, what the connection itself is.
        """
        if forwarded_proto is None or not self.trusts(peer):
            return secure
        entries = _entries(forwarded_proto)
        scheme = entries[-1].lower() if entries else ""
        return scheme == "https" if scheme in _SCHEMES else secure

    def forwarded(self, proxy: bytes, fields: Iterable[tuple[bytes, bytes]], tls: bool) -> tuple[bytes, bool]:
        """
        C{(client address, secure)} of one request that came through the
        trusted proxy C{proxy}, from its (lower-cased) C{fields}.
        """
        peer = proxy.decode("ascii", "replace")
        xff = [value for name, value in fields if name == b"x-forwarded-for"]
        proto = [value for name, value in fields if name == b"x-forwarded-proto"]
        client = self.client(peer, xff).encode("ascii", "replace")
        return client, self.secure(peer, proto or None, tls)
