"""
C{twistd netbore-agent}'s options and service tree (L{netbore.agent.tap}):
the parsed options, and what C{makeService} builds on a memory reactor,
started without opening anything real.  The YAML config file's keys are
tested in C{test_agent_config.py}.
"""

from __future__ import annotations

import datetime
import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage

from netbore.agent.config import AgentConfig
from netbore.agent.forwarder import OriginForwarder
from netbore.agent.service import AgentService
from netbore.agent.tap import Options, makeService
from netbore.websocket.batched import BatchedWebSocket
from netbore.websocket.fastpaths import install_fast_paths, on_message_end_known, remove_fast_paths
from netbore.writes import WriteBatch

ORIGIN = "http://127.0.0.1:3000"


def options(*argv: str) -> Options:
    parsed = Options()
    parsed.parseOptions(list(argv))
    return parsed


def parse(*argv: str) -> AgentConfig:
    return options(*argv).agent_config


def _ca_cert(tmp_path: Path) -> Path:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "netbore test CA")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


# -- options ---------------------------------------------------------------------


def test_defaults() -> None:
    config = parse("--origin", ORIGIN)
    assert config == AgentConfig(
        control_url="http://localhost:8080",
        origin="http://127.0.0.1:3000",
        name=None,
        agent_id=None,
        api_key_file=None,
        state_file=None,
        ca_cert=None,
        host_header=None,
        recreate_ttl=7 * 86400,
        backoff_base=1.0,
        backoff_cap=60.0,
        drain_timeout=10.0,
        heartbeat_interval=10.0,
        heartbeat_timeout=10.0,
    )


def test_every_contract_option(tmp_path: Path) -> None:
    key = tmp_path / "api-key"
    key.write_text("  k-123\n")
    ca = _ca_cert(tmp_path)
    config_file = tmp_path / "agent.yaml"
    config_file.write_text("agent_id: laptop-1\n")
    config = parse(
        "--control-url", "https://tunnel.example.com",
        "--origin", ORIGIN,
        "--name", "myapp",
        "--api-key-file", str(key),
        "--state-file", str(tmp_path / "state.json"),
        "--config", str(config_file),
        "--ca-cert", str(ca),
        "--recreate-ttl", "3600",
        "--backoff-base", "0.5",
        "--backoff-cap", "2",
        "--drain-timeout", "20",
        "--heartbeat-interval", "5",
        "--heartbeat-timeout", "2.5",
        "--host-header", "rewrite",
    )  # fmt: skip
    assert config == AgentConfig(
        control_url="https://tunnel.example.com",
        origin=ORIGIN,
        name="myapp",
        agent_id="laptop-1",  # from --config
        api_key_file=str(key),
        state_file=str(tmp_path / "state.json"),
        ca_cert=str(ca),
        host_header="rewrite",
        recreate_ttl=3600,
        backoff_base=0.5,
        backoff_cap=2.0,
        drain_timeout=20.0,
        heartbeat_interval=5.0,
        heartbeat_timeout=2.5,
    )


def test_help_lists_every_contract_option() -> None:
    text = str(Options())
    for option in [
        "--control-url", "--origin", "--name", "--api-key-file", "--state-file", "--config", "--ca-cert",
        "--recreate-ttl", "--backoff-base", "--backoff-cap", "--drain-timeout", "--heartbeat-interval",
        "--heartbeat-timeout", "--host-header", "--tcp",
    ]:  # fmt: skip
        assert option in text


@pytest.mark.parametrize(
    "argv, words",
    [
        ([], "--origin is required"),
        (["--origin", "127.0.0.1:3000"], "origin must be an http"),
        (["--origin", ORIGIN, "--control-url", "ftp://x"], "control-url must be an http"),
        (["--origin", ORIGIN, "--backoff-base", "5", "--backoff-cap", "2"], "backoff-cap must not be smaller"),
        (
            ["--origin", ORIGIN, "--heartbeat-timeout", "soon"],
            "--heartbeat-timeout must be a number of seconds, not 'soon'",
        ),
        (["--origin", ORIGIN, "--drain-timeout", "0"], "--drain-timeout must be a number of seconds greater than zero"),
        (["--origin", ORIGIN, "--recreate-ttl", "10"], "--recreate-ttl must be a whole number of seconds, at least 60"),
        (["--origin", ORIGIN, "--api-key-file", "/nonexistent/key"], "--api-key-file: no such file: /nonexistent/key"),
        (["--origin", ORIGIN, "--ca-cert", "/nonexistent/ca.pem"], "--ca-cert: no such file: /nonexistent/ca.pem"),
        (["--origin", ORIGIN, "--no-such-option"], "option --no-such-option not recognized"),
    ],
)
def test_bad_values_are_usage_errors(argv: list[str], words: str) -> None:
    with pytest.raises(usage.UsageError) as refused:
        parse(*argv)
    assert words in str(refused.value)


def test_missing_file_named_in_the_config_file_is_a_usage_error(tmp_path: Path) -> None:
    config_file = tmp_path / "agent.yaml"
    config_file.write_text(f"origin: {ORIGIN}\napi_key_file: {tmp_path / 'nope'}\n")
    with pytest.raises(usage.UsageError, match="--api-key-file: no such file"):
        parse("--config", str(config_file))


# -- the service tree --------------------------------------------------------------


def test_service_tree(tmp_path: Path) -> None:
    """
    One L{AgentService} named C{agent}, built from the parsed settings: the
    API key read from its file, the CA loaded, the forwarder for the origin.
    """
    key = tmp_path / "api-key"
    key.write_text("k-123\n")
    parsed = options("--origin", ORIGIN, "--api-key-file", str(key), "--ca-cert", str(_ca_cert(tmp_path)))
    reactor = MemoryReactorClock()
    agent = makeService(parsed, reactor=reactor)
    assert isinstance(agent, AgentService)
    assert agent.name == "agent"
    assert agent.parent is None
    assert agent.config is parsed.agent_config
    assert agent.reactor is reactor
    assert agent.api_key == "k-123"
    assert agent.trust is not None
    assert isinstance(agent.forwarder, OriginForwarder)
    # One write batch for the process: the origin connections use the
    # agent's (the session factory is given it too).
    assert isinstance(agent.writes, WriteBatch)
    assert agent.forwarder.pool.writes is agent.writes
    assert agent.agent_id.startswith("agent-")
    assert (reactor.tcpClients, reactor.getDelayedCalls()) == ([], [])  # nothing before start


def test_starting_reaches_for_the_control_api_only(tmp_path: Path) -> None:
    """
    Started on a memory reactor, the agent's first act is one connection
    to the control API; its state file says C{offline} until a session is
    up.
    """
    state = tmp_path / "state.json"
    parsed = options("--origin", ORIGIN, "--control-url", "http://127.0.0.1:8089", "--state-file", str(state))
    reactor = MemoryReactorClock()
    agent = makeService(parsed, reactor=reactor)
    agent.startService()
    try:
        assert [(host, port) for host, port, *_ in reactor.tcpClients] == [("127.0.0.1", 8089)]
        assert reactor.tcpServers == []
        assert json.loads(state.read_text())["state"] == "offline"
    finally:
        agent.stopService()


def test_unusable_files_stop_with_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = tmp_path / "api-key"
    key.write_text("two words\n")
    key.chmod(0o600)
    parsed = options("--origin", ORIGIN, "--api-key-file", str(key))
    with pytest.raises(SystemExit) as stopped:
        makeService(parsed, reactor=MemoryReactorClock())
    assert stopped.value.code == 1
    err = capsys.readouterr().err
    assert err == f"netbore-agent: cannot start: API key file {key} must hold the key alone, without blanks\n"


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
    makeService(options("--origin", ORIGIN), reactor=MemoryReactorClock())
    assert BatchedWebSocket.skip_message_observers


@pytest.mark.parametrize("which", ["api-key-file", "state-file"])
def test_a_credential_file_others_may_read_is_warned_about_and_the_agent_goes_on(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], which: str
) -> None:
    """
    Issue 10: like OpenSSH's client, the agent warns about an API key or
    state file that its group or others may read, and starts all the same.
    """
    key = tmp_path / "api-key"
    key.write_text("k-123\n")
    key.chmod(0o600)
    state = tmp_path / "state.json"
    state.write_text("{}\n")
    state.chmod(0o600)
    loose = {"api-key-file": key, "state-file": state}[which]
    loose.chmod(0o644)
    parsed = options("--origin", ORIGIN, "--api-key-file", str(key), "--state-file", str(state))
    agent = makeService(parsed, reactor=MemoryReactorClock())
    assert isinstance(agent, AgentService) and agent.api_key == "k-123"
    err = capsys.readouterr().err
    assert (
        err
        == "netbore-agent: WARNING: "
        + (f"API key file {key}" if which == "api-key-file" else f"state file (it holds the recreate token) {state}")
        + f" is accessible by group or others (mode 0644); run: chmod 600 {loose}\n"
    )
    loose.chmod(0o600)
    makeService(parsed, reactor=MemoryReactorClock())
    assert capsys.readouterr().err == ""
