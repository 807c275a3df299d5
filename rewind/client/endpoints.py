"""Several servers behind one client, without I/O: which endpoint is current, and failover.

Servers sharing one store (see "Several servers on one store" in
``docs/operations.md``) all serve the same log, so a client given several
query endpoints can send a request to any of them. It keeps using one, the
current endpoint, for as long as it answers. When a request goes unanswered
(or is answered ``UNAVAILABLE``), the client *fails over*: the retry goes to
the next endpoint, round robin, which then stays current.

Feed endpoints are given in the same order, one per server, so the feed to
follow is always the current server's (:meth:`Endpoints.feed`). Every
server's feed carries the same events at the same positions, so a
subscriber that moves to another server's feed only has to read from the
store what it may have missed meanwhile.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

__all__ = ["EndpointList", "Endpoints", "parse_endpoints"]

log = logging.getLogger("rewind.client")

EndpointList = str | Sequence[str]
"""One endpoint, several endpoints, or several in one string separated by commas."""


def parse_endpoints(value: EndpointList, what: str = "endpoint") -> tuple[str, ...]:
    """The endpoints ``value`` names, in order; a string may list several, comma-separated.

    Raises :class:`ValueError` naming ``what`` when none is given or one is empty.
    """
    items = [value] if isinstance(value, str) else list(value)
    endpoints: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise TypeError(f"{what} must be a string, not {type(item).__name__}")
        endpoints.extend(part.strip() for part in item.split(","))
    if not endpoints or any(not endpoint for endpoint in endpoints):
        raise ValueError(f"{what}: empty endpoint in {value!r}")
    return tuple(endpoints)


class Endpoints:
    """The query endpoints of one client and which of them is current.

    Shared by every connection and iterator of a client, so that a failover
    noticed by any of them moves all of them (a subscription then switches
    to the new server's feed).
    """

    def __init__(self, endpoints: EndpointList) -> None:
        self.all = parse_endpoints(endpoints, "query endpoint")
        self.index = 0
        """Which endpoint is current."""
        self.failovers = 0
        """How many times the client moved to the next endpoint."""

    @property
    def current(self) -> str:
        """The endpoint requests go to now."""
        return self.all[self.index]

    @property
    def several(self) -> bool:
        """Whether there is anywhere to fail over to."""
        return len(self.all) > 1

    def fail_over(self, reason: str) -> str:
        """Make the next endpoint current (round robin); return it.

        With a single endpoint nothing changes: the retry goes to the same one.
        """
        if not self.several:
            log.info("%s from %s, retrying", reason, self.current)
            return self.current
        failed = self.current
        self.index = (self.index + 1) % len(self.all)
        self.failovers += 1
        log.warning("%s from %s, failing over to %s", reason, failed, self.current)
        return self.current

    def feeds(self, feeds: EndpointList, what: str) -> tuple[str, ...]:
        """Check feed endpoints against the query endpoints: one per server, or one for all."""
        parsed = parse_endpoints(feeds, what)
        if len(parsed) not in (1, len(self.all)):
            raise ValueError(
                f"{len(parsed)} {what}s for {len(self.all)} query endpoints: "
                "give one per server, in the same order"
            )
        return parsed

    def feed(self, feeds: Sequence[str]) -> str:
        """The feed of the current server among ``feeds`` (checked by :meth:`feeds`)."""
        return feeds[self.index] if len(feeds) > 1 else feeds[0]
