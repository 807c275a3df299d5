"""Bare pyzmq servers: the transport ceilings Rewind is measured against.

Run as ``python -m benchmarks.echo [MODE] [FILE]``. Each binds free
loopback ports, prints ``echo ready <endpoint> [<feed endpoint>]`` on stdout
and then serves until killed:

* ``rep`` (the default): a REP socket that echoes every request.
* ``router``: a ROUTER socket that echoes every message back to its sender,
  so a DEALER can keep many requests in flight.
* ``relay``: a ROUTER socket that publishes the last six frames of every
  request (as many as a v2 feed message) on a PUB socket, then echoes the
  request as its reply: the hop a server makes between a publisher and its
  subscribers, minus storage.
* ``durable-relay FILE``: a ``relay`` that first appends every group of
  requests waiting on its socket to FILE and flushes it (``fdatasync``),
  then publishes and answers them: the least a durable server must do
  before its subscribers may see an event (group commit, minus a database).
* ``ack``: a ROUTER socket that answers every request with ``PUBLISHED``,
  as a seed-protocol server that stored nothing would.
* ``stream``: a ROUTER socket that answers v2 ``READ_ALL`` requests with
  batches encoded in advance (:mod:`benchmarks.stream_ceiling`): Rewind's
  streamed reads without a store.

The others import nothing but pyzmq, so their cost is ZeroMQ's plus the
interpreter's.
"""

from __future__ import annotations

import os
import sys
from typing import Any

import zmq

READY_PREFIX = "echo ready "
MODES = ("rep", "router", "ack", "relay", "durable-relay", "stream")


def _bind(context: zmq.Context[Any], kind: int) -> tuple[zmq.Socket[Any], str]:
    socket = context.socket(kind)
    socket.bind("tcp://127.0.0.1:*")
    return socket, socket.getsockopt_string(zmq.LAST_ENDPOINT)


def main(mode: str = "rep", path: str = "") -> None:
    """Bind, announce the endpoints, serve forever."""
    context: zmq.Context[Any] = zmq.Context()
    if mode == "rep":
        socket, endpoint = _bind(context, zmq.REP)
        print(READY_PREFIX + endpoint, flush=True)
        while True:
            socket.send_multipart(socket.recv_multipart(copy=True), copy=True)
    socket, endpoint = _bind(context, zmq.ROUTER)
    if mode == "router":
        print(READY_PREFIX + endpoint, flush=True)
        while True:
            socket.send_multipart(socket.recv_multipart(copy=True), copy=True)
    if mode == "ack":
        print(READY_PREFIX + endpoint, flush=True)
        while True:
            frames = socket.recv_multipart(copy=True)
            # The envelope (identity and delimiter of a REQ client), then the answer.
            socket.send_multipart([*frames[:2], b"PUBLISHED"], copy=True)
    if mode == "stream":
        from benchmarks.stream_ceiling import serve

        print(READY_PREFIX + endpoint, flush=True)
        serve(socket)
    publisher, feed = _bind(context, zmq.PUB)
    # No high-water mark: a slow subscriber shows up as latency, not as loss.
    publisher.setsockopt(zmq.SNDHWM, 0)
    print(f"{READY_PREFIX}{endpoint} {feed}", flush=True)
    if mode == "durable-relay":
        _relay_durably(socket, publisher, path)
    while True:
        frames = socket.recv_multipart(copy=True)
        # The request's last six frames (header, stream, id, type, metadata,
        # data): as many as a v2 feed message has, with the data last.
        publisher.send_multipart(frames[-6:], copy=True)
        socket.send_multipart(frames, copy=True)


def _relay_durably(socket: zmq.Socket[Any], publisher: zmq.Socket[Any], path: str) -> None:
    """Serve as the relay does, each drained group made durable before it is relayed."""
    with open(path, "ab", buffering=0) as log:
        while True:
            group = [socket.recv_multipart(copy=True)]
            try:
                while True:
                    group.append(socket.recv_multipart(zmq.NOBLOCK, copy=True))
            except zmq.Again:
                pass
            log.write(b"".join(frames[-1] for frames in group))
            os.fdatasync(log.fileno())
            for frames in group:
                publisher.send_multipart(frames[-6:], copy=True)
                socket.send_multipart(frames, copy=True)


if __name__ == "__main__":
    try:
        main(*sys.argv[1:3])
    except KeyboardInterrupt:
        sys.exit(0)
