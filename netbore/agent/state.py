"""
The agent's state file: what it must remember between runs to get its
tunnel (same id, same name) back.
"""

from __future__ import annotations

import json
import os
import tempfile
from typing import Any

import attrs

__all__ = ["AgentState", "StateFileError", "load_state", "save_state"]


class StateFileError(Exception):
    """
    The state file exists but cannot be read as a netbore state file.
    """


@attrs.define
class AgentState:
    tunnel_id: str | None = None
    name: str | None = None
    public_url: str | None = None
    recreate_token: str | None = None
    recreate_expires_at: str | None = None
    origin: str | None = None
    control_url: str | None = None
    agent_id: str | None = None
    state: str | None = None  # "ready" while the tunnel is active, else "offline"
    tcp: str | None = None  # a TCP tunnel's local HOST:PORT (then origin is None)

    def to_json(self) -> dict[str, Any]:
        return attrs.asdict(self)


def load_state(path: str) -> AgentState:
    """
    Read the state file; a missing file is an empty state.
    """
    try:
        with open(path, encoding="utf-8") as f:
            data = json.load(f)
    except FileNotFoundError:
        return AgentState()
    except (OSError, ValueError) as e:
        raise StateFileError(f"cannot read state file {path}: {e}") from e
    if not isinstance(data, dict):
        raise StateFileError(f"state file {path} does not hold a JSON object")
    known = {f.name for f in attrs.fields(AgentState)}
    values = {k: v for k, v in data.items() if k in known and (v is None or isinstance(v, str))}
    return AgentState(**values)


def save_state(path: str, state: AgentState) -> None:
    """
    Write the state file atomically with mode 0600 (it holds a credential).
    """
    directory = os.path.dirname(os.path.abspath(path))
    os.makedirs(directory, mode=0o700, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".netbore-state-", dir=directory)
    try:
        os.fchmod(fd, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(state.to_json(), f, indent=2, sort_keys=True)
            f.write("\n")
        os.replace(tmp, path)
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
