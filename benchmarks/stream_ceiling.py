"""A bare streaming server: the most a Python client can receive of v2 read batches.

``python -m benchmarks.echo stream`` runs :func:`serve`: a ROUTER socket that
answers every v2 ``READ_ALL`` with the batches Rewind would send (the same
frames, packed or not as the read asks, with credit-based flow control and an
``END``), but without a store: one batch of events is encoded when a read of
that batch size first comes, and only the batch header and the first event's
position (which the client checks) are packed again per batch. Row 8
reports its rate beside Rewind's, so a target above it is seen to be out of
reach of the wire format and the client on this machine, whatever the server
does.
"""

from __future__ import annotations

import struct
import uuid
from dataclasses import dataclass
from typing import Any

import zmq

from benchmarks.clients import payload
from rewind.model import DEFAULT_STREAM, RecordedEvent
from rewind.protocol import dispatch, v2
from rewind.protocol.envelope import split_envelope
from rewind.protocol.v2 import wire
from rewind.server.transport import receive, send_routed

PAYLOAD_SIZE = 100
"""About as much data as each event of the big store carries."""
_POSITION = struct.Struct("!Q")


@dataclass(slots=True)
class _Batch:
    """One batch of events encoded both ways a read may ask for."""

    framed: list[bytes]
    packed: bytes
    packed_ends: list[int]
    """Where each event ends in ``packed``, to cut a shorter last batch."""


@dataclass(slots=True)
class _Read:
    routing: tuple[bytes, ...]
    request_id: int
    batch: _Batch
    packed: bool
    position: int
    left: int
    credit: int
    sent: int = 0


def _batch(size: int) -> _Batch:
    data = payload(PAYLOAD_SIZE)
    events = [
        RecordedEvent(position, uuid.uuid4(), DEFAULT_STREAM, position - 1, 0, "", b"", data)
        for position in range(1, size + 1)
    ]
    _, packed = wire.encode_packed_events(events)
    each = len(packed) // size  # the events differ only in fixed-size fields
    return _Batch(v2.encode_events(1, events), packed, [each * n for n in range(1, size + 1)])


def serve(socket: zmq.Socket[Any]) -> None:
    """Answer READ_ALL and CREDIT requests on ``socket`` forever (one read per peer)."""
    batches: dict[int, _Batch] = {}
    reads: dict[bytes, _Read] = {}
    poller = zmq.Poller()
    poller.register(socket, zmq.POLLIN)
    while True:
        poller.poll()
        while True:
            try:
                frames = receive(socket)
            except zmq.Again:
                break
            envelope = split_envelope(frames, dispatch.is_command)
            routing, peer = envelope.routing, envelope.routing[0]
            request = v2.parse_request(envelope.body)
            if isinstance(request, v2.ReadAll):
                size = request.batch_size
                if size not in batches:
                    batches[size] = _batch(size)
                reads[peer] = _Read(
                    routing,
                    request.request_id,
                    batches[size],
                    packed=request.packed,
                    position=request.start if isinstance(request.start, int) else 1,
                    left=request.max_count or 0,
                    credit=request.credit,
                )
            elif isinstance(request, v2.Credit) and peer in reads:
                reads[peer].credit += request.grant
            else:
                continue
            if _pump(socket, reads[peer]):
                del reads[peer]


def _pump(socket: zmq.Socket[Any], read: _Read) -> bool:
    """Send the batches the read's credit allows; ``True`` once it has ended."""
    batch = read.batch
    while read.credit and read.left:
        count = min(read.left, len(batch.packed_ends))
        header = wire.EVENTS_HEADER.pack(read.request_id, count)
        if read.packed:
            # The client checks the first event's position: its first 8 bytes.
            first = _POSITION.pack(read.position)
            packed = first + batch.packed[len(first) : batch.packed_ends[count - 1]]
            frames = [wire.MARKER, wire.EVENTS, header, packed]
        else:
            frames = batch.framed[: 3 + count * wire.EVENT_FRAMES]
            frames[2] = header
            frames[4] = wire.EVENT_HEADER.pack(read.position, read.position - 1, 0)
        send_routed(socket, read.routing, frames)
        read.position += count
        read.left -= count
        read.sent += count
        read.credit -= 1
    if read.left:
        return False
    end = v2.encode_end(read.request_id, v2.EndReason.MAX_COUNT, read.position, read.sent)
    send_routed(socket, read.routing, end)
    return True
