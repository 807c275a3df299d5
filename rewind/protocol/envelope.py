"""ROUTER envelopes: the routing frames ZeroMQ puts before a request's body.

A REQ client (and a DEALER client that imitates one) ends its envelope with an
empty delimiter frame; between a broker and us there may be several routing
frames before it. Everything up to and including the delimiter is echoed back
unchanged in front of the reply. A bare DEALER sends no delimiter at all, so
its body starts right after its identity, with a command word.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple


# A NamedTuple rather than a frozen dataclass: one is made for every request,
# and a frozen dataclass sets each field through object.__setattr__.
class Envelope(NamedTuple):
    """Routing frames to prefix a reply with, and the request body they carried."""

    routing: tuple[bytes, ...]
    body: tuple[bytes, ...]


# Makes an Envelope without the NamedTuple's Python __new__ frame: one per request.
_new_tuple = tuple.__new__


def split_envelope(frames: Sequence[bytes], is_command: Callable[[bytes], bool]) -> Envelope:
    """Split a message received on a ROUTER socket into routing frames and body.

    The first frame is always the peer identity. Routing frames continue up to
    the first empty frame (the delimiter), unless a command word comes first:
    then the peer sent no delimiter, and empty frames after the command are
    part of the body (a QUERY's open bounds, say). With neither, the body is
    everything after the identity.
    """
    if len(frames) > 1 and frames[1] == b"":
        # The usual envelope (a REQ client's): its identity, then the delimiter.
        return _new_tuple(Envelope, ((frames[0], b""), tuple(frames[2:])))
    for index in range(1, len(frames)):
        frame = frames[index]
        if frame == b"":
            return Envelope(tuple(frames[: index + 1]), tuple(frames[index + 1 :]))
        if is_command(frame):
            return Envelope(tuple(frames[:index]), tuple(frames[index:]))
    return Envelope(tuple(frames[:1]), tuple(frames[1:]))
