"""ROUTER envelopes: the routing frames ZeroMQ puts before a request's body.

A REQ client (and a DEALER client that imitates one) ends its envelope with an
empty delimiter frame. Everything before and including the delimiter is echoed
back unchanged in front of the reply.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Envelope:
    """Routing frames to prefix a reply with, and the request body they carried."""

    routing: tuple[bytes, ...]
    body: tuple[bytes, ...]


def split_envelope(frames: Sequence[bytes]) -> Envelope:
    """Split a message received on a ROUTER socket into routing frames and body.

    The first frame is always the peer identity. If the peer sent no empty
    delimiter (a bare DEALER), the body is everything after the identity and
    replies are routed with the identity alone.
    """
    for index in range(1, len(frames)):
        if frames[index] == b"":
            return Envelope(tuple(frames[: index + 1]), tuple(frames[index + 1 :]))
    return Envelope(tuple(frames[:1]), tuple(frames[1:]))
