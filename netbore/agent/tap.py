"""
C{twistd netbore-agent}: command-line options and the service tree.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Callable
from typing import Any

from twisted.application import service
from twisted.logger import Logger
from twisted.python import usage

from .._types import Reactor
from ..auth.filemodes import loose_permissions
from .config import OPTION_TYPES, AgentConfig, ConfigError, load_config_file, merge

__all__ = ["Options", "makeService"]

#: Options naming files that must exist (checked once the config file is
#: merged, so that a missing file stops twistd with a usage error).
_FILES = ("api-key-file", "ca-cert", "origin-ca-cert", "client-cert", "client-key")

#: The agent's files that hold a credential, and what to call each.
_SECRET_FILES = (
    ("api_key_file", "API key file"),
    ("state_file", "state file (it holds the recreate token)"),
    ("client_key", "client key"),
)

log = Logger()


def _coerce(name: str) -> Callable[[str], Any]:
    """
    The coercion of option C{name} (L{OPTION_TYPES}), whose refusal names
    the option, what it wants and what it got.
    """
    convert = OPTION_TYPES[name]

    def coerce(value: str) -> Any:
        try:
            return convert(value)
        except TypeError as e:
            raise ValueError(f"--{name} must be {e}, not {value!r}") from None

    return coerce


class Options(usage.Options):
    synopsis = "(--origin URL | --tcp HOST:PORT) [options]"
    longdesc = (
        "Run a netbore agent: create (or re-create) a tunnel on the edge and "
        "serve the origin's HTTP service at the tunnel's public URL, or (--tcp) "
        "a local TCP service at a public port of the edge."
    )

    # Defaults are None here so that a value given in --config is only
    # overridden by an option actually given; see netbore.agent.config.
    optParameters = [
        ["control-url", None, None, "The edge's control API (default http://localhost:8080)."],
        ["origin", None, None, "The local service to expose, e.g. http://127.0.0.1:3000 (required)."],
        ["name", None, None, "The tunnel name to ask for (default: a random one)."],
        ["agent-id", None, None, "This agent's id; agents with distinct ids may serve one name (default: random)."],
        ["api-key-file", None, None, "File holding an API key for the edge (default: anonymous)."],
        ["state-file", None, None, "Where the tunnel id, name and recreate token are kept between runs."],
        ["config", None, None, "YAML config file (agent_id, origin, control_url, requested_name, any option)."],
        ["ca-cert", None, None, "Trust this CA (PEM) for https/wss to the edge."],
        [
            "host-header",
            None,
            None,
            "Host sent to the origin: 'rewrite' (the origin's), a value, or default the public name.",
        ],
        [
            "recreate-ttl",
            None,
            None,
            "Lifetime to ask for the recreate token, seconds (default 604800).",
            _coerce("recreate-ttl"),
        ],
        ["backoff-base", None, None, "First reconnect delay, seconds (default 1).", _coerce("backoff-base")],
        ["backoff-cap", None, None, "Largest reconnect delay, seconds (default 60).", _coerce("backoff-cap")],
        [
            "drain-timeout",
            None,
            None,
            "On SIGTERM, time allowed for in-flight requests (default 10).",
            _coerce("drain-timeout"),
        ],
        [
            "heartbeat-interval",
            None,
            None,
            "WebSocket ping interval, seconds (default 10).",
            _coerce("heartbeat-interval"),
        ],
        [
            "heartbeat-timeout",
            None,
            None,
            "Time to wait for a pong, seconds (default 10).",
            _coerce("heartbeat-timeout"),
        ],
        [
            "tcp",
            None,
            None,
            "A local TCP service to expose instead of --origin, HOST:PORT (e.g. 127.0.0.1:5432, [::1]:22).",
        ],
        [
            "tls-min",
            None,
            None,
            "Lowest TLS version offered to the edge: 1.2 or 1.3 (default 1.2).",
            _coerce("tls-min"),
        ],
        ["origin-ca-cert", None, None, "Trust this CA (PEM) for an https:// origin (default: the system's CAs)."],
        ["client-cert", None, None, "Client certificate (PEM) to present to an edge with --agent-ca."],
        ["client-key", None, None, "The private key (PEM) of --client-cert."],
        [
            "metrics",
            None,
            None,
            "Serve Prometheus metrics at /metrics on this endpoint, e.g. tcp:9109:interface=127.0.0.1 (default: off).",
        ],
    ]

    def postOptions(self) -> None:
        file_settings = {}
        try:
            if self["config"]:
                file_settings = load_config_file(self["config"])
            cli = {name: self[name] for name in OPTION_TYPES}
            self.agent_config: AgentConfig = merge(cli, file_settings)
        except ConfigError as e:
            raise usage.UsageError(str(e)) from None
        for name in _FILES:
            path = getattr(self.agent_config, name.replace("-", "_"))
            if path is not None and not os.path.isfile(path):
                raise usage.UsageError(f"--{name}: no such file: {path}")


def makeService(options: Options, reactor: Reactor | None = None) -> service.IService:
    """
    The agent's service tree: one L{AgentService} (named C{"agent"}) for the
    one tunnel, with the C{--metrics} listener (named C{"metrics"}) as its
    child if asked for.  Installs autobahn's fast paths
    (L{netbore.websocket.install_fast_paths}) for the process.

    @param reactor: the reactor to build on; twistd passes none and gets
        the global one.
    """
    if reactor is None:
        from twisted.internet import reactor as _reactor

        reactor = _reactor
    from ..metrics import metrics_service
    from ..websocket import install_fast_paths
    from .service import AgentService

    install_fast_paths()

    warn_about_loose_files(options.agent_config)
    try:
        agent = AgentService(options.agent_config, reactor)
    except Exception as e:
        sys.stderr.write(f"netbore-agent: cannot start: {e}\n")
        raise SystemExit(1) from None
    agent.setName("agent")
    description = options.agent_config.metrics
    if description is not None:
        try:
            listener = metrics_service(description, agent.metrics.registry, reactor, "netbore-agent")
        except (ValueError, KeyError, TypeError, IndexError) as e:
            # IndexError: a systemd: index with no socket passed for it.
            why = "no socket was passed at that index" if isinstance(e, IndexError) else str(e) or repr(e)
            sys.stderr.write(f"netbore-agent: bad --metrics {description!r}: {why}\n")
            raise SystemExit(1) from None
        listener.setName("metrics")
        listener.setServiceParent(agent)
    return agent


def warn_about_loose_files(config: AgentConfig) -> list[str]:
    """
    Warn (log and stderr) about each credential file its group or others
    may use, and go on, as OpenSSH's client does; the warnings.
    """
    warnings = []
    for attribute, what in _SECRET_FILES:
        problem = loose_permissions(getattr(config, attribute), what)
        if problem is not None:
            message = f"netbore-agent: WARNING: {problem}"
            log.warn(message)
            sys.stderr.write(message + "\n")
            warnings.append(message)
    return warnings
