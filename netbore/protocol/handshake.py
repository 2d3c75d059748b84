"""
The handshake: the first WebSocket message each way is a TEXT message
holding one JSON object, the L{Hello}.

The agent sends its hello as soon as the WebSocket is open; the edge
answers with its own; from then on only binary frames flow.  Each side
builds its L{Session} from its own L{Settings} (I{local}) and the ones in
the hello it received (I{peer}).
"""

from __future__ import annotations

import json
from typing import Any

import attrs

from ._frames import MAX_WINDOW
from .errors import ProtocolError, UnsupportedVersion

__all__ = [
    "MAX_HELLO_SIZE",
    "PROTOCOL_VERSION",
    "ROLES",
    "SUBPROTOCOL",
    "SUPPORTED_VERSIONS",
    "Hello",
    "Settings",
    "clamp_peer",
    "decode_hello",
    "encode_hello",
]

PROTOCOL_VERSION = 1
SUPPORTED_VERSIONS: tuple[int, ...] = (1,)
#: The WebSocket subprotocol the agent offers and the edge selects.
SUBPROTOCOL = "netbore.v1"
ROLES = ("agent", "edge")

#: A hello longer than this (in bytes of UTF-8) is refused.
MAX_HELLO_SIZE = 64 * 1024

MIN_FRAME_PAYLOAD = 1024
MAX_FRAME_PAYLOAD = 16 * 1024 * 1024


def _window(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not 1 <= value <= MAX_WINDOW:
        raise ValueError(f"{attribute.name} must be an integer in 1..{MAX_WINDOW}")


def _flag(instance: object, attribute: attrs.Attribute[bool], value: bool) -> None:
    if type(value) is not bool:
        raise ValueError(f"{attribute.name} must be true or false")


def _frame_payload(instance: object, attribute: attrs.Attribute[int], value: int) -> None:
    if type(value) is not int or not MIN_FRAME_PAYLOAD <= value <= MAX_FRAME_PAYLOAD:
        raise ValueError(f"{attribute.name} must be an integer in {MIN_FRAME_PAYLOAD}..{MAX_FRAME_PAYLOAD}")


@attrs.frozen
class Settings:
    """
    What one side announces about what it can I{receive}.

    @ivar stream_window: initial credit, in DATA payload bytes, the peer may
        send on each stream before a WINDOW_UPDATE (1..2^31-1).
    @ivar session_window: the same for all streams together (1..2^31-1).
    @ivar max_frame_payload: largest DATA payload the peer may send in one
        frame (1024..16 MiB).
    @ivar batch: the peer may pack small frames into BATCH frames.  A
        hello without the key means C{false} (a peer from before BATCH).
    @ivar byte_streams: the peer can take byte streams (C{BYTES_OPEN}
        frames, see L{netbore.protocol.bytestreams}).  C{false} by default
        and when absent from a hello; a hello carries the key only when it
        is true, so a hello without byte streams is the same as before them.
    """

    stream_window: int = attrs.field(default=2 * 1024 * 1024, validator=_window)
    session_window: int = attrs.field(default=16 * 1024 * 1024, validator=_window)
    max_frame_payload: int = attrs.field(default=64 * 1024, validator=_frame_payload)
    batch: bool = attrs.field(default=True, validator=_flag)
    byte_streams: bool = attrs.field(default=False, validator=_flag)


def _role(instance: object, attribute: attrs.Attribute[str], value: str) -> None:
    if value not in ROLES:
        raise ValueError(f"role must be one of {ROLES}, not {value!r}")


@attrs.frozen
class Hello:
    """
    The handshake message.  The agent fills C{agent_id} and C{tunnel_id};
    the edge fills C{public_url} and C{session_id}.  Optional fields that are
    L{None} are left out of the JSON.
    """

    version: int
    role: str = attrs.field(validator=_role)
    settings: Settings
    agent_id: str | None = None
    tunnel_id: str | None = None
    public_url: str | None = None
    session_id: str | None = None


_OPTIONAL = ("agent_id", "tunnel_id", "public_url", "session_id")
_SETTINGS = ("stream_window", "session_window", "max_frame_payload", "batch", "byte_streams")
#: Settings left out of a hello while false (added after version 1 shipped).
_ONLY_WHEN_TRUE = ("byte_streams",)


def encode_hello(hello: Hello) -> str:
    """
    The text of the hello message (compact JSON).
    """
    obj: dict[str, Any] = {
        "type": "hello",
        "version": hello.version,
        "role": hello.role,
        "settings": {
            name: getattr(hello.settings, name)
            for name in _SETTINGS
            if name not in _ONLY_WHEN_TRUE or getattr(hello.settings, name)
        },
    }
    for name in _OPTIONAL:
        value = getattr(hello, name)
        if value is not None:
            obj[name] = value
    return json.dumps(obj, separators=(",", ":"))


def decode_hello(text: str | bytes, expected_role: str | None = None) -> Hello:
    """
    Parse and check a hello message.

    Unknown keys are ignored (a later minor revision may add some); a
    missing settings key takes its default.

    @param expected_role: if given, a hello from another role is refused.
    @raise UnsupportedVersion: (a L{ProtocolError}) the version is not in
        L{SUPPORTED_VERSIONS}; its message lists the supported ones.
    @raise ProtocolError: anything else wrong: not UTF-8, not JSON, not an
        object, a wrong type, a setting out of range, an unknown role.
    """
    if isinstance(text, (bytes, bytearray, memoryview)):
        if len(text) > MAX_HELLO_SIZE:
            raise ProtocolError(f"hello longer than {MAX_HELLO_SIZE} bytes")
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError:
            raise ProtocolError("hello is not UTF-8") from None
    elif not isinstance(text, str):
        raise ProtocolError("hello is not text")
    if len(text) > MAX_HELLO_SIZE:
        raise ProtocolError(f"hello longer than {MAX_HELLO_SIZE} characters")
    try:
        obj = json.loads(text)
    except (ValueError, RecursionError):
        raise ProtocolError("hello is not JSON") from None
    if not isinstance(obj, dict):
        raise ProtocolError("hello is not a JSON object")
    if obj.get("type") != "hello":
        raise ProtocolError('hello must have "type": "hello"')
    version = obj.get("version")
    if type(version) is not int:
        raise ProtocolError("hello version must be an integer")
    if version not in SUPPORTED_VERSIONS:
        raise UnsupportedVersion(version, SUPPORTED_VERSIONS)
    role = obj.get("role")
    if role not in ROLES:
        raise ProtocolError(f"hello role must be one of {', '.join(ROLES)}")
    if expected_role is not None and role != expected_role:
        raise ProtocolError(f"expected a hello from the {expected_role}, not {role}")
    raw_settings = obj.get("settings", {})
    if not isinstance(raw_settings, dict):
        raise ProtocolError("hello settings must be an object")
    given = {name: raw_settings[name] for name in _SETTINGS if name in raw_settings}
    given.setdefault("batch", False)
    try:
        settings = Settings(**given)
    except ValueError as e:
        raise ProtocolError(f"bad hello settings: {e}") from None
    optional: dict[str, str | None] = {}
    for name in _OPTIONAL:
        value = obj.get(name)
        if value is not None and not isinstance(value, str):
            raise ProtocolError(f"hello {name} must be a string")
        optional[name] = value
    return Hello(version, role, settings, **optional)


def clamp_peer(local: Settings, peer: Settings) -> Settings:
    """
    The settings to send under: the peer's, with its windows cut to ours.

    A peer's windows say how much it lets us send before it acknowledges;
    what we send beyond what the network takes waits in our own buffers.  A
    hostile peer announcing 2^31-1 and reading nothing would make us buffer
    that much, so we never send more than our own windows, whatever it
    announces (sending less than a peer allows is always legal).
    """
    stream_window = min(peer.stream_window, local.stream_window)
    session_window = min(peer.session_window, local.session_window)
    if stream_window == peer.stream_window and session_window == peer.session_window:
        return peer
    return attrs.evolve(peer, stream_window=stream_window, session_window=session_window)
