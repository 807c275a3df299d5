"""A bare pyzmq REP echo server: the transport ceiling Rewind is measured against.

Run as ``python -m benchmarks.echo``. It binds a free loopback port, prints
``echo ready <endpoint>`` on stdout and then echoes every message until killed.
It imports nothing but pyzmq, so its cost is ZeroMQ's plus the interpreter's.
"""

from __future__ import annotations

import sys

import zmq

READY_PREFIX = "echo ready "


def main() -> None:
    """Bind, announce the endpoint, echo forever."""
    context = zmq.Context()
    socket = context.socket(zmq.REP)
    socket.bind("tcp://127.0.0.1:*")
    endpoint = socket.getsockopt_string(zmq.LAST_ENDPOINT)
    print(READY_PREFIX + endpoint, flush=True)
    while True:
        socket.send_multipart(socket.recv_multipart(copy=True), copy=True)


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        sys.exit(0)
