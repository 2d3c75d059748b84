"""
BATCH frames: several small frames in one WebSocket message, sent only to
a peer whose hello announced C{"batch": true}.

A BATCH is a frame header (type 8, no flags, stream 0) followed by, per
frame, a u32 length then that frame's bytes.  L{batch} packs a session's
queued frames into messages; L{decode_batch} splits one back.
"""

from __future__ import annotations

from ._frames import HEADER, HEADER_SIZE, U32, FrameType
from .errors import ProtocolError

__all__ = ["BATCH_FRAME_MAX", "BATCH_MAX", "batch", "decode_batch", "encode_batch"]

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


def decode_batch(message: bytes | bytearray | memoryview) -> list[bytes]:
    """
    The frames in a BATCH message (not yet decoded).

    @raise ProtocolError: flags or a stream id set, an empty batch, a
        length running past the end, a frame shorter than a header, or a
        BATCH inside a BATCH.
    """
    if type(message) is not bytes:
        message = bytes(message)
    size = len(message)
    if size < HEADER_SIZE:
        raise ProtocolError(f"frame shorter than its {HEADER_SIZE}-byte header")
    ftype, flags, stream_id = _unpack_header(message)
    if ftype != FrameType.BATCH:
        raise ProtocolError(f"expected a BATCH frame, not type {ftype}")
    if flags:
        raise ProtocolError(f"BATCH frame with flags 0x{flags:02x}")
    if stream_id:
        raise ProtocolError(f"BATCH frame on stream {stream_id}")
    frames = []
    offset = HEADER_SIZE
    unpack = U32.unpack_from
    while offset < size:
        if offset + 4 > size:
            raise ProtocolError("truncated BATCH frame")
        (length,) = unpack(message, offset)
        offset += 4
        end = offset + length
        if end > size:
            raise ProtocolError("truncated BATCH frame")
        if length < HEADER_SIZE:
            raise ProtocolError("frame in a BATCH shorter than its header")
        if message[offset] == FrameType.BATCH:
            raise ProtocolError("BATCH frame inside a BATCH")
        frames.append(message[offset:end])
        offset = end
    if not frames:
        raise ProtocolError("empty BATCH frame")
    return frames


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
