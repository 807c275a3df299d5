"""Bounded socket I/O and protocol checks shared by the integration tests.

Every wait here has a deadline: a server that stops answering makes a test
fail with a message instead of hanging it.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import zmq
from zmq.utils.monitor import recv_monitor_message

from tests.support import ServerProcess

Context = zmq.Context[zmq.Socket[bytes]]
Socket = zmq.Socket[bytes]
EventPair = tuple[bytes, bytes]

ANY_PORT = "tcp://127.0.0.1:*"
REPLY_TIMEOUT_MS = 5000
STREAM_TIMEOUT_MS = 5000
PAGE_SIZE = 100
"""The seed protocol's cap on (id, event) pairs per QUERY reply."""


def storage_url(backend: str, directory: Path, name: str = "events.db") -> str:
    """A storage URL for ``backend`` (``memory`` or ``sqlite``) under ``directory``."""
    if backend == "memory":
        return "memory:"
    return f"sqlite:{directory / name}"


def wait_for(condition: Callable[[], bool], timeout: float, interval: float = 0.01) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass; return its last value."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(interval)
    return condition()


# Request/reply ------------------------------------------------------------------------


def open_req(context: Context, endpoint: str) -> Socket:
    """A REQ socket connected to ``endpoint`` that never blocks on close."""
    sock = context.socket(zmq.REQ)
    sock.setsockopt(zmq.LINGER, 0)
    sock.connect(endpoint)
    return sock


def receive(sock: Socket, timeout_ms: int = REPLY_TIMEOUT_MS) -> list[bytes]:
    """Receive one multipart message, failing if none arrives in time."""
    if not sock.poll(timeout_ms, zmq.POLLIN):
        raise AssertionError(f"no message within {timeout_ms} ms")
    return sock.recv_multipart()


def request(
    sock: Socket, frames: Sequence[bytes], timeout_ms: int = REPLY_TIMEOUT_MS
) -> list[bytes]:
    """Send ``frames`` and return the reply, failing if none comes in time."""
    sock.send_multipart(list(frames))
    if not sock.poll(timeout_ms, zmq.POLLIN):
        raise AssertionError(f"no reply to {list(frames)[:1]!r} within {timeout_ms} ms")
    return sock.recv_multipart()


def publish(sock: Socket, data: bytes) -> None:
    """PUBLISH ``data`` and check the reply is exactly ``[b"PUBLISHED"]``."""
    reply = request(sock, [b"PUBLISH", data])
    assert reply == [b"PUBLISHED"], reply


def publish_all(sock: Socket, items: Iterable[bytes]) -> None:
    """PUBLISH each item in turn."""
    for data in items:
        publish(sock, data)


def numbered(prefix: str, count: int) -> list[bytes]:
    """``count`` distinct payloads like ``b"prefix-000007"``."""
    return [f"{prefix}-{index:06d}".encode() for index in range(count)]


@dataclass(frozen=True, slots=True)
class Page:
    """One QUERY reply: its (id, event) pairs and whether it ended with END."""

    events: list[EventPair]
    ended: bool


def parse_page(frames: Sequence[bytes]) -> Page:
    """Split a QUERY reply, checking its shape strictly against the seed protocol."""
    assert frames, "empty QUERY reply"
    assert not (len(frames) == 1 and frames[0].startswith(b"ERROR")), frames[0]
    ended = len(frames) % 2 == 1
    if ended:
        assert frames[-1] == b"END", f"odd-length reply must end with END: {frames[-1]!r}"
    body = list(frames[:-1] if ended else frames)
    events = list(zip(body[0::2], body[1::2], strict=True))
    assert len(events) <= PAGE_SIZE, f"{len(events)} pairs in one reply"
    if not ended:
        assert len(events) == PAGE_SIZE, f"reply of {len(events)} pairs has no END"
    return Page(events, ended)


def query_page(sock: Socket, from_id: bytes = b"", to_id: bytes = b"") -> Page:
    """One QUERY round trip, parsed."""
    return parse_page(request(sock, [b"QUERY", from_id, to_id]))


def query_all(
    sock: Socket, from_id: bytes = b"", to_id: bytes = b"", max_pages: int = 1000
) -> list[EventPair]:
    """Every event after ``from_id`` up to ``to_id``, paging until END."""
    events: list[EventPair] = []
    cursor = from_id
    for _ in range(max_pages):
        page = query_page(sock, cursor, to_id)
        events.extend(page.events)
        if page.ended:
            return events
        cursor = page.events[-1][0]
    raise AssertionError(f"QUERY did not reach END within {max_pages} pages")


def assert_error(frames: Sequence[bytes]) -> bytes:
    """Check a reply is one ``ERROR <reason>`` frame and return it."""
    assert len(frames) == 1, f"error reply should be one frame: {frames!r}"
    assert frames[0].startswith(b"ERROR "), frames
    return frames[0]


def assert_event_id(raw: bytes) -> None:
    """Check ``raw`` is a 36-character canonical UUID in ASCII."""
    assert len(raw) == 36, raw
    text = raw.decode("ascii")
    assert str(uuid.UUID(text)) == text, raw


def last_id(sock: Socket) -> bytes:
    """The id of the newest stored event (the store must not be empty)."""
    events = query_all(sock)
    assert events, "the store is empty"
    return events[-1][0]


# Streaming ----------------------------------------------------------------------------


class Streamed(NamedTuple):
    """One message from the streaming socket."""

    id: bytes
    previous: bytes
    data: bytes


class Subscriber:
    """A SUB socket on the streaming endpoint, subscribed to everything.

    ``wait_connected`` waits for the ZeroMQ handshake, which makes a live
    subscription very likely but not certain: tests that must not miss the
    first message call :meth:`warm_up` or retry.
    """

    def __init__(
        self,
        context: Context,
        endpoint: str,
        *,
        rcvhwm: int | None = None,
        wait_connected: bool = True,
    ) -> None:
        self.sock = context.socket(zmq.SUB)
        self.sock.setsockopt(zmq.LINGER, 0)
        if rcvhwm is not None:
            self.sock.setsockopt(zmq.RCVHWM, rcvhwm)
        self.sock.setsockopt(zmq.SUBSCRIBE, b"")
        monitor = self.sock.get_monitor_socket(zmq.EVENT_HANDSHAKE_SUCCEEDED)
        try:
            self.sock.connect(endpoint)
            if wait_connected:
                if not monitor.poll(STREAM_TIMEOUT_MS, zmq.POLLIN):
                    raise AssertionError(f"SUB did not connect to {endpoint}")
                recv_monitor_message(monitor)
                # Give the publisher a moment to register the subscription.
                time.sleep(0.05)
        finally:
            self.sock.disable_monitor()
            monitor.close(linger=0)

    def receive(self, timeout_ms: int = STREAM_TIMEOUT_MS) -> Streamed:
        """The next streamed message, which must have exactly three frames."""
        frames = receive(self.sock, timeout_ms)
        assert len(frames) == 3, f"streamed message has {len(frames)} frames"
        return Streamed(frames[0], frames[1], frames[2])

    def receive_many(self, count: int, timeout_ms: int = STREAM_TIMEOUT_MS) -> list[Streamed]:
        """The next ``count`` streamed messages."""
        return [self.receive(timeout_ms) for _ in range(count)]

    def quiet_for(self, timeout_ms: int) -> bool:
        """True if nothing arrives within ``timeout_ms``."""
        return not self.sock.poll(timeout_ms, zmq.POLLIN)

    def warm_up(
        self, req: Socket, attempts: int = 100, poll_ms: int = 50, *, strict: bool = True
    ) -> list[Streamed]:
        """Publish warm-up events until the stream delivers one.

        Returns every message received meanwhile, ending with the last warm-up
        published, so the caller knows exactly where the live stream stands.
        With ``strict`` every one of them must be one of these warm-ups;
        otherwise up to a thousand other messages may come first.
        """
        published: list[bytes] = []
        for attempt in range(attempts):
            data = f"warm-up-{uuid.uuid4().hex}-{attempt}".encode()
            publish(req, data)
            published.append(data)
            if self.sock.poll(poll_ms, zmq.POLLIN):
                break
        else:
            raise AssertionError(f"no streamed event after {attempts} warm-up publishes")
        seen: list[Streamed] = []
        for _ in range(len(published) + (0 if strict else 1000)):
            message = self.receive()
            assert not strict or message.data in published, message
            seen.append(message)
            if message.data == published[-1]:
                return seen
        raise AssertionError("the last warm-up event never arrived")

    def close(self) -> None:
        self.sock.close(linger=0)


def assert_chain(messages: Sequence[Streamed], first_previous: bytes) -> None:
    """Each message's previous id is the id of the message before it."""
    previous = first_previous
    for index, message in enumerate(messages):
        assert message.previous == previous, f"chain broken at message {index}"
        previous = message.id


# Background publishers --------------------------------------------------------------


class Publisher(threading.Thread):
    """Publishes ``count`` tagged events on its own REQ socket.

    With ``until_silence`` the thread ends quietly (instead of recording an
    error) when the server stops answering or :attr:`stop` is set, which is
    what a test that stops the server wants.
    """

    def __init__(
        self,
        context: Context,
        endpoint: str,
        tag: str,
        count: int,
        *,
        until_silence: bool = False,
        reply_timeout: float = 10.0,
        start_barrier: threading.Barrier | None = None,
    ) -> None:
        super().__init__(name=f"publisher-{tag}", daemon=True)
        self.context = context
        self.endpoint = endpoint
        self.tag = tag
        self.count = count
        self.until_silence = until_silence
        self.reply_timeout = reply_timeout
        self.start_barrier = start_barrier
        self.stop = threading.Event()
        self.sent: list[bytes] = []
        self.acked: list[bytes] = []
        self.error: BaseException | None = None

    def payload(self, index: int) -> bytes:
        return f"{self.tag}-{index:06d}".encode()

    def run(self) -> None:
        sock = open_req(self.context, self.endpoint)
        try:
            if self.start_barrier is not None:
                self.start_barrier.wait(10)
            for index in range(self.count):
                if self.stop.is_set():
                    return
                data = self.payload(index)
                sock.send_multipart([b"PUBLISH", data])
                self.sent.append(data)
                reply = self._reply(sock)
                if reply is None:
                    if not self.until_silence:
                        self.error = AssertionError(f"{self.tag}: no reply for {data!r}")
                    return
                if reply != [b"PUBLISHED"]:
                    self.error = AssertionError(f"{self.tag}: {data!r} answered {reply!r}")
                    return
                self.acked.append(data)
        except BaseException as exc:
            self.error = exc
        finally:
            sock.close(linger=0)

    def _reply(self, sock: Socket) -> list[bytes] | None:
        deadline = time.monotonic() + self.reply_timeout
        while time.monotonic() < deadline:
            if sock.poll(50, zmq.POLLIN):
                return sock.recv_multipart()
            if self.until_silence and self.stop.is_set():
                return None
        return None


def join_all(threads: Iterable[threading.Thread], timeout: float = 30.0) -> None:
    """Join every thread within one shared deadline, failing if any is still alive."""
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
        assert not thread.is_alive(), f"{thread.name} did not finish"


# Server processes with hand-made command lines ---------------------------------------


def clean_environ(extra: dict[str, str] | None = None) -> dict[str, str]:
    """The current environment without any ``REWIND_*`` variable, plus ``extra``."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("REWIND_")}
    env.update(extra or {})
    return env


def serve_process(
    args: Sequence[str], *, env: dict[str, str] | None = None, cwd: Path | None = None
) -> ServerProcess:
    """A :class:`ServerProcess` running ``rewind serve ARGS`` exactly as given.

    Unlike the default, no storage or endpoint flag is added, and the
    environment carries only the ``REWIND_*`` variables in ``env``.
    """
    process = ServerProcess("memory:", cwd=cwd)
    process.args = [sys.executable, "-m", "rewind", "serve", *args]
    process.env = clean_environ(env)
    return process


READY_STORAGE = re.compile(r"Rewind ready: .*; storage (?P<storage>\S+) \(")


def ready_storage(process: ServerProcess) -> str:
    """The storage URL the server's ready line names."""
    match = READY_STORAGE.search(process.log)
    assert match, process.log
    return match["storage"]


def reopen(process: ServerProcess) -> ServerProcess:
    """Start a stopped or killed server again on the same endpoints and storage."""
    process._use_resolved_endpoints()
    return process.start()


def assert_writers_consistent(writers: Sequence[Publisher], stored: Sequence[bytes]) -> None:
    """Check stored payloads against what each writer sent and was acknowledged.

    A writer's events must be stored once each, in its own order: every
    acknowledged one, plus at most the single request that was in flight.
    """
    assert len(set(stored)) == len(stored), "an event was stored twice"
    for writer in writers:
        prefix = f"{writer.tag}-".encode()
        mine = [data for data in stored if data.startswith(prefix)]
        acked = len(writer.acked)
        assert mine[:acked] == writer.acked, f"{writer.tag} lost acknowledged events"
        assert mine in (writer.sent[:acked], writer.sent[: acked + 1]), (
            f"{writer.tag}: stored {len(mine)} events, sent {len(writer.sent)}, acked {acked}"
        )


def assert_one_line_failure(result: subprocess.CompletedProcess[bytes], *needles: str) -> str:
    """A non-zero exit with exactly one line on stderr, no traceback, nothing on stdout."""
    stderr = result.stderr.decode(errors="replace")
    assert result.returncode != 0, stderr
    assert result.stdout == b""
    assert "Traceback" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    for needle in needles:
        assert needle in lines[0], lines[0]
    return lines[0]
