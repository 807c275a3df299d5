"""What a parsed request asks the server loop to do.

Protocol handlers turn requests into these values; the loop in
:mod:`rewind.server.app` carries them out without knowing any protocol.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from rewind.errors import StorageError
from rewind.model import AppendRequest
from rewind.server.reads import ReadSession
from rewind.storage.base import AppendResult, EventStore


@dataclass(frozen=True, slots=True)
class Reply:
    """Answer at once (in the connection's reply order)."""

    frames: list[bytes]


@dataclass(frozen=True, slots=True)
class Commit:
    """Append through the group commit; ``encode`` turns the outcome into the reply."""

    request: AppendRequest
    encode: Callable[[AppendResult | StorageError], list[bytes]]


@dataclass(frozen=True, slots=True)
class Read:
    """Answer from the store once every earlier append on the connection is done."""

    run: Callable[[EventStore], list[bytes]]


@dataclass(frozen=True, slots=True)
class StartRead:
    """Open a streamed read once earlier appends are done; ``open`` may refuse with a reply."""

    open: Callable[[EventStore], ReadSession | list[bytes]]
    request_id: int | None = None
    """The v2 request id, so CREDIT and CANCEL can find the read."""


@dataclass(frozen=True, slots=True)
class GrantCredit:
    """CREDIT for an open v2 read; never answered."""

    request_id: int
    grant: int


@dataclass(frozen=True, slots=True)
class CancelRead:
    """CANCEL of an open v2 read; answered by the read's END."""

    request_id: int


Action = Reply | Commit | Read | StartRead | GrantCredit | CancelRead
