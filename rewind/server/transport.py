"""Lean multipart send/receive for the server's hot path.

pyzmq's ``send_multipart``/``recv_multipart`` combine enum flags on every
frame and signal an empty queue with an exception; at tens of thousands of
messages a second that overhead is a large share of a round trip. These
helpers use plain integer flags and ask the socket whether more is waiting.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import zmq

_NOBLOCK = int(zmq.NOBLOCK)
_SNDMORE = int(zmq.SNDMORE)
_SNDMORE_NOBLOCK = _SNDMORE | _NOBLOCK
_EVENTS = int(zmq.EVENTS)
_POLLIN = int(zmq.POLLIN)


def has_message(sock: zmq.Socket[Any]) -> bool:
    """Whether a message can be received right now, without raising."""
    events: int = sock.getsockopt(_EVENTS)  # type: ignore[assignment]
    return bool(events & _POLLIN)


def receive(sock: zmq.Socket[Any]) -> list[bytes]:
    """Receive every frame of the next message (one must be waiting).

    Frames are taken uncopied because a frame knows whether more follow, which
    saves asking the socket once per frame.
    """
    frame = sock.recv(_NOBLOCK, copy=False)
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(_NOBLOCK, copy=False)
        frames.append(frame.bytes)
    return frames


def receive_with_user_id(sock: zmq.Socket[Any]) -> tuple[list[bytes], str]:
    """Like :func:`receive`, with the ZAP User-Id of the peer that sent the message.

    The User-Id is empty if the peer has none (it was not admitted by ZAP).
    Only servers with CURVE on pay for the extra look-up.
    """
    frame = sock.recv(_NOBLOCK, copy=False)
    try:
        user_id = frame.get("User-Id")
    except zmq.ZMQError:
        user_id = ""
    frames = [frame.bytes]
    while frame.more:
        frame = sock.recv(_NOBLOCK, copy=False)
        frames.append(frame.bytes)
    return frames, user_id if isinstance(user_id, str) else ""


def send(sock: zmq.Socket[Any], frames: Sequence[bytes]) -> None:
    """Send a multipart message without blocking (raises ``zmq.Again`` if it would)."""
    last = len(frames) - 1
    for index, frame in enumerate(frames):
        sock.send(frame, _NOBLOCK if index == last else _SNDMORE_NOBLOCK)
