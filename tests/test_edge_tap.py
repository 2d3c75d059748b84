"""
C{twistd netbore-edge}'s options and service tree (L{netbore.edge.tap}):
the parsed options, and what C{makeService} builds on a memory reactor,
started without binding anything.
"""

from __future__ import annotations

import datetime
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.application.service import IServiceCollection
from twisted.internet.endpoints import SSL4ServerEndpoint, TCP4ServerEndpoint
from twisted.internet.error import CannotListenError
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from netbore.edge.config import EdgeConfig
from netbore.edge.registry import IRegistry
from netbore.edge.site import EdgeService, EdgeSite
from netbore.edge.tap import DEFAULT_LISTEN, Listener, Options, makeService
from netbore.websocket.batched import BatchedWebSocket
from netbore.websocket.fastpaths import install_fast_paths, on_message_end_known, remove_fast_paths

SECRET = "s" * 40


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


def children(parent: Any) -> list[Any]:
    return list(IServiceCollection(parent))


# -- options ---------------------------------------------------------------------


def test_defaults() -> None:
    options = parse()
    assert options["listen"] == [DEFAULT_LISTEN] == ["tcp:8080:interface=127.0.0.1"]
    assert options["domain"] == "localhost"
    assert options["data-dir"] == "netbore-data"
    assert not options["allow-anonymous"]
    assert options["api-keys-file"] is None
    assert options["jwt-secret-file"] is None
    assert options["advertise-url"] is None
    assert options.config() == EdgeConfig()


def test_every_contract_option(tmp_path: Path) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("alice k-1\n")
    secret = tmp_path / "jwt-secret"
    secret.write_text(SECRET + "\n")
    options = parse(
        "--listen", "tcp:8081:interface=127.0.0.1",
        "--listen", "tcp:8082:interface=127.0.0.1",
        "--domain", "Tunnel.Example.COM.",
        "--data-dir", str(tmp_path / "data"),
        "--allow-anonymous",
        "--api-keys-file", str(keys),
        "--jwt-secret-file", str(secret),
        "--ephemeral-ttl", "120.5",
        "--recreate-max-ttl", "3600",
        "--response-timeout", "5",
        "--heartbeat-interval", "2",
        "--heartbeat-timeout", "3",
        "--grace", "4",
        "--drain-timeout", "6",
        "--auth-failures-per-minute", "7",
        "--advertise-url", "wss://edge.example.com/connect",
        "--public-scheme", "https",
        "--edge-id", "edge-9",
        "--region", "eu",
        "--recreate-default-ttl", "600",
        "--management-ttl", "60",
        "--stream-window", "65536",
        "--session-window", "131072",
    )  # fmt: skip
    # --listen is repeatable and keeps the order given; no default added.
    assert options["listen"] == ["tcp:8081:interface=127.0.0.1", "tcp:8082:interface=127.0.0.1"]
    assert options["api-keys-file"] == str(keys)
    assert options["jwt-secret-file"] == str(secret)
    assert options.config() == EdgeConfig(
        domain="tunnel.example.com",  # case-folded, trailing dot dropped
        data_dir=str(tmp_path / "data"),
        edge_id="edge-9",
        region="eu",
        allow_anonymous=True,
        advertise_url="wss://edge.example.com/connect",
        public_scheme="https",
        ephemeral_ttl=120.5,
        recreate_default_ttl=600.0,
        recreate_max_ttl=3600.0,
        management_ttl=60.0,
        response_timeout=5.0,
        heartbeat_interval=2.0,
        heartbeat_timeout=3.0,
        grace=4.0,
        drain_timeout=6.0,
        auth_failures_per_minute=7,
        stream_window=65536,
        session_window=131072,
    )


def test_help_lists_every_contract_option() -> None:
    text = str(Options())
    for option in [
        "--listen", "--domain", "--data-dir", "--allow-anonymous", "--api-keys-file", "--jwt-secret-file",
        "--ephemeral-ttl", "--recreate-max-ttl", "--response-timeout", "--heartbeat-interval",
        "--heartbeat-timeout", "--grace", "--drain-timeout", "--auth-failures-per-minute", "--advertise-url",
    ]:  # fmt: skip
        assert option in text


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--ephemeral-ttl", "0"], "--ephemeral-ttl must be a number greater than zero, not '0'"),
        (["--grace", "soon"], "--grace must be a number greater than zero, not 'soon'"),
        (["--drain-timeout", "-1"], "--drain-timeout must be a number greater than zero, not '-1'"),
        (["--response-timeout", "inf"], "--response-timeout must be a number greater than zero, not 'inf'"),
        (["--heartbeat-interval", "nan"], "--heartbeat-interval must be a number greater than zero, not 'nan'"),
        (
            ["--auth-failures-per-minute", "1.5"],
            "--auth-failures-per-minute must be a whole number greater than zero, not '1.5'",
        ),
        (["--domain", "bad_domain"], "--domain 'bad_domain' is not a valid DNS name"),
        (["--domain", "."], "--domain '.' is not a valid DNS name"),
        (["--public-scheme", "ftp"], "--public-scheme must be http or https"),
        (["--api-keys-file", "/nonexistent/keys"], "--api-keys-file: no such file: /nonexistent/keys"),
        (["--jwt-secret-file", "/nonexistent/secret"], "--jwt-secret-file: no such file: /nonexistent/secret"),
        (["--no-such-option"], "option --no-such-option not recognized"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], message: str) -> None:
    with pytest.raises(usage.UsageError) as refused:
        parse(*argv)
    assert message in str(refused.value)


# -- the service tree --------------------------------------------------------------


def test_service_tree(tmp_path: Path) -> None:
    """
    One L{EdgeService} named C{edge}, then one L{Listener} per C{--listen}
    in order, each with its description and serving the edge's one Site.
    """
    reactor = MemoryReactorClock()
    options = parse(
        "--data-dir", str(tmp_path / "data"),
        "--listen", "tcp:8081:interface=127.0.0.1",
        "--listen", "tcp:8082",
    )  # fmt: skip
    parent = makeService(options, reactor=reactor)
    edge, *listeners = children(parent)
    assert isinstance(edge, EdgeService)
    assert edge.name == "edge"
    assert edge.config == options.config()
    assert isinstance(edge.site, EdgeSite)
    assert IRegistry.providedBy(edge.registry)
    assert isinstance(edge.authority.jwks()["keys"], list)
    assert [type(listener) for listener in listeners] == [Listener, Listener]
    assert [listener.description for listener in listeners] == ["tcp:8081:interface=127.0.0.1", "tcp:8082"]
    assert all(isinstance(listener.endpoint, TCP4ServerEndpoint) for listener in listeners)
    assert all(listener.factory is edge.site for listener in listeners)
    # RS256 by default: the first key was made in --data-dir, mode 0700.
    assert oct(os.stat(tmp_path / "data").st_mode & 0o777) == "0o700"
    assert len(list((tmp_path / "data" / "keys").iterdir())) == 1


def test_starting_listens_on_each_endpoint_and_nothing_else(tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    options = parse("--data-dir", str(tmp_path), "--listen", "tcp:8081:interface=127.0.0.1", "--listen", "tcp:8082")
    parent = makeService(options, reactor=reactor)
    site = children(parent)[0].site
    parent.privilegedStartService()
    parent.startService()
    try:
        assert [(port, factory, interface) for port, factory, _, interface in reactor.tcpServers] == [
            (8081, site, "127.0.0.1"),
            (8082, site, ""),
        ]
        assert reactor.tcpClients == []
        assert site.reactor is reactor
    finally:
        parent.stopService()


def test_default_listener(tmp_path: Path) -> None:
    reactor = MemoryReactorClock()
    parent = makeService(parse("--data-dir", str(tmp_path)), reactor=reactor)
    parent.privilegedStartService()
    parent.startService()
    try:
        assert [(port, interface) for port, _, _, interface in reactor.tcpServers] == [(8080, "127.0.0.1")]
    finally:
        parent.stopService()


def _self_signed(tmp_path: Path) -> tuple[Path, Path]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    key_path, cert_path = tmp_path / "k.pem", tmp_path / "c.pem"
    key_path.write_bytes(
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())
    )
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return key_path, cert_path


def test_ssl_listener(tmp_path: Path) -> None:
    key, cert = _self_signed(tmp_path)
    description = f"ssl:8443:privateKey={key}:certKey={cert}"
    reactor = MemoryReactorClock()
    parent = makeService(parse("--data-dir", str(tmp_path / "data"), "--listen", description), reactor=reactor)
    listener = children(parent)[1]
    assert listener.description == description
    assert isinstance(listener.endpoint, SSL4ServerEndpoint)
    parent.privilegedStartService()
    parent.startService()
    try:
        assert [(port, factory) for port, factory, *_ in reactor.sslServers] == [(8443, children(parent)[0].site)]
    finally:
        parent.stopService()


def test_hs256_with_a_secret_file(tmp_path: Path) -> None:
    secret = tmp_path / "secret"
    secret.write_text(SECRET)
    secret.chmod(0o600)
    options = parse("--data-dir", str(tmp_path / "data"), "--jwt-secret-file", str(secret))
    edge = children(makeService(options, reactor=MemoryReactorClock()))[0]
    assert edge.authority.algorithm == "HS256"
    # HS256 makes no signing keys; --data-dir holds only the revocations
    # of deleted tunnels, which must survive a restart whatever signs tokens.
    assert sorted(p.name for p in (tmp_path / "data").iterdir() if not p.name.endswith(("-wal", "-shm"))) == [
        "revocations.sqlite3"
    ]


@pytest.mark.parametrize(
    "listen, message",
    [
        ("tcp:notaport", "bad --listen 'tcp:notaport': invalid literal for int()"),
        ("nonsense:1", "bad --listen 'nonsense:1': Unknown endpoint type: 'nonsense'"),
        ("systemd:domain=INET:index=0", "bad --listen 'systemd:domain=INET:index=0': no socket was passed"),
    ],
)
def test_bad_listen_stops_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], listen: str, message: str
) -> None:
    # (This process was not socket-activated: systemd passed no sockets.)
    options = parse("--data-dir", str(tmp_path), "--listen", listen)
    with pytest.raises(SystemExit) as stopped:
        makeService(options, reactor=MemoryReactorClock())
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("netbore-edge: " + message), err
    assert "Traceback" not in err


def test_unusable_keys_stop_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    secret = tmp_path / "secret"
    secret.write_text("short\n")
    secret.chmod(0o600)
    with pytest.raises(SystemExit) as stopped:
        makeService(parse("--jwt-secret-file", str(secret)), reactor=MemoryReactorClock())
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith(f"netbore-edge: cannot start: {secret} line 1: HS256 secret is 5 bytes"), err


class _TakenReactor(MemoryReactorClock):
    def listenTCP(self, port: int, factory: Any, backlog: int = 50, interface: str = "") -> Any:
        raise CannotListenError(interface, port, OSError(98, "Address already in use"))


def test_failed_bind_stops_at_start_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    parent = makeService(parse("--data-dir", str(tmp_path), "--listen", "tcp:8081"), reactor=_TakenReactor())
    with pytest.raises(SystemExit) as stopped:
        parent.privilegedStartService()
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.startswith("netbore-edge: cannot listen on tcp:8081: [Errno 98] Address already in use"), err


@pytest.fixture
def autobahn_as_it_is() -> Iterator[None]:
    """
    autobahn without netbore's fast paths during the test, and as it was
    after it.
    """
    was = BatchedWebSocket.skip_message_observers
    remove_fast_paths()
    yield
    if was:
        install_fast_paths()
    else:
        remove_fast_paths()


@pytest.mark.usefixtures("autobahn_as_it_is")
def test_make_service_installs_autobahn_fast_paths(tmp_path: Path) -> None:
    if not on_message_end_known():
        pytest.skip("the installed autobahn is not the one the fast paths know")
    assert not BatchedWebSocket.skip_message_observers
    makeService(parse("--data-dir", str(tmp_path)), reactor=MemoryReactorClock())
    assert BatchedWebSocket.skip_message_observers


# -- issue 10: secret files private to their owner; --trusted-proxy ---------------


@pytest.mark.parametrize("mode", [0o644, 0o640, 0o604, 0o660])
@pytest.mark.parametrize("which", ["api-keys-file", "jwt-secret-file", "signing key"])
def test_a_secret_file_others_may_read_stops_the_edge_with_one_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str, mode: int
) -> None:
    keys = tmp_path / "api-keys"
    keys.write_text("alice k-1\n")
    keys.chmod(0o600)
    secret = tmp_path / "jwt-secret"
    secret.write_text(SECRET + "\n")
    secret.chmod(0o600)
    data = tmp_path / "data"
    makeService(parse("--data-dir", str(data)), reactor=MemoryReactorClock())  # creates a key, 0600
    (key_file,) = (data / "keys").iterdir()
    argv = ["--data-dir", str(data), "--api-keys-file", str(keys)]
    if which == "jwt-secret-file":
        argv += ["--jwt-secret-file", str(secret)]
    loose = {"api-keys-file": keys, "jwt-secret-file": secret, "signing key": key_file}[which]
    loose.chmod(mode)
    with pytest.raises(SystemExit) as stopped:
        makeService(parse(*argv), reactor=MemoryReactorClock())
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1, err
    assert err.startswith("netbore-edge: refusing to start: "), err
    assert f"{loose} is accessible by group or others (mode {mode:04o}); run: chmod 600 {loose}" in err
    loose.chmod(0o600)  # and with the mode fixed it starts
    makeService(parse(*argv), reactor=MemoryReactorClock())


def test_trusted_proxy_is_repeatable_and_checked() -> None:
    options = parse("--trusted-proxy", "10.0.0.0/8", "--trusted-proxy", "2001:db8::/32", "--trusted-proxy", "127.0.0.1")
    assert options.config().trusted_proxies == ("10.0.0.0/8", "2001:db8::/32", "127.0.0.1")
    assert parse().config().trusted_proxies == ()
    with pytest.raises(usage.UsageError, match="--trusted-proxy: 'nonsense' is not an IP address or CIDR range"):
        parse("--trusted-proxy", "nonsense")
