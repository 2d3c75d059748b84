"""
The agent's settings: command line over YAML config file over defaults.

The YAML file has the shape of seed 001 §5 (C{agent_id}, C{origin},
C{control_url}, C{requested_name}; C{tcp} instead of C{origin} for a TCP
tunnel) and may also set any command-line option
by its long name, with C{-} or C{_}.  Unknown keys and wrong types stop the
agent at start with a message naming the key.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Callable
from typing import Any
from urllib.parse import urlsplit

import attrs

__all__ = ["AgentConfig", "ConfigError", "DEFAULTS", "OPTION_TYPES", "load_config_file", "merge", "tcp_address"]


class ConfigError(Exception):
    """
    The configuration is unusable; the message names the key.
    """


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("a non-empty string")
    return value.strip()


def _duration(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str):
            try:
                value = float(value)
            except ValueError:
                raise TypeError("a number of seconds") from None
        else:
            raise TypeError("a number of seconds")
    if value <= 0:
        raise TypeError("a number of seconds greater than zero")
    return float(value)


def _seconds_int(value: Any) -> int:
    number = _duration(value)
    if number != int(number) or number < 60:
        raise TypeError("a whole number of seconds, at least 60")
    return int(number)


def _tls_version(value: Any) -> str:
    text = str(value).strip() if isinstance(value, (str, float)) else ""
    if text not in ("1.2", "1.3"):
        raise TypeError("1.2 or 1.3")
    return text


#: A host name: dot-separated labels of letters, digits, C{-} and C{_}.
_HOST_NAME = re.compile(r"(?!-)[A-Za-z0-9_-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9_-]{1,63}(?<!-))*\.?")


def tcp_address(text: str) -> tuple[str, int]:
    """
    C{HOST:PORT} (a name, an IPv4 address or C{[IPv6]}; PORT 1-65535) as
    C{(host, port)}, the IPv6 address without its brackets.

    @raise ValueError: with what is wrong.
    """
    host, colon, port_text = text.rpartition(":")
    if not colon or not host:
        raise ValueError("no HOST: before the port")
    if not port_text.isdigit() or not 1 <= int(port_text) <= 65535:
        raise ValueError("the port must be a number from 1 to 65535")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise ValueError(f"{host!r} is not an IPv6 address") from None
    elif ":" in host:
        raise ValueError("an IPv6 address goes in brackets, [::1]:5432")
    elif _HOST_NAME.fullmatch(host) is None or len(host) > 253:
        raise ValueError(f"{host!r} is not a host name or address")
    return host, int(port_text)


#: Every setting, by its long option name, with its coercion.
OPTION_TYPES: dict[str, Callable[[Any], Any]] = {
    "control-url": _text,
    "origin": _text,
    "name": _text,
    "agent-id": _text,
    "api-key-file": _text,
    "state-file": _text,
    "ca-cert": _text,
    "host-header": _text,
    "recreate-ttl": _seconds_int,
    "backoff-base": _duration,
    "backoff-cap": _duration,
    "drain-timeout": _duration,
    "heartbeat-interval": _duration,
    "heartbeat-timeout": _duration,
    "tcp": _text,
    "tls-min": _tls_version,
    "origin-ca-cert": _text,
    "client-cert": _text,
    "client-key": _text,
    "metrics": _text,
}

#: Seed 001 §5 names for some options.
ALIASES = {"requested-name": "name"}

DEFAULTS: dict[str, Any] = {
    "control-url": "http://localhost:8080",
    "origin": None,
    "name": None,
    "agent-id": None,
    "api-key-file": None,
    "state-file": None,
    "ca-cert": None,
    "host-header": None,
    "recreate-ttl": 7 * 86400,
    "backoff-base": 1.0,
    "backoff-cap": 60.0,
    "drain-timeout": 10.0,
    "heartbeat-interval": 10.0,
    "heartbeat-timeout": 10.0,
    "tcp": None,
    "tls-min": "1.2",
    "origin-ca-cert": None,
    "client-cert": None,
    "client-key": None,
    "metrics": None,
}


def load_config_file(path: str) -> dict[str, Any]:
    """
    Read a YAML config file into settings by long option name.
    """
    import yaml  # only an agent given --config needs it resident

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f)
    except OSError as e:
        raise ConfigError(f"cannot read config file {path}: {e.strerror}") from e
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {path} is not valid YAML: {e}") from e
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"config file {path} must hold a mapping of settings")
    settings: dict[str, Any] = {}
    for key, value in data.items():
        if not isinstance(key, str):
            raise ConfigError(f"config file {path}: key {key!r} is not a string")
        name = key.replace("_", "-")
        name = ALIASES.get(name, name)
        if name not in OPTION_TYPES:
            raise ConfigError(f"config file {path}: unknown key {key!r}")
        if name in settings:
            raise ConfigError(f"config file {path}: {key!r} sets {name!r} a second time")
        try:
            settings[name] = OPTION_TYPES[name](value)
        except TypeError as e:
            raise ConfigError(f"config file {path}: {key!r} must be {e}, not {value!r}") from None
    return settings


@attrs.frozen
class AgentConfig:
    control_url: str
    origin: str | None
    name: str | None
    agent_id: str | None
    api_key_file: str | None
    state_file: str | None
    ca_cert: str | None
    host_header: str | None
    recreate_ttl: int
    backoff_base: float
    backoff_cap: float
    drain_timeout: float
    heartbeat_interval: float
    heartbeat_timeout: float
    #: A TCP tunnel's local address (C{HOST:PORT}), instead of C{origin}.
    tcp: str | None = None
    #: The lowest TLS version offered to the edge (C{"1.2"} or C{"1.3"}).
    tls_min: str = "1.2"
    #: A CA (PEM) to trust for an C{https://} origin, instead of the system's.
    origin_ca_cert: str | None = None
    #: The agent's client certificate (PEM) and its key, presented to the
    #: edge (control API and wss) for an edge with C{--agent-ca}.
    client_cert: str | None = None
    client_key: str | None = None
    #: Where to serve Prometheus metrics (a Twisted server endpoint string,
    #: C{--metrics}); off if L{None}.
    metrics: str | None = None


def merge(command_line: dict[str, Any], config_file: dict[str, Any]) -> AgentConfig:
    """
    Command line wins over the config file, which wins over the defaults.
    """
    values = dict(DEFAULTS)
    values.update({k: v for k, v in config_file.items() if v is not None})
    values.update({k: v for k, v in command_line.items() if v is not None})
    origin, tcp = values["origin"], values["tcp"]
    if not origin and not tcp:
        raise ConfigError(
            "--origin is required, or --tcp HOST:PORT for a TCP service ('origin' or 'tcp' in the config file)"
        )
    if origin and tcp:
        raise ConfigError("give --origin (an HTTP service) or --tcp (a TCP service), not both")
    if tcp:
        try:
            tcp_address(tcp)
        except ValueError as e:
            raise ConfigError(f"tcp must be HOST:PORT (an IPv6 HOST in brackets), not {tcp!r}: {e}") from None
        if values["host-header"] is not None:
            raise ConfigError("host-header applies to an HTTP origin, not to --tcp")
    for key in ("origin", "control-url") if origin else ("control-url",):
        parts = urlsplit(values[key])
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ConfigError(f"{key} must be an http:// or https:// URL, not {values[key]!r}")
    if values["origin-ca-cert"] is not None and urlsplit(origin or "").scheme != "https":
        raise ConfigError("origin-ca-cert applies to an https:// origin")
    if (values["client-cert"] is None) != (values["client-key"] is None):
        raise ConfigError("client-cert and client-key go together")
    if values["backoff-cap"] < values["backoff-base"]:
        raise ConfigError("backoff-cap must not be smaller than backoff-base")
    return AgentConfig(**{k.replace("-", "_"): v for k, v in values.items()})
