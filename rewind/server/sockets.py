"""The server's ZeroMQ sockets: created, configured, secured and bound in one place.

One ROUTER socket serves requests; two XPUB sockets carry the feeds (XPUB,
so the feeds learn whether anyone subscribes; see :mod:`rewind.server.feeds`).
With CURVE configured, its authenticator starts before any socket exists,
because a CURVE socket in a context without one lets every key in.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from typing import Any

import zmq

from rewind.errors import RewindError
from rewind.server.config import ServerConfig
from rewind.server.security import CurveSecurity, keys_from_config

LINGER_MS = 2000
"""How long closing sockets may spend flushing replies already queued."""


class StartupError(RewindError):
    """The server cannot start; the message says why in one line."""


class ServerSockets:
    """The request socket and both feed sockets, bound; :meth:`close` releases them."""

    def __init__(self, config: ServerConfig, context: zmq.Context[Any]) -> None:
        """Create and bind every socket, raising :class:`StartupError` on failure.

        Whatever was opened before a failure is closed again.
        """
        self._context = context
        self._config = config
        self._opened: list[zmq.Socket[bytes]] = []
        self.security: CurveSecurity | None = None
        try:
            self._start_security()
            self.router = self._socket(zmq.ROUTER)
            # A reply to a vanished peer must fail loudly (and be dropped by
            # the server), never block the loop or vanish into a full queue.
            self.router.setsockopt(zmq.ROUTER_MANDATORY, 1)
            # ZeroMQ disconnects a peer whose frame is larger, before it costs memory.
            self.router.setsockopt(zmq.MAXMSGSIZE, config.max_message_bytes)
            self.query_endpoints = self._bind(self.router, config.query_bind_endpoints)
            self.seed_publisher = self._publisher()
            self.streaming_endpoints = self._bind(
                self.seed_publisher, config.streaming_bind_endpoints
            )
            self.v2_publisher = self._publisher()
            self.v2_streaming_endpoints = self._bind(
                self.v2_publisher, config.v2_streaming_bind_endpoints
            )
        except BaseException:
            self.close()
            raise

    @property
    def publishers(self) -> tuple[zmq.Socket[bytes], zmq.Socket[bytes]]:
        """The seed and v2 feed sockets."""
        return self.seed_publisher, self.v2_publisher

    def close(self) -> None:
        """Close every socket and stop the authenticator. Safe to call more than once."""
        for sock in self._opened:
            if not sock.closed:
                sock.close()
        self._opened = []
        if self.security is not None:
            self.security.stop()
            self.security = None

    def _start_security(self) -> None:
        keys = keys_from_config(self._config)
        if keys is None:
            return
        self.security = CurveSecurity(keys, self._context)
        try:
            self.security.start()
        except zmq.ZMQError as exc:
            # Most likely another ZAP handler in this process's ZeroMQ context.
            raise StartupError(f"cannot start the CURVE authenticator: {exc}") from None

    def _socket(self, kind: int) -> zmq.Socket[bytes]:
        sock: zmq.Socket[bytes] = self._context.socket(kind)
        self._opened.append(sock)
        sock.setsockopt(zmq.LINGER, LINGER_MS)
        return sock

    def _publisher(self) -> zmq.Socket[bytes]:
        publisher = self._socket(zmq.XPUB)
        # Past this many queued messages a subscriber's messages are dropped,
        # so one that never reads costs bounded memory.
        publisher.setsockopt(zmq.SNDHWM, self._config.pub_high_water_mark)
        return publisher

    def _bind(self, sock: zmq.Socket[bytes], endpoints: Sequence[str]) -> list[str]:
        if self.security is not None:
            self.security.secure(sock)
        bound = []
        for endpoint in endpoints:
            try:
                sock.bind(endpoint)
            except zmq.ZMQError as exc:
                reason = os.strerror(exc.errno) if exc.errno else str(exc)
                raise StartupError(f"cannot bind {endpoint}: {reason}") from None
            # LAST_ENDPOINT resolves a "*" port to the one actually bound.
            bound.append(sock.getsockopt_string(zmq.LAST_ENDPOINT))
        return bound
