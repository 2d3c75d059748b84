"""
C{twistd netbore-edge}: command-line options and the service tree.
"""

from __future__ import annotations

import math
import os
import sys
from collections.abc import Callable

from twisted.application import service
from twisted.internet import endpoints
from twisted.internet.abstract import isIPAddress, isIPv6Address
from twisted.logger import Logger
from twisted.python import usage

from .._types import Reactor
from ..auth.filemodes import loose_permissions
from ..auth.keystore import key_file_paths
from ..names import is_valid_label
from .clientaddr import parse_network
from .config import EdgeConfig
from .listener import Listener
from .redirect import redirect_listeners
from .tcp_ports import parse_port_range
from .tls import CertificateError
from .tls_listen import is_ssl, ssl_listener, tls_directory

__all__ = ["Options", "makeService"]

DEFAULT_LISTEN = "tcp:8080:interface=127.0.0.1"

log = Logger()


def _positive(kind: type[float] | type[int], option: str) -> Callable[[str], float]:
    """
    A coercion of option C{option}'s value to a C{kind} greater than zero,
    whose refusal names the option, what it wants and what it got.
    """
    wanted = "a whole number" if kind is int else "a number"

    def coerce(value: str) -> float:
        try:
            number = kind(value)
        except ValueError:
            number = 0
        if not (number > 0 and math.isfinite(number)):
            raise ValueError(f"--{option} must be {wanted} greater than zero, not {value!r}")
        return number

    coerce.coerceDoc = "Must be greater than zero."  # type: ignore[attr-defined]
    return coerce


def _not_negative(option: str) -> Callable[[str], float]:
    """A coercion to a float of zero or more (zero: off), naming the option when it refuses."""
    positive = _positive(float, option)

    def coerce(value: str) -> float:
        try:
            return 0.0 if float(value) == 0 else positive(value)
        except ValueError:
            raise ValueError(f"--{option} must be a number of zero or more, not {value!r}") from None

    return coerce


class Options(usage.Options):
    synopsis = "[options]"
    longdesc = (
        "Run a netbore edge: the control API, the agents' WebSocket endpoint "
        "(/connect) and the tunnel proxy for <name>.<domain>, on one port."
    )

    optFlags = [
        ["allow-anonymous", None, "Accept POST /tunnels/create without credentials."],
    ]

    optParameters = [
        ["domain", None, "localhost", "Tunnels are served at <name>.<domain>."],
        ["data-dir", None, "netbore-data", "Directory for signing keys and state kept across restarts (created 0700)."],
        ["api-keys-file", None, None, "File of '<account> <key> [admin]' lines; a key may be 'sha256:<hex>'."],
        ["jwt-secret-file", None, None, "Sign tokens HS256 with the secret(s) in this file instead of RS256 keys."],
        [
            "advertise-url",
            None,
            None,
            "The edge_url put in candidates (default: scheme and Host of the create request, path /connect).",
        ],
        [
            "public-scheme",
            None,
            None,
            "Scheme of public URLs: http or https (default: the scheme the create request came in on).",
        ],
        ["edge-id", None, "edge-1", "This edge's id in candidates."],
        ["region", None, "local", "This edge's region in candidates."],
        [
            "ephemeral-ttl",
            None,
            600.0,
            "Lifetime of ephemeral (agent handshake) tokens, seconds.",
            _positive(float, "ephemeral-ttl"),
        ],
        [
            "recreate-default-ttl",
            None,
            86400.0,
            "Lifetime of recreate tokens when the client asks none, seconds.",
            _positive(float, "recreate-default-ttl"),
        ],
        [
            "recreate-max-ttl",
            None,
            30 * 86400.0,
            "Largest lifetime a recreate token may be given, seconds.",
            _positive(float, "recreate-max-ttl"),
        ],
        [
            "management-ttl",
            None,
            86400.0,
            "Lifetime of management tokens, seconds.",
            _positive(float, "management-ttl"),
        ],
        [
            "response-timeout",
            None,
            60.0,
            "Time allowed for the origin's response head before 504, seconds.",
            _positive(float, "response-timeout"),
        ],
        [
            "heartbeat-interval",
            None,
            10.0,
            "WebSocket ping interval towards agents, seconds.",
            _positive(float, "heartbeat-interval"),
        ],
        [
            "heartbeat-timeout",
            None,
            10.0,
            "Time to wait for a pong before dropping an agent, seconds.",
            _positive(float, "heartbeat-timeout"),
        ],
        [
            "grace",
            None,
            30.0,
            "How long a dropped agent's name stays held (longer while its recreate token is valid), seconds.",
            _positive(float, "grace"),
        ],
        [
            "drain-timeout",
            None,
            10.0,
            "On SIGTERM, time allowed for in-flight requests, seconds.",
            _positive(float, "drain-timeout"),
        ],
        [
            "auth-failures-per-minute",
            None,
            10,
            "Failed authentications per client address a minute before 429.",
            _positive(int, "auth-failures-per-minute"),
        ],
        [
            "stream-window",
            None,
            2 * 1024 * 1024,
            "Flow-control window per stream, bytes.",
            _positive(int, "stream-window"),
        ],
        [
            "session-window",
            None,
            16 * 1024 * 1024,
            "Flow-control window per agent session, bytes.",
            _positive(int, "session-window"),
        ],
        [
            "max-tunnels-per-account",
            None,
            100,
            "Live and held tunnels one account may have (403 above).",
            _positive(int, "max-tunnels-per-account"),
        ],
        [
            "max-tunnels-per-address",
            None,
            10,
            "Live and held tunnels one client address may have created anonymously (403 above).",
            _positive(int, "max-tunnels-per-address"),
        ],
        [
            "creates-per-minute",
            None,
            30,
            "POST /tunnels/create calls per client address a minute before 429.",
            _positive(int, "creates-per-minute"),
        ],
        [
            "send-timeout",
            None,
            60.0,
            "Time a viewer may take no response bytes before it is closed and its stream reset, seconds.",
            _positive(float, "send-timeout"),
        ],
        [
            "stream-idle-timeout",
            None,
            0.0,
            "Time an upgraded connection (WebSocket) may carry no bytes either way before it is closed, "
            "seconds; 0: no limit.",
            _not_negative("stream-idle-timeout"),
        ],
        [
            "body-min-rate",
            None,
            500,
            "Slowest request body accepted, bytes a second on average; a slower one times out (408).",
            _positive(int, "body-min-rate"),
        ],
        [
            "max-connections",
            None,
            10000,
            "Connections open at once, all addresses (at most the fd limit less 64); over it: closed.",
            _positive(int, "max-connections"),
        ],
        [
            "max-connections-per-ip",
            None,
            256,
            "Connections open at once from one address; over it: 429 and closed.",
            _positive(int, "max-connections-per-ip"),
        ],
        [
            "max-byte-streams",
            None,
            1000,
            "Byte streams (WebSockets, TCP connections) open at once per tunnel; over it: refused (503 or closed).",
            _positive(int, "max-byte-streams"),
        ],
        [
            "tcp-ports",
            None,
            None,
            "Public ports of TCP tunnels: a range A-B (e.g. 20000-20999) or one port (default: no TCP tunnels).",
            parse_port_range,
        ],
        [
            "tcp-interface",
            None,
            "127.0.0.1",
            "Address the TCP tunnels' ports listen on (0.0.0.0 or :: to make them public).",
        ],
        ["tls-dir", None, None, "Directory of <name>.pem files (key + chain) chosen by SNI on ssl: listeners."],
        ["agent-ca", None, None, "PEM CA whose client certificates agents must present, naming their account."],
        ["agent-crl", None, None, "Revoked agent certificates: a PEM CRL or hex serials one a line (SIGHUP)."],
        ["acme-dir", None, None, "ACME webroot answered on --redirect-listen: DIR/.well-known/acme-challenge/<token>."],
    ]

    def __init__(self) -> None:
        super().__init__()
        self["listen"] = []
        self["trusted-proxy"] = []
        self["redirect-listen"] = []

    def opt_redirect_listen(self, description: str) -> None:
        """Plain-HTTP endpoint redirecting the edge's names to HTTPS (308); repeatable; off by default."""
        self["redirect-listen"].append(description)

    def opt_listen(self, description: str) -> None:
        """
        Listen on this Twisted server endpoint (repeatable), e.g.
        tcp:8080:interface=127.0.0.1, ssl:8443:privateKey=k.pem:certKey=c.pem,
        systemd:domain=INET:index=0.  Default: tcp:8080:interface=127.0.0.1.
        """
        self["listen"].append(description)

    def opt_trusted_proxy(self, cidr: str) -> None:
        """
        Believe X-Forwarded-For and X-Forwarded-Proto from peers in this
        CIDR range (repeatable; default: from no peer).  The client is then
        the last untrusted hop of X-Forwarded-For.
        """
        try:
            parse_network(cidr)
        except ValueError as e:
            raise usage.UsageError(f"--trusted-proxy: {e}") from None
        self["trusted-proxy"].append(cidr)

    def postOptions(self) -> None:
        if not self["listen"]:
            self["listen"] = [DEFAULT_LISTEN]
        domain = self["domain"].lower().rstrip(".")
        if not domain or not all(is_valid_label(part) for part in domain.split(".")):
            raise usage.UsageError(f"--domain {self['domain']!r} is not a valid DNS name")
        self["domain"] = domain
        if self["public-scheme"] not in (None, "http", "https"):
            raise usage.UsageError("--public-scheme must be http or https")
        interface = self["tcp-interface"]
        if not (isIPAddress(interface) or isIPv6Address(interface)):
            raise usage.UsageError(f"--tcp-interface must be an IP address (e.g. 0.0.0.0 or ::), not {interface!r}")
        for name in ("tls-dir", "acme-dir"):
            if self[name] is not None and not os.path.isdir(self[name]):
                raise usage.UsageError(f"--{name}: no such directory: {self[name]}")
        if self["agent-crl"] is not None and self["agent-ca"] is None:
            raise usage.UsageError("--agent-crl needs --agent-ca")
        if self["agent-ca"] is not None and not any(is_ssl(d) for d in self["listen"]):
            raise usage.UsageError("--agent-ca needs an ssl: --listen (the edge must see the TLS handshake)")
        for name in ("api-keys-file", "jwt-secret-file", "agent-ca", "agent-crl"):
            path = self[name]
            if path is not None and not os.path.isfile(path):
                raise usage.UsageError(f"--{name}: no such file: {path}")

    def config(self) -> EdgeConfig:
        return EdgeConfig(
            domain=self["domain"],
            data_dir=self["data-dir"],
            edge_id=self["edge-id"],
            region=self["region"],
            allow_anonymous=bool(self["allow-anonymous"]),
            advertise_url=self["advertise-url"],
            public_scheme=self["public-scheme"],
            ephemeral_ttl=self["ephemeral-ttl"],
            recreate_default_ttl=self["recreate-default-ttl"],
            recreate_max_ttl=self["recreate-max-ttl"],
            management_ttl=self["management-ttl"],
            response_timeout=self["response-timeout"],
            heartbeat_interval=self["heartbeat-interval"],
            heartbeat_timeout=self["heartbeat-timeout"],
            grace=self["grace"],
            drain_timeout=self["drain-timeout"],
            auth_failures_per_minute=self["auth-failures-per-minute"],
            stream_window=self["stream-window"],
            session_window=self["session-window"],
            max_tunnels_per_account=self["max-tunnels-per-account"],
            max_tunnels_per_address=self["max-tunnels-per-address"],
            creates_per_minute=self["creates-per-minute"],
            send_timeout=self["send-timeout"],
            stream_idle_timeout=self["stream-idle-timeout"],
            trusted_proxies=tuple(self["trusted-proxy"]),
            body_min_rate=self["body-min-rate"],
            max_connections=self["max-connections"],
            max_connections_per_ip=self["max-connections-per-ip"],
            max_byte_streams=self["max-byte-streams"],
            tcp_ports=self["tcp-ports"],
            tcp_interface=self["tcp-interface"],
            tls_dir=self["tls-dir"],
            agent_ca=self["agent-ca"],
            agent_crl=self["agent-crl"],
            redirect_listen=tuple(self["redirect-listen"]),
            acme_dir=self["acme-dir"],
        )


def _loose_secret_file(options: Options) -> str | None:
    """
    The first key, secret or API-key file that its group or others may
    use, as one line; L{None} when all are private (OpenSSH's rule).
    """
    files = [(options["api-keys-file"], "API keys file"), (options["jwt-secret-file"], "JWT secret file")]
    if options["jwt-secret-file"] is None:
        files += [(path, "signing key file") for path in key_file_paths(options["data-dir"])]
    for path, what in files:
        problem = loose_permissions(path, what)
        if problem is not None:
            return problem
    return None


def makeService(options: Options, reactor: Reactor | None = None) -> service.MultiService:
    """
    The edge's service tree: the L{EdgeService} (named C{"edge"}) and one
    L{Listener} per C{--listen}, all serving its one Site, then one per
    C{--redirect-listen} (L{netbore.edge.redirect}).  Installs
    autobahn's fast paths (L{netbore.websocket.install_fast_paths}) for the
    process.

    @param reactor: the reactor to build on; twistd passes none and gets
        the global one.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    from ..websocket import install_fast_paths
    from .site import build_edge

    install_fast_paths()

    loose = _loose_secret_file(options)
    if loose is not None:
        message = f"netbore-edge: refusing to start: {loose}"
        log.critical(message)
        sys.stderr.write(message + "\n")
        raise SystemExit(1)
    try:
        edge = build_edge(
            options.config(),
            reactor=reactor,
            api_keys_file=options["api-keys-file"],
            jwt_secret_file=options["jwt-secret-file"],
        )
    except Exception as e:  # a clear message, not a traceback, at start-up
        sys.stderr.write(f"netbore-edge: cannot start: {e}\n")
        raise SystemExit(1) from None
    parent = service.MultiService()
    edge.setName("edge")
    edge.setServiceParent(parent)
    directory = tls_directory(options["tls-dir"], options["listen"])
    for description in options["listen"]:
        try:
            if is_ssl(description):  # our TLS context factory (netbore.edge.tls)
                endpoint, certificates = ssl_listener(reactor, description, directory)
                edge.tls_listeners.append(certificates)
            else:
                endpoint = endpoints.serverFromString(reactor, description)
        except CertificateError as e:
            sys.stderr.write(f"netbore-edge: --listen {description!r}: {e}\n")
            raise SystemExit(1) from None
        except (ValueError, KeyError, TypeError, IndexError) as e:
            # IndexError: a systemd: index with no socket passed for it.
            why = "no socket was passed at that index" if isinstance(e, IndexError) else str(e)
            sys.stderr.write(f"netbore-edge: bad --listen {description!r}: {why}\n")
            raise SystemExit(1) from None
        listener = Listener(description, endpoint, edge.site)
        listener.setServiceParent(parent)
        if edge.readiness is not None:
            edge.readiness.listeners.append(listener)
    try:
        redirects = redirect_listeners(
            reactor, options["redirect-listen"], options["domain"], options["listen"], options["acme-dir"]
        )
    except (ValueError, KeyError, TypeError) as e:
        sys.stderr.write(f"netbore-edge: bad --redirect-listen: {e}\n")
        raise SystemExit(1) from None
    for redirect in redirects:  # stopped with the rest on SIGTERM
        redirect.setServiceParent(parent)
    return parent
