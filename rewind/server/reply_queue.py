"""A connection's reply queue: its requests' answers, in the order they came.

The server keeps one queue per connection (ROUTER routing frames). Each
request takes a :class:`Slot` at the back; the slot is filled in when its
answer is known (at once, after its commit, or when its read may run), and
answers leave from the front only, so a client always gets them in order.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

from rewind.errors import StorageError
from rewind.model import AppendRequest
from rewind.server.actions import StartRead
from rewind.server.reads import ReadSession
from rewind.storage.base import AppendResult, EventStore

MAX_QUEUED_REPLIES = 10_000
"""Requests one connection may have waiting for their turn to be answered.

Replies leave in request order, so a connection whose head waits (on a
commit, on a Gorewind QUERY or a reply its client has no room for yet)
holds the rest. Beyond this many, further requests on it are dropped
unanswered (and not carried out), as ZeroMQ drops messages past a
high-water mark, rather than held without bound.
"""

Routing = tuple[bytes, ...]


@dataclass(slots=True, eq=False)
class Slot:
    """A place in a connection's reply queue, filled in when the answer is known.

    ``frames`` empty means the request needs no reply of its own (a v2 read
    that went on streaming by itself).
    """

    frames: list[bytes] | None = None
    read: Callable[[EventStore], list[bytes]] | None = None
    start: StartRead | None = None
    session: ReadSession | None = None


class PendingAppend(NamedTuple):
    """An append on its way to the store, with the slot waiting for its outcome."""

    request: AppendRequest
    routing: Routing
    slot: Slot
    encode: Callable[[AppendResult | StorageError], list[bytes]]
