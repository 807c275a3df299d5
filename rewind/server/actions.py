"""What a parsed request asks the server loop to do.

Protocol handlers turn requests into these values; the loop in
:mod:`rewind.server.app` carries them out without knowing any protocol.
They are NamedTuples: one is made for every request, and a NamedTuple
costs about half as much to make as a frozen dataclass.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

from rewind.errors import StorageError
from rewind.model import AppendRequest
from rewind.server.reads import ReadSession
from rewind.storage.base import AppendResult, EventStore


class Reply(NamedTuple):
    """Answer at once (in the connection's reply order)."""

    frames: list[bytes]


class Commit(NamedTuple):
    """Append through the group commit; ``encode`` turns the outcome into the reply."""

    request: AppendRequest
    encode: Callable[[AppendResult | StorageError], list[bytes]]


class Read(NamedTuple):
    """Answer from the store once every earlier append on the connection is done."""

    run: Callable[[EventStore], list[bytes]]


class StartRead(NamedTuple):
    """Open a streamed read once earlier appends are done; ``open`` may refuse with a reply."""

    open: Callable[[EventStore], ReadSession | list[bytes]]
    request_id: int | None = None
    """The v2 request id, so CREDIT and CANCEL can find the read."""


class GrantCredit(NamedTuple):
    """CREDIT for an open v2 read; never answered."""

    request_id: int
    grant: int


class CancelRead(NamedTuple):
    """CANCEL of an open v2 read; answered by the read's END."""

    request_id: int


Action = Reply | Commit | Read | StartRead | GrantCredit | CancelRead
