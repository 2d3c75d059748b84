"""
BATCH frames: several small frames in one WebSocket message, sent only to
a peer whose hello announced C{"batch": true}.

A BATCH is a frame header (type 8, no flags, stream 0) followed by, per
frame, a u32 length then that frame's bytes.  L{batch} packs a session's
queued frames into messages (the session's L{data_to_send} is defined here,
beside it); L{decode_batch} splits one back (it lives in
L{netbore.protocol._receive}, beside the one caller that matters).
"""

from __future__ import annotations

from typing import Protocol

from ._frames import HEADER, U32, FrameType
from ._receive import decode_batch
from .handshake import Settings

__all__ = ["BATCH_FRAME_MAX", "BATCH_MAX", "batch", "data_to_send", "decode_batch", "encode_batch"]

#: Frames up to this size may be packed into a BATCH ...
BATCH_FRAME_MAX = 16 * 1024
#: ... whose payload stays under this size.
BATCH_MAX = 64 * 1024

_BATCH_HEADER = HEADER.pack(FrameType.BATCH, 0, 0)
_unpack_header = HEADER.unpack_from  # (see _encode's note on CPython 3.11)


def encode_batch(frames: list[bytes]) -> bytes:
    """
    One BATCH frame carrying C{frames} (encoded frames, none a BATCH), each
    as a u32 length then the frame.  The receiver handles them in order,
    as if each had come in a message of its own.
    """
    parts = [_BATCH_HEADER]
    pack = U32.pack
    for frame in frames:
        parts += (pack(len(frame)), frame)
    return b"".join(parts)


def batch(frames: list[bytes]) -> list[bytes]:
    """
    The messages that carry C{frames} (encoded frames, in order): runs of
    small frames (up to L{BATCH_FRAME_MAX} bytes each, L{BATCH_MAX}
    together) as one BATCH message each, larger frames alone.
    """
    messages: list[bytes] = []
    run: list[bytes] = []
    size = 0

    def end_run() -> None:
        nonlocal size
        if run:
            messages.append(run[0] if len(run) == 1 else encode_batch(run))
            run.clear()
            size = 0

    for frame in frames:
        n = len(frame)
        if n > BATCH_FRAME_MAX:
            end_run()
            messages.append(frame)
            continue
        if size + n > BATCH_MAX:
            end_run()
        run.append(frame)
        size += n + 4
    end_run()
    return messages


class _Queue(Protocol):
    outbox: list[bytes]
    peer: Settings


def data_to_send(self: _Queue) -> list[bytes]:
    """
    (L{netbore.protocol.session.Session.data_to_send}, defined here beside
    L{batch}.)  The messages to send, in order: the frames queued since the
    last call, each one binary WebSocket message -- except that, when the
    peer announced C{batch}, runs of small frames (up to L{BATCH_FRAME_MAX}
    bytes each, L{BATCH_MAX} together) go as one BATCH message.  Empties
    the queue.
    """
    out = self.outbox
    self.outbox = []
    if len(out) < 2 or not self.peer.batch:
        return out
    return batch(out)
