"""A relay between clients and a server that can lose the server's replies.

It is a plain ROUTER-DEALER forwarder, as a ZeroMQ proxy in front of a
server would be (the server answers through the routing frames it adds),
with one switch: while :attr:`LossyRelay.losing` is set, replies are kept
in :attr:`LossyRelay.lost` instead of being passed on. With it a test can
make a request commit and then lose its reply for certain, which a kill at
a random moment only does by chance.
"""

from __future__ import annotations

import threading
from typing import Any

import zmq

POLL_MS = 20


class LossyRelay(threading.Thread):
    """Forwards requests to ``server_endpoint`` and replies back, or loses the replies."""

    def __init__(self, server_endpoint: str) -> None:
        super().__init__(name="lossy-relay", daemon=True)
        self.server_endpoint = server_endpoint
        self.endpoint = ""
        """Where clients connect (bound on a free loopback port)."""
        self.losing = threading.Event()
        self.lost: list[list[bytes]] = []
        """Replies kept back, each as the routing frames, the empty frame and the body."""
        self.passed = 0
        """Replies passed on to clients."""
        self._stopping = threading.Event()
        self._bound = threading.Event()
        self._context: zmq.Context[Any] = zmq.Context()

    def started(self, timeout: float = 5.0) -> LossyRelay:
        """Start, and return once :attr:`endpoint` is bound."""
        self.start()
        if not self._bound.wait(timeout):
            raise RuntimeError("relay did not start")
        return self

    def run(self) -> None:
        frontend = self._context.socket(zmq.ROUTER)
        backend = self._context.socket(zmq.DEALER)
        try:
            for sock in (frontend, backend):
                sock.setsockopt(zmq.LINGER, 0)
            frontend.bind("tcp://127.0.0.1:*")
            self.endpoint = frontend.getsockopt_string(zmq.LAST_ENDPOINT)
            backend.connect(self.server_endpoint)
            self._bound.set()
            poller = zmq.Poller()
            poller.register(frontend, zmq.POLLIN)
            poller.register(backend, zmq.POLLIN)
            while not self._stopping.is_set():
                ready = dict(poller.poll(POLL_MS))
                if frontend in ready:
                    backend.send_multipart(frontend.recv_multipart())
                if backend in ready:
                    reply = backend.recv_multipart()
                    if self.losing.is_set():
                        self.lost.append(reply)
                    else:
                        # Counted first: the client may act on the reply at once.
                        self.passed += 1
                        frontend.send_multipart(reply)
        finally:
            self._bound.set()
            frontend.close()
            backend.close()

    def stop(self) -> None:
        """Stop relaying and release the sockets."""
        self._stopping.set()
        self.join(5)
        self._context.term()
