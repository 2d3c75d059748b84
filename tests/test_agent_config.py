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

from netbore.agent.config import DEFAULTS, AgentConfig, ConfigError, load_config_file, merge
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
