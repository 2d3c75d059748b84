"""
The session's bookkeeping of one live stream (L{StreamState}) and of the
streams it has closed, below both of its halves (L{netbore.protocol._encode}
sends, L{netbore.protocol._receive} receives).
"""

from __future__ import annotations

__all__ = ["CLOSED_STREAMS_REMEMBERED", "IGNORE", "STRICT", "StreamState"]


class StreamState:
    """
    A live stream (not both ways ended, not reset).

    send_window: credit for our DATA; recv_window: credit the peer still
    has; unacked: delivered, not yet acknowledged; pending: acknowledged,
    not yet announced by a WINDOW_UPDATE; local_head/remote_head: the final
    head was sent/received (a request head counts for the side it opened);
    local_closed/remote_closed: our/peer's body ended.  No C{__init__}
    (a Python call per stream): its makers set every slot.
    """

    __slots__ = (
        "send_window",
        "recv_window",
        "unacked",
        "pending",
        "local_head",
        "remote_head",
        "local_closed",
        "remote_closed",
    )

    send_window: int
    recv_window: int
    unacked: int
    pending: int
    local_head: bool
    remote_head: bool
    local_closed: bool
    remote_closed: bool


#: How many closed stream ids are remembered, to tell frames that are late
#: (ignored) from frames that break the protocol (STREAM_CLOSED).  Older
#: ids at or below the highest id ever opened are treated leniently: their
#: frames are ignored (DATA credited back to the session window).
CLOSED_STREAMS_REMEMBERED = 1024

# Values of Session._closed: may late frames of the stream be ignored?
IGNORE = True  # this side reset it (or refused it): the peer may lag
STRICT = False  # the peer ended or reset it: it must send nothing more
