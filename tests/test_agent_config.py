"""
The agent's settings: command line over the YAML file over the defaults;
keys with C{-} or C{_}; seed 001's C{requested_name}; refusals that name the
key.  Through L{netbore.agent.tap.Options}, as twistd parses them (the
options alone, and the service tree, are tested in C{test_agent_tap.py}).
"""

from __future__ import annotations

from pathlib import Path

import pytest
from twisted.python import usage

from netbore.agent.config import DEFAULTS, AgentConfig, ConfigError, load_config_file, merge, tcp_address
from netbore.agent.tap import Options


def parse(*argv: str) -> AgentConfig:
    options = Options()
    options.parseOptions(list(argv))
    return options.agent_config


def write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "agent.yaml"
    path.write_text(text)
    return str(path)


def test_seed_shape_and_every_option_by_long_name(tmp_path: Path) -> None:
    key, ca = tmp_path / "key", tmp_path / "ca.pem"
    key.write_text("k\n")
    ca.write_text("")
    path = write(
        tmp_path,
        f"""
agent_id: laptop-1
origin: http://127.0.0.1:3000
control_url: https://tunnel.example.com
requested_name: myapp
state-file: /var/lib/netbore-agent/state.json
api_key_file: {key}
ca-cert: {ca}
host_header: rewrite
recreate_ttl: 3600
backoff-base: 0.5
backoff_cap: 2
drain_timeout: 20
heartbeat-interval: 5
heartbeat_timeout: 2.5
""",
    )
    config = parse("--config", path)
    assert config == AgentConfig(
        control_url="https://tunnel.example.com",
        origin="http://127.0.0.1:3000",
        name="myapp",
        agent_id="laptop-1",
        api_key_file=str(key),
        state_file="/var/lib/netbore-agent/state.json",
        ca_cert=str(ca),
        host_header="rewrite",
        recreate_ttl=3600,
        backoff_base=0.5,
        backoff_cap=2.0,
        drain_timeout=20.0,
        heartbeat_interval=5.0,
        heartbeat_timeout=2.5,
    )


def test_command_line_wins_over_file_which_wins_over_defaults(tmp_path: Path) -> None:
    path = write(tmp_path, "origin: http://127.0.0.1:3000\nname: from-file\nbackoff_cap: 30\nheartbeat-interval: 3\n")
    config = parse("--config", path, "--name", "from-cli", "--backoff-cap", "5")
    assert config.name == "from-cli"  # command line
    assert config.backoff_cap == 5.0  # command line
    assert config.heartbeat_interval == 3.0  # file
    assert config.heartbeat_timeout == DEFAULTS["heartbeat-timeout"]  # default
    assert config.origin == "http://127.0.0.1:3000"  # file only


def test_option_order_does_not_matter(tmp_path: Path) -> None:
    path = write(tmp_path, "origin: http://127.0.0.1:3000\nname: from-file\n")
    assert parse("--name", "from-cli", "--config", path).name == "from-cli"


def test_requested_name_is_an_alias_of_name(tmp_path: Path) -> None:
    assert load_config_file(write(tmp_path, "requested-name: a\n")) == {"name": "a"}
    assert load_config_file(write(tmp_path, "requested_name: a\n")) == {"name": "a"}


def test_empty_file_is_no_settings(tmp_path: Path) -> None:
    assert load_config_file(write(tmp_path, "")) == {}
    assert load_config_file(write(tmp_path, "# nothing yet\n")) == {}


@pytest.mark.parametrize(
    "text, words",
    [
        ("heartbeat_intervall: 5\n", ["unknown key", "'heartbeat_intervall'"]),
        ("config: other.yaml\n", ["unknown key", "'config'"]),
        ("backoff_cap: soon\n", ["'backoff_cap'", "number of seconds", "'soon'"]),
        ("backoff-cap: true\n", ["'backoff-cap'", "number of seconds"]),
        ("drain_timeout: -1\n", ["'drain_timeout'", "greater than zero"]),
        ("origin: 3000\n", ["'origin'", "string"]),
        ("name: [a, b]\n", ["'name'", "string"]),
        ("recreate_ttl: 10\n", ["'recreate_ttl'", "at least 60"]),
        ("name: a\nrequested_name: b\n", ["'requested_name'", "second time"]),
        ("state-file: a\nstate_file: b\n", ["'state_file'", "second time"]),
        ("- origin\n", ["mapping"]),
        ("origin: [unclosed\n", ["not valid YAML"]),
        ("1: x\n", ["1", "not a string"]),
    ],
)
def test_file_errors_name_the_key(tmp_path: Path, text: str, words: list[str]) -> None:
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as caught:
        load_config_file(path)
    for word in words:
        assert word in str(caught.value)
    # And through the command line: a usage error, so twistd stops at start.
    with pytest.raises(usage.UsageError) as refused:
        parse("--origin", "http://127.0.0.1:3000", "--config", path)
    assert str(refused.value) == str(caught.value)


def test_missing_file(tmp_path: Path) -> None:
    with pytest.raises(usage.UsageError, match="cannot read config file"):
        parse("--config", str(tmp_path / "nope.yaml"))


def test_merge_ignores_unset_command_line_values() -> None:
    config = merge({"name": None, "origin": None}, {"origin": "http://127.0.0.1:1", "name": "n"})
    assert (config.origin, config.name) == ("http://127.0.0.1:1", "n")


# -- TCP tunnels (issue 11): --tcp HOST:PORT instead of --origin -------------------


@pytest.mark.parametrize(
    "address, parsed",
    [
        ("127.0.0.1:5432", ("127.0.0.1", 5432)),
        ("db.internal:5432", ("db.internal", 5432)),
        ("localhost:22", ("localhost", 22)),
        ("[::1]:22", ("::1", 22)),
        ("[2001:db8::7]:65535", ("2001:db8::7", 65535)),
        ("h:1", ("h", 1)),
    ],
)
def test_tcp_option(address: str, parsed: tuple[str, int]) -> None:
    config = parse("--tcp", address)
    assert config.tcp == address and config.origin is None
    assert tcp_address(config.tcp) == parsed


def test_tcp_in_the_config_file(tmp_path: Path) -> None:
    config = parse("--config", write(tmp_path, 'tcp: "127.0.0.1:5432"\nrequested_name: db\n'))
    assert (config.tcp, config.origin, config.name) == ("127.0.0.1:5432", None, "db")
    assert DEFAULTS["tcp"] is None and parse("--origin", "http://127.0.0.1:3000").tcp is None


@pytest.mark.parametrize(
    "argv, words",
    [
        (["--tcp", "127.0.0.1:5432", "--origin", "http://127.0.0.1:3000"], "not both"),
        (["--tcp", "5432"], "tcp must be HOST:PORT"),
        (["--tcp", ":5432"], "tcp must be HOST:PORT"),
        (["--tcp", "127.0.0.1:0"], "1 to 65535"),
        (["--tcp", "127.0.0.1:65536"], "1 to 65535"),
        (["--tcp", "127.0.0.1:ssh"], "1 to 65535"),
        (["--tcp", "::1:22"], "in brackets"),
        (["--tcp", "[nope]:22"], "not an IPv6 address"),
        (["--tcp", "bad host:22"], "not a host name"),
        (["--tcp", "http://127.0.0.1:5432"], "tcp must be HOST:PORT"),
        (["--tcp", "127.0.0.1:5432", "--host-header", "rewrite"], "host-header applies to an HTTP origin"),
        ([], "or --tcp HOST:PORT"),
    ],
)
def test_bad_tcp_is_a_usage_error(argv: list[str], words: str) -> None:
    with pytest.raises(usage.UsageError) as refused:
        parse(*argv)
    assert words in str(refused.value)


def test_tcp_and_origin_in_the_file_and_on_the_command_line(tmp_path: Path) -> None:
    # Exactly one, wherever each comes from.
    path = write(tmp_path, "origin: http://127.0.0.1:3000\n")
    with pytest.raises(usage.UsageError, match="not both"):
        parse("--config", path, "--tcp", "127.0.0.1:22")
