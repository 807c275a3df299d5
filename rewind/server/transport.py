"""Lean multipart send/receive for the server's hot path.

pyzmq's ``send_multipart``/``recv_multipart`` combine enum flags on every
frame and go through Python wrappers; at tens of thousands of messages a
second (and thousands of frames per streamed batch) that overhead is a large
share of the work. These helpers use plain integer flags and the sockets'
compiled methods, and never block: an empty queue or a full peer raises
``zmq.Again``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

NOBLOCK = int(zmq.NOBLOCK)
"""``zmq.NOBLOCK`` as a plain int: the receive helpers' default flags."""
_SNDMORE = int(zmq.SNDMORE)
_SNDMORE_NOBLOCK = _SNDMORE | NOBLOCK
_RAW_SEND = zmq.backend.Socket.send
_RAW_RECEIVE = zmq.backend.Socket.recv
_RAW_GET = zmq.backend.Socket.get
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def receive(sock: zmq.Socket[Any], flags: int = NOBLOCK) -> list[bytes]:
    """Receive every frame of the next message; ``zmq.Again`` if none is waiting.

    With ``flags=0`` it waits for the first frame, up to the socket's
    ``RCVTIMEO``. Frames are taken uncopied because a frame knows whether
    more follow, which saves asking the socket once per frame.
    """
    # The Cython method, as in send_routed: pyzmq's wrapper adds a tenth to each frame.
    frame = _RAW_RECEIVE(sock, flags, False)
    frames = [frame.bytes]
    while frame.more:
        frame = _RAW_RECEIVE(sock, NOBLOCK, False)
        frames.append(frame.bytes)
    return frames


def receive_routed(sock: zmq.Socket[Any], flags: int = NOBLOCK) -> list[bytes]:
    """Like :func:`receive`, for a ROUTER socket: its first frame is the sender's routing id.

    ZeroMQ puts that frame before every message a ROUTER receives, so more
    always follow it: it is taken as bytes, without a frame object (which
    costs about a sixth of a four-frame request's receive).
    """
    routing_id = _RAW_RECEIVE(sock, flags, True)
    frames = receive(sock)  # the rest of the same message, which has arrived whole
    frames.insert(0, routing_id)
    return frames


def receive_with_user_id(sock: zmq.Socket[Any], flags: int = NOBLOCK) -> tuple[list[bytes], str]:
    """Like :func:`receive`, with the ZAP User-Id of the peer that sent the message.

    The User-Id is empty if the peer has none (it was not admitted by ZAP).
    Only servers with CURVE on pay for the extra look-up.
    """
    frame = _RAW_RECEIVE(sock, flags, False)
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        user_id = ""
    frames = [frame.bytes]
    while frame.more:
        frame = _RAW_RECEIVE(sock, NOBLOCK, False)
        frames.append(frame.bytes)
    return frames, user_id if isinstance(user_id, str) else ""


def has_message(sock: zmq.Socket[Any]) -> bool:
    """Whether a message waits on ``sock`` (cheaper than a receive that raises ``Again``)."""
    events = _RAW_GET(sock, _EVENTS)
    return isinstance(events, int) and bool(events & _POLLIN)


def send(sock: zmq.Socket[Any], frames: Sequence[bytes]) -> None:
    """Send a multipart message without blocking (raises ``zmq.Again`` if it would)."""
    send_routed(sock, (), frames)


def send_routed(sock: zmq.Socket[Any], routing: Sequence[bytes], frames: Sequence[bytes]) -> None:
    """Send ``routing`` then ``frames`` as one message, without blocking.

    Raises ``zmq.Again`` if it would block. If the first frame is refused
    nothing was sent; later frames of a multipart message are never refused.
    """
    # The Cython method, not pyzmq's Python wrapper around it: the wrapper
    # only adds draft-socket options we never use, and costs a third of a
    # frame's send (a streamed batch sends thousands of frames).
    raw_send = _RAW_SEND
    for frame in routing:
        raw_send(sock, frame, _SNDMORE_NOBLOCK)
    if len(frames) > 1:  # most replies are one frame
        for frame in frames[:-1]:
            raw_send(sock, frame, _SNDMORE_NOBLOCK)
    raw_send(sock, frames[-1], NOBLOCK)
