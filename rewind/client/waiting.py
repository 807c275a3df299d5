"""Waiting for a message on a socket without ever losing Ctrl-C.

Python runs a signal's handler (raising ``KeyboardInterrupt`` for SIGINT)
between bytecodes. A signal that lands just before a blocking ZeroMQ poll
starts is therefore acted on only when the poll returns, which for an
unbounded wait may be never. Waiting in slices bounds that delay.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

SLICE_MS = 250
"""Longest single poll: the most a pending Ctrl-C can wait to be noticed."""


def wait_readable(sock: zmq.Socket[Any], timeout_ms: int | None) -> bool:
    """Whether a message can be received within ``timeout_ms`` (``None``: no limit)."""
    deadline = None if timeout_ms is None else time.monotonic() + timeout_ms / 1000
    while True:
        if deadline is None:
            slice_ms = SLICE_MS
        else:
            remaining_ms = int((deadline - time.monotonic()) * 1000)
            if remaining_ms <= 0:
                return bool(sock.poll(0, zmq.POLLIN))
            slice_ms = min(SLICE_MS, remaining_ms)
        if sock.poll(slice_ms, zmq.POLLIN):
            return True
