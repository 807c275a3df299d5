"""The configurable bounds on what one request may ask the store to keep.

One check serves every dialect: the server applies it to each append before
the append reaches the store, and each dialect turns the refusal into its own
``ERROR`` reply. The message-size bound is ZeroMQ's (``MAXMSGSIZE``), applied
by the socket itself before a frame ever reaches Python.
"""

from __future__ import annotations

from dataclasses import dataclass

from rewind.errors import LimitExceededError
from rewind.model import AppendRequest
from rewind.server.config import ServerConfig


@dataclass(frozen=True, slots=True)
class Limits:
    """The limits a server enforces; see ``docs/operations.md`` for their defaults."""

    max_message_bytes: int
    max_event_bytes: int
    max_append_events: int
    max_stream_name_bytes: int

    @classmethod
    def from_config(cls, config: ServerConfig) -> Limits:
        """The limits a configuration sets."""
        return cls(
            max_message_bytes=config.max_message_bytes,
            max_event_bytes=config.max_event_bytes,
            max_append_events=config.max_append_events,
            max_stream_name_bytes=config.max_stream_name_bytes,
        )

    def check_append(self, request: AppendRequest) -> LimitExceededError | None:
        """Why ``request`` breaks a limit, or ``None`` when it keeps to all of them."""
        if len(request.events) > self.max_append_events:
            return LimitExceededError(
                f"{len(request.events)} events in one append; at most {self.max_append_events}",
                self.max_append_events,
            )
        # Characters never outnumber UTF-8 bytes, and never by more than four times,
        # so most names need no encoding to be measured.
        name = request.stream
        if len(name) * 4 > self.max_stream_name_bytes:
            name_bytes = len(name.encode("utf-8", "surrogatepass"))
            if name_bytes > self.max_stream_name_bytes:
                return LimitExceededError(
                    f"stream name is {name_bytes} bytes; at most {self.max_stream_name_bytes}",
                    self.max_stream_name_bytes,
                )
        limit = self.max_event_bytes
        for index, event in enumerate(request.events):
            payload = len(event.data) + len(event.metadata)
            if payload + 4 * len(event.event_type) <= limit:
                continue  # within the limit whatever the type's characters encode to
            size = payload + len(event.event_type.encode("utf-8", "surrogatepass"))
            if size > limit:
                return LimitExceededError(
                    f"event {index} is {size} bytes (data, metadata and type); at most {limit}",
                    limit,
                )
        return None
