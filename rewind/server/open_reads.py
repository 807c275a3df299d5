"""The server's book of streamed reads in progress, and the bounds on it.

The server loop decides when a read sends; this module only keeps track of
which reads are open, on which connection and under which request id, and
refuses or closes reads so that no client can make the server hoard them:
at most :data:`MAX_OPEN_READS_PER_CONNECTION` per connection and
:data:`MAX_OPEN_READS` in all, and none idle (nothing sent, no credit
received) for longer than the configured timeout. ZeroMQ does not tell a
ROUTER socket that a peer went away, so the timeout is what frees the reads
of clients that vanished while their read waited on them.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Iterator

from rewind.protocol import gorewind, v2
from rewind.server.reads import ReadSession, V2Read

MAX_OPEN_READS_PER_CONNECTION = 64
MAX_OPEN_READS = 10_000

IDLE_SWEEP_INTERVAL_S = 1.0
"""How often reads are checked for idleness; the timeout is whole seconds anyway."""

Routing = tuple[bytes, ...]


class OpenReads:
    """Every open streamed read, findable by connection and v2 request id."""

    def __init__(self, idle_timeout_s: int) -> None:
        self.idle_timeout_s = idle_timeout_s
        self._sessions: list[ReadSession] = []
        self._v2: dict[tuple[Routing, int], V2Read] = {}
        self._per_connection: Counter[Routing] = Counter()
        self._next_sweep = 0.0

    def __bool__(self) -> bool:
        return bool(self._sessions)

    def __iter__(self) -> Iterator[ReadSession]:
        """The open reads, oldest first; a snapshot, so reads may end meanwhile."""
        return iter(list(self._sessions))

    def v2_read(self, routing: Routing, request_id: int) -> V2Read | None:
        """The open v2 read of that connection and request id, if any."""
        return self._v2.get((routing, request_id))

    def on_connection(self, routing: Routing) -> list[ReadSession]:
        """The reads open on one connection."""
        return [session for session in self._sessions if session.routing == routing]

    def refusal(self, routing: Routing, request_id: int | None) -> list[bytes] | None:
        """The error reply if one more read on ``routing`` would break a bound, else ``None``.

        ``request_id`` is the v2 read's id, ``None`` for a Gorewind QUERY.
        """
        if request_id is not None and (routing, request_id) in self._v2:
            return v2.encode_error(
                request_id,
                v2.ErrorCode.BAD_REQUEST,
                f"request id {request_id} is already an open read",
            )
        if self._per_connection[routing] >= MAX_OPEN_READS_PER_CONNECTION:
            limit = MAX_OPEN_READS_PER_CONNECTION
            reason = f"at most {limit} open reads per connection"
        elif len(self._sessions) >= MAX_OPEN_READS:
            limit = MAX_OPEN_READS
            reason = f"the server has {limit} open reads; retry later"
        else:
            return None
        if request_id is None:
            return gorewind.encode_error(reason)
        return v2.encode_error(request_id, v2.ErrorCode.LIMIT_EXCEEDED, reason, limit)

    def add(self, session: ReadSession) -> None:
        """Book a read that has just opened on ``session.routing``."""
        self._sessions.append(session)
        self._per_connection[session.routing] += 1
        if isinstance(session, V2Read):
            self._v2[(session.routing, session.request_id)] = session

    def remove(self, session: ReadSession) -> bool:
        """Forget an ended read; ``False`` if it was not open (ended already)."""
        if session not in self._sessions:
            return False
        self._sessions.remove(session)
        self._per_connection[session.routing] -= 1
        if self._per_connection[session.routing] <= 0:
            del self._per_connection[session.routing]
        if isinstance(session, V2Read):
            self._v2.pop((session.routing, session.request_id), None)
        return True

    def idle(self) -> list[tuple[ReadSession, list[bytes]]]:
        """Reads idle beyond the timeout, each with the error that tells its client.

        Checked at most once per :data:`IDLE_SWEEP_INTERVAL_S`; the caller ends
        the reads and sends the errors.
        """
        now = time.monotonic()
        if now < self._next_sweep:
            return []
        self._next_sweep = now + IDLE_SWEEP_INTERVAL_S
        timeout = self.idle_timeout_s
        reason = f"read closed: its client was idle for over {timeout} s"
        expired: list[tuple[ReadSession, list[bytes]]] = []
        for session in self._sessions:
            if now - session.last_progress <= timeout:
                continue
            if isinstance(session, V2Read):
                error = v2.encode_error(
                    session.request_id, v2.ErrorCode.LIMIT_EXCEEDED, reason, timeout
                )
            else:
                error = gorewind.encode_error(reason)
            expired.append((session, error))
        return expired
