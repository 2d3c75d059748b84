"""
The public names of netbore.protocol: the package and the modules other code
imports from (C{netbore.protocol.frames}, C{netbore.protocol.session}) keep
offering them, whichever private module now holds each.
"""

from __future__ import annotations

import importlib

import pytest

import netbore.protocol
from netbore.protocol import _batch, _encode, _frames, _receive, frames, session

MODULES = ["netbore.protocol", "netbore.protocol.frames", "netbore.protocol.session", "netbore.protocol.handshake"]


@pytest.mark.parametrize("name", MODULES)
def test_every_name_in_all_is_there(name: str) -> None:
    module = importlib.import_module(name)
    missing = [n for n in module.__all__ if not hasattr(module, n)]
    assert missing == []
    assert len(set(module.__all__)) == len(module.__all__)


def test_names_other_code_imports_from_the_modules() -> None:
    # Imported as F.* / from netbore.protocol.frames by the edge, the agent,
    # bench/scale.py and the tests.
    for n in ["ErrorCode", "ProtocolError", "RequestHead", "ResponseHead", "Data", "HEADER", "HEADER_SIZE"]:
        assert n in frames.__all__
    for n in ["MAX_HEAD_PAYLOAD", "MAX_MESSAGE", "decode", "encode", "encode_data", "decode_batch", "encode_batch"]:
        assert n in frames.__all__
    assert frames.max_message_size is _frames.max_message_size
    # Imported as S.* by the edge, the agent and the tests.
    for n in ["Session", "DataReceived", "GoAwayReceived", "RequestReceived", "ResponseReceived", "StreamEnded"]:
        assert n in session.__all__
    for n in ["StreamReset", "WindowOpened", "CLOSED_STREAMS_REMEMBERED"]:
        assert n in session.__all__


def test_one_object_per_name() -> None:
    # A name is the same object whichever module it is taken from.
    assert netbore.protocol.decode is frames.decode is _frames.decode
    assert netbore.protocol.encode is frames.encode is _encode.encode
    assert netbore.protocol.encode_batch is frames.encode_batch is _batch.encode_batch
    assert netbore.protocol.DataReceived is session.DataReceived is _receive.DataReceived
    assert issubclass(session.Session, _receive.Receiving)


def test_private_modules_stay_private() -> None:
    # The package's curated __all__ names no private module or helper.
    assert not [n for n in netbore.protocol.__all__ if n.startswith("_")]
    assert "Receiving" not in netbore.protocol.__all__
    assert "bad_header" not in netbore.protocol.__all__
