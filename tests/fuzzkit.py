"""Hostile-input fuzzing against a running ``rewind serve``: sockets, oracles, strategies.

A :class:`FuzzTarget` owns one real server (SQLite in a temporary
directory) and three sockets on its request endpoint:

* ``fuzz``, a DEALER that sends the hostile messages, one case at a time,
  each followed by a *barrier*: a v2 ``PING`` behind the same routing
  prefix, so the server's per-connection reply order puts its ``PONG``
  after every reply the case can get (v2 reads, which stream alongside,
  are then finished or cancelled explicitly);
* ``probe``, a DEALER on its own connection that must get a ``PONG``
  within :data:`PING_BOUND_MS` after every case;
* ``req``, a REQ socket for the seed protocol's lockstep clients.

The oracles below are written from ``docs/protocol.md``, not from the
server's parser: the envelope rule, the dialect table, the naming rules
and the numeric ranges of the v2 headers.
"""

from __future__ import annotations

import hashlib
import os
import re
import struct
import time
import uuid
from collections import Counter
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import psutil
import pytest
import zmq
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st

from rewind.client import Client
from rewind.protocol import v2
from tests.support import ServerProcess

Frames = list[bytes]
Socket = zmq.Socket[bytes]

PING_BOUND_MS = 100
"""After every case the server must answer a PING on another connection this fast."""
STALL_MS = 1000
"""A PING slower than this fails the case at once: the server is stalled, not just busy."""
SLOW_PING_SHARE = 0.005
"""Share of cases whose PING may exceed the bound (a shared CI machine's scheduling noise)."""
REPLY_TIMEOUT_MS = 5000
"""Longest wait for any reply a case is owed; silence past it fails the case."""
RSS_GROWTH_BOUND = 50 * 2**20
"""Most the server's resident memory may grow over a module's fuzzing."""
DEFAULT_STREAM = "default"

I63 = 2**63 - 1
U64 = 2**64 - 1
MAX_NAME = 1024
MAX_BATCH = 10_000
MAX_CREDIT = 1_024
MAX_TYPES = 256

SCALE = float(os.environ.get("REWIND_FUZZ_SCALE", "1"))
"""Multiplies every fuzz test's case count (e.g. 10 for a long local run)."""


def fuzz_settings(examples: int) -> settings:
    """Settings for a fuzz test: reproducible in CI, no per-case deadline."""
    return settings(
        max_examples=max(1, int(examples * SCALE)),
        deadline=None,
        derandomize=True,
        database=None,
        print_blob=True,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


TALLY: Counter[str] = Counter()
"""Cases run per protocol in this test session (reported at each module's end)."""
SECONDS: Counter[str] = Counter()


# The documented contract ---------------------------------------------------------------

_COMMAND = re.compile(rb"(?:PUBLISH|QUERY|RWD[0-9]+)\Z")
_MARKER = re.compile(rb"RWD[0-9]+\Z")


def split_sent(frames: Sequence[bytes]) -> tuple[Frames, Frames]:
    """The routing prefix and the body of a message as a DEALER sent it.

    docs/protocol.md: everything up to and including the first empty frame
    is routing, echoed in front of the reply, unless a command word (or v2
    marker) comes first; with neither, everything is body.
    """
    for index, frame in enumerate(frames):
        if frame == b"":
            return list(frames[: index + 1]), list(frames[index + 1 :])
        if _COMMAND.match(frame):
            return list(frames[:index]), list(frames[index:])
    return [], list(frames)


def dialect_of(body: Sequence[bytes]) -> str:
    """``v2``, ``gorewind`` or ``seed``, by the table in docs/protocol.md."""
    if body and _MARKER.match(body[0]):
        return "v2"
    if body and (
        (body[0] == b"PUBLISH" and len(body) == 3) or (body[0] == b"QUERY" and len(body) == 4)
    ):
        return "gorewind"
    return "seed"


def valid_name(frame: bytes, *, allow_empty: bool = False) -> bool:
    """A stream name (or type, or prefix) the docs accept."""
    if not frame:
        return allow_empty
    if len(frame) > MAX_NAME or b"\x00" in frame:
        return False
    try:
        frame.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()[:16]


def is_canonical_id(frame: bytes) -> bool:
    try:
        return str(uuid.UUID(frame.decode("ascii"))).encode() == frame
    except (UnicodeDecodeError, ValueError):
        return False


def peek_id(body: Sequence[bytes]) -> int:
    """The request id a v2 reply must carry: header's first 8 bytes, or 0 (docs)."""
    if len(body) >= 3 and len(body[2]) >= 8:
        return int.from_bytes(body[2][:8], "big")
    return 0


# What was stored ------------------------------------------------------------------------

StoredKey = tuple[str, str, str, str]
"""(stream, type, metadata digest, data digest) of one stored event."""


@dataclass
class Ledger:
    """Every append the server acknowledged during fuzzing, to check the store against."""

    unpositioned: Counter[StoredKey] = field(default_factory=Counter)
    by_position: dict[int, StoredKey] = field(default_factory=dict)

    def seed(self, stream: str, data: bytes) -> None:
        self.unpositioned[(stream, "", digest(b""), digest(data))] += 1

    def positioned(self, first: int, events: Sequence[StoredKey]) -> None:
        for offset, key in enumerate(events):
            known = self.by_position.setdefault(first + offset, key)
            assert known == key, f"position {first + offset} acknowledged twice differently"

    @property
    def total(self) -> int:
        return sum(self.unpositioned.values()) + len(self.by_position)


# The target --------------------------------------------------------------------------


class CaseFailure(AssertionError):
    """The server broke the contract on one case."""


@dataclass
class Stats:
    cases: int = 0
    slowest_ping_ms: float = 0.0
    slow_pings: int = 0
    rss_start: int = 0
    rss_end: int = 0
    seconds: float = 0.0


class FuzzTarget:
    """A running server plus the sockets and bookkeeping of one fuzz module."""

    def __init__(self, directory: Path, name: str) -> None:
        self.name = name
        self.server = ServerProcess(f"sqlite:{directory / 'fuzz.db'}").start()
        self.context: zmq.Context[Socket] = zmq.Context()
        self.probe = self._dealer()
        self.fuzz = self._dealer()
        self.req = self._req()
        self.ledger = Ledger()
        self.stats = Stats()
        self._barrier = 0xB477_1E00_0000_0000
        self._dirty = False
        self.process = psutil.Process(self.server.process.pid)  # type: ignore[union-attr]
        self.client = Client(
            self.server.query_endpoint,
            self.server.streaming_endpoint,
            v2_streaming_endpoint=self.server.v2_streaming_endpoint,
            timeout=10.0,
            context=self.context,
        )
        self.baseline_head = 0

    def _dealer(self) -> Socket:
        sock = self.context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.server.query_endpoint)
        return sock

    def _req(self) -> Socket:
        sock = self.context.socket(zmq.REQ)
        sock.setsockopt(zmq.LINGER, 0)
        sock.connect(self.server.query_endpoint)
        return sock

    def close(self) -> None:
        self.client.close()
        self.context.destroy(linger=0)
        self.server.stop()

    # Measurements ------------------------------------------------------------------

    def rss(self) -> int:
        return int(self.process.memory_info().rss)

    def begin(self) -> None:
        """Mark the state fuzzing starts from: head position and memory."""
        self.baseline_head = self.client.server_info().head_position
        self._ping(REPLY_TIMEOUT_MS)
        self.stats.rss_start = self.rss()

    def ping(self) -> float:
        """A probe PING after a case: within 100 ms, bar rare scheduling noise.

        A PING over :data:`STALL_MS` fails at once; slower than the bound but
        not stalled counts as slow, and slow ones may be at most
        :data:`SLOW_PING_SHARE` of the cases (at least one).
        """
        elapsed = self._ping(STALL_MS)
        if elapsed > PING_BOUND_MS:
            self.stats.slow_pings += 1
            allowed = max(1, int(self.stats.cases * SLOW_PING_SHARE))
            if self.stats.slow_pings > allowed:
                raise CaseFailure(
                    f"{self.stats.slow_pings} PINGs over {PING_BOUND_MS} ms in "
                    f"{self.stats.cases} cases (latest {elapsed:.0f} ms)"
                )
        return elapsed

    def _ping(self, bound_ms: float) -> float:
        """A v2 PING on the probe connection; its PONG must come within ``bound_ms``."""
        self._barrier += 1
        request_id = self._barrier
        started = time.perf_counter()
        self.probe.send_multipart([b"", *v2.encode_ping_request(request_id)])
        deadline = started + bound_ms / 1000
        while True:
            left = deadline - time.perf_counter()
            if left <= 0 or not self.probe.poll(max(1, int(left * 1000)), zmq.POLLIN):
                raise CaseFailure(f"no PONG within {bound_ms} ms: the server is stalled")
            reply = self.probe.recv_multipart()
            if reply == [b"", *v2.encode_pong(request_id)]:
                elapsed = (time.perf_counter() - started) * 1000
                self.stats.slowest_ping_ms = max(self.stats.slowest_ping_ms, elapsed)
                return elapsed

    def count_case(self, protocol: str) -> None:
        self.stats.cases += 1
        TALLY[protocol] += 1

    # One case ------------------------------------------------------------------------

    def exchange(self, sent: Sequence[bytes]) -> Exchange:
        """Send one message on the fuzz DEALER and collect every reply it gets.

        Checks envelopes (every reply starts with the message's routing prefix),
        that nothing arrives uninvited, and that the server still answers the
        probe in time.
        """
        if self._dirty:
            self.fuzz.close(linger=0)
            self.fuzz = self._dealer()
        self._dirty = True
        prefix, body = split_sent(sent)
        stray = self._drain()
        if stray:
            raise CaseFailure(f"messages arrived before the case was sent: {_show(stray)}")
        self.fuzz.send_multipart(list(sent))
        self._barrier += 1
        barrier_id = self._barrier
        self.fuzz.send_multipart([*prefix, *v2.encode_ping_request(barrier_id)])
        pong = [*prefix, *v2.encode_pong(barrier_id)]
        replies: list[Frames] = []
        while True:
            message = self._receive()
            if message == pong:
                break
            replies.append(self._strip(prefix, message))
        exchange = Exchange(list(sent), prefix, body, replies)
        if dialect_of(body) == "v2":
            self._finish_v2_read(exchange)
        self.ping()
        self._dirty = False
        return exchange

    def _finish_v2_read(self, exchange: Exchange) -> None:
        """A v2 read streams past the barrier: cancel it, take its batches, await its end."""
        body = exchange.body
        if len(body) < 2 or body[0] != b"RWD2" or body[1] not in (b"READ_STREAM", b"READ_ALL"):
            return
        request_id = peek_id(body)
        if _final_for(exchange.replies, request_id):
            return
        self.fuzz.send_multipart([*exchange.prefix, *v2.encode_cancel_request(request_id)])
        while True:
            message = self._strip(exchange.prefix, self._receive())
            exchange.replies.append(message)
            if _final_for([message], request_id):
                break
        if message[1] == b"END" and message[2][8] == v2.EndReason.CANCELLED:
            return
        # The read ended by itself before the CANCEL arrived: whatever answers the
        # CANCEL now is not part of the read. It must be an END CANCELLED or nothing.
        self._barrier += 1
        self.fuzz.send_multipart([*exchange.prefix, *v2.encode_ping_request(self._barrier)])
        pong = [*exchange.prefix, *v2.encode_pong(self._barrier)]
        while (late := self._receive()) != pong:
            late = self._strip(exchange.prefix, late)
            if late != v2.encode_end(request_id, v2.EndReason.CANCELLED, 0, 0):
                raise CaseFailure(f"after the read ended, CANCEL got {_show([late])}")

    def _receive(self) -> Frames:
        if not self.fuzz.poll(REPLY_TIMEOUT_MS, zmq.POLLIN):
            raise CaseFailure(f"silence: no reply within {REPLY_TIMEOUT_MS} ms")
        return self.fuzz.recv_multipart()

    def _drain(self) -> list[Frames]:
        stray = []
        while self.fuzz.poll(0, zmq.POLLIN):
            stray.append(self.fuzz.recv_multipart())
        return stray

    @staticmethod
    def _strip(prefix: Frames, message: Frames) -> Frames:
        if message[: len(prefix)] != prefix:
            raise CaseFailure(
                f"reply does not start with the routing prefix {_show([prefix])}: "
                f"{_show([message])}"
            )
        return message[len(prefix) :]

    def pipeline(self, bodies: Sequence[Sequence[bytes]]) -> list[Frames]:
        """Send several delimited requests back to back; one reply each, in order."""
        replies = self.pipeline_v2(bodies)
        if len(replies) != len(bodies):
            raise CaseFailure(f"{len(bodies)} pipelined requests got {len(replies)} replies")
        return replies

    def pipeline_v2(self, bodies: Sequence[Sequence[bytes]]) -> list[Frames]:
        """Send several delimited v2 requests back to back; every reply up to the barrier."""
        if self._dirty:
            self.fuzz.close(linger=0)
            self.fuzz = self._dealer()
        self._dirty = True
        for body in bodies:
            self.fuzz.send_multipart([b"", *body])
        self._barrier += 1
        self.fuzz.send_multipart([b"", *v2.encode_ping_request(self._barrier)])
        pong = [b"", *v2.encode_pong(self._barrier)]
        replies: list[Frames] = []
        while (message := self._receive()) != pong:
            replies.append(self._strip([b""], message))
        self.ping()
        self._dirty = False
        return replies

    def req_exchange(self, body: Sequence[bytes]) -> Frames:
        """One lockstep request on the REQ socket; exactly one reply must come."""
        self.req.send_multipart(list(body))
        if not self.req.poll(REPLY_TIMEOUT_MS, zmq.POLLIN):
            # A REQ without its reply is stuck for good: replace it for the next case.
            self.req.close(linger=0)
            self.req = self._req()
            raise CaseFailure("silence: no reply to a REQ request")
        reply = self.req.recv_multipart()
        self.ping()
        return reply

    # After fuzzing -----------------------------------------------------------------------

    def check_store_intact(self) -> None:
        """Exactly the acknowledged appends were stored, nothing malformed."""
        events = self.client.read_all(from_position=self.baseline_head + 1, batch_size=50)
        unpositioned: Counter[StoredKey] = Counter()
        count = 0
        for event in events:
            count += 1
            key = (event.stream, event.event_type, digest(event.metadata), digest(event.data))
            expected = self.ledger.by_position.get(event.position)
            if expected is not None:
                assert key == expected, f"position {event.position} holds {key}, not {expected}"
            else:
                unpositioned[key] += 1
        assert unpositioned == self.ledger.unpositioned, (
            "stored events differ from the acknowledged seed/Gorewind publishes: "
            f"extra {unpositioned - self.ledger.unpositioned}, "
            f"missing {self.ledger.unpositioned - unpositioned}"
        )
        assert count == self.ledger.total, (count, self.ledger.total)

    def finish(self, started: float) -> None:
        self.stats.rss_end = self.rss()
        self.stats.seconds += time.monotonic() - started
        SECONDS[self.name] += time.monotonic() - started

    def summary(self) -> str:
        mib = 2**20
        per_protocol = ", ".join(f"{name} {count}" for name, count in sorted(TALLY.items()))
        return (
            f"fuzz {self.name}: {self.stats.cases} cases in {self.stats.seconds:.1f} s, "
            f"slowest probe PING {self.stats.slowest_ping_ms:.1f} ms "
            f"({self.stats.slow_pings} over {PING_BOUND_MS} ms), server RSS "
            f"{self.stats.rss_start / mib:.1f} -> {self.stats.rss_end / mib:.1f} MiB, "
            f"{self.ledger.total} acknowledged events stored; session total "
            f"{sum(TALLY.values())} cases ({per_protocol})"
        )


@dataclass
class Exchange:
    """One case: what was sent, how the docs split it, and the replies (prefix removed)."""

    sent: Frames
    prefix: Frames
    body: Frames
    replies: list[Frames]


def _final_for(replies: Sequence[Frames], request_id: int) -> bool:
    for reply in replies:
        if (
            len(reply) >= 3
            and reply[0] == b"RWD2"
            and reply[1] in (b"END", b"ERROR")
            and len(reply[2]) >= 8
            and int.from_bytes(reply[2][:8], "big") == request_id
        ):
            return True
    return False


def _show(messages: Sequence[Sequence[bytes]]) -> str:
    shown = []
    for message in messages[:3]:
        shown.append([frame[:40] + (b"..." if len(frame) > 40 else b"") for frame in message[:6]])
    return repr(shown)


@contextmanager
def running_target(
    name: str, request: pytest.FixtureRequest, directory: Path
) -> Iterator[FuzzTarget]:
    """A started :class:`FuzzTarget`; stopped and reported on the terminal afterwards."""
    target = FuzzTarget(directory, name)
    try:
        yield target
    finally:
        target.close()
        # Shown even when output is captured, so CI logs carry the figures.
        capture = request.config.pluginmanager.get_plugin("capturemanager")
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        if capture is not None and reporter is not None:
            with capture.global_and_fixture_disabled():
                reporter.write_line("")
                reporter.write_line(target.summary())


# Checking replies ---------------------------------------------------------------------


def check_seed_reply(target: FuzzTarget, exchange: Exchange) -> None:
    """A seed-dialect body gets exactly one reply of the documented shape."""
    body, replies = exchange.body, exchange.replies
    if len(replies) != 1:
        raise CaseFailure(f"seed request got {len(replies)} replies: {_show(replies)}")
    check_seed_frames(target, body, replies[0])


def check_seed_frames(target: FuzzTarget, body: Sequence[bytes], reply: Frames) -> None:
    if len(body) == 2 and body[0] == b"PUBLISH":
        if reply != [b"PUBLISHED"]:
            raise CaseFailure(f"valid PUBLISH answered {_show([reply])}")
        target.ledger.seed(DEFAULT_STREAM, body[1])
        return
    if len(reply) == 1 and reply[0].startswith(b"ERROR "):
        if not reply[0].isascii():
            raise CaseFailure(f"seed ERROR is not ASCII: {reply[0][:80]!r}")
        return
    if len(body) == 3 and body[0] == b"QUERY":
        _check_page(reply)
        return
    raise CaseFailure(f"malformed seed request answered {_show([reply])}, not ERROR")


def _check_page(reply: Frames) -> None:
    ended = len(reply) % 2 == 1
    if ended and reply[-1] != b"END":
        raise CaseFailure(f"odd QUERY reply without END: {_show([reply])}")
    pairs = reply[:-1] if ended else reply
    if len(pairs) // 2 > 100 or (not ended and len(pairs) != 200):
        raise CaseFailure(f"QUERY page of {len(pairs) // 2} pairs (END: {ended})")
    for event_id in pairs[0::2]:
        if not is_canonical_id(event_id):
            raise CaseFailure(f"QUERY reply id {event_id[:40]!r} is not canonical")


def check_gorewind_reply(target: FuzzTarget, exchange: Exchange) -> None:
    """Gorewind: PUBLISH gets PUBLISHED+id or ERROR; QUERY gets EVENT* END or one ERROR."""
    body, replies = exchange.body, exchange.replies
    name_ok = valid_name(body[1])
    if body[0] == b"PUBLISH":
        if len(replies) != 1:
            raise CaseFailure(f"Gorewind PUBLISH got {len(replies)} replies")
        reply = replies[0]
        if name_ok:
            if len(reply) != 2 or reply[0] != b"PUBLISHED" or not is_canonical_id(reply[1]):
                raise CaseFailure(f"valid Gorewind PUBLISH answered {_show([reply])}")
            target.ledger.seed(body[1].decode("utf-8"), body[2])
        elif not _is_text_error(reply):
            raise CaseFailure(f"invalid stream name answered {_show([reply])}")
        return
    if not name_ok:
        if len(replies) != 1 or not _is_text_error(replies[0]):
            raise CaseFailure(f"QUERY of an invalid stream name answered {_show(replies)}")
        return
    if len(replies) == 1 and _is_text_error(replies[0]):
        return
    if not replies or replies[-1] != [b"END"]:
        raise CaseFailure(f"Gorewind QUERY did not end with END: {_show(replies[-2:])}")
    for message in replies[:-1]:
        if len(message) != 3 or message[0] != b"EVENT" or not is_canonical_id(message[1]):
            raise CaseFailure(f"Gorewind QUERY sent {_show([message])}")


def _is_text_error(reply: Frames) -> bool:
    if len(reply) != 1 or not reply[0].startswith(b"ERROR "):
        return False
    try:
        reply[0].decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True


_REPLY_WORDS = {
    b"APPEND": {b"APPENDED"},
    b"READ_STREAM": {b"EVENTS", b"END"},
    b"READ_ALL": {b"EVENTS", b"END"},
    b"CREDIT": set(),
    b"CANCEL": {b"END"},
    b"STREAM_INFO": {b"STREAM_INFO"},
    b"LIST_STREAMS": {b"STREAMS"},
    b"PING": {b"PONG"},
    b"INFO": {b"INFO"},
}


def check_v2_reply(
    target: FuzzTarget, exchange: Exchange, expect_code: int | None = None
) -> list[v2.Reply]:
    """Every reply decodes, answers this request's id and fits its command.

    ``expect_code``: the error code the docs demand (``None``: whatever the
    command's success or error replies are).
    """
    body = exchange.body
    request_id = peek_id(body)
    decoded: list[v2.Reply] = []
    for frames in exchange.replies:
        try:
            reply = v2.decode_reply(frames)
        except v2.ProtocolError as exc:
            raise CaseFailure(f"undecodable v2 reply ({exc}): {_show([frames])}") from None
        if reply.request_id != request_id:
            raise CaseFailure(f"reply for id {reply.request_id}, the request had {request_id}")
        decoded.append(reply)
    command = body[1] if len(body) >= 2 else b""
    errors = [r for r in decoded if isinstance(r, v2.ErrorReply)]
    if expect_code is not None:
        if len(decoded) != 1 or not errors or errors[0].code != expect_code:
            raise CaseFailure(
                f"expected one ERROR {expect_code!r}, got {[_kind(r) for r in decoded]}"
            )
        return decoded
    for error in errors:
        if error.code not in set(v2.ErrorCode):
            raise CaseFailure(f"unknown error code {error.code}")
    if body[0] != b"RWD2" or command not in _REPLY_WORDS:
        if len(decoded) != 1 or not errors:
            raise CaseFailure(f"bad marker/command answered {[_kind(r) for r in decoded]}")
        return decoded
    allowed = _REPLY_WORDS[command]
    for frames in exchange.replies:
        if frames[1] not in allowed and frames[1] != b"ERROR":
            raise CaseFailure(f"{command!r} answered with {frames[1]!r}")
    if command == b"CREDIT":
        if len(decoded) > 1 or (decoded and not errors):
            raise CaseFailure(f"CREDIT answered {[_kind(r) for r in decoded]}")
        return decoded
    finals = [r for r in decoded if not isinstance(r, v2.EventBatch)]
    if len(finals) != 1 or not isinstance(decoded[-1], type(finals[0])):
        raise CaseFailure(
            f"{command!r} needs exactly one final reply: {[_kind(r) for r in decoded]}"
        )
    final = finals[0]
    if isinstance(final, v2.ReadEnd):
        returned = sum(len(r.events) for r in decoded if isinstance(r, v2.EventBatch))
        if final.count != returned:
            raise CaseFailure(f"END counts {final.count} events, {returned} were sent")
        if command == b"CANCEL" and final.reason != v2.EndReason.CANCELLED:
            raise CaseFailure(f"CANCEL answered END {final.reason!r}")
    if isinstance(final, v2.Appended):
        _record_append(target, body, final)
    return decoded


def _record_append(target: FuzzTarget, body: Sequence[bytes], reply: v2.Appended) -> None:
    count = len(body[4:]) // 4
    if reply.last_position - reply.first_position + 1 != count or len(reply.event_ids) != count:
        raise CaseFailure(f"APPENDED of {count} events says {reply!r}")
    stream = body[3].decode("utf-8")
    keys = []
    for index in range(count):
        id_frame, type_frame, metadata, data = body[4 + 4 * index : 8 + 4 * index]
        if id_frame and uuid.UUID(bytes=id_frame) != reply.event_ids[index]:
            raise CaseFailure("APPENDED does not echo the event ids sent")
        keys.append((stream, type_frame.decode("utf-8"), digest(metadata), digest(data)))
    target.ledger.positioned(reply.first_position, keys)


def _kind(reply: v2.Reply) -> str:
    if isinstance(reply, v2.ErrorReply):
        return f"ERROR {reply.code!r} {reply.message[:60]}"
    return type(reply).__name__


# Strategies ------------------------------------------------------------------------------


def big_frame(seed: bytes, size: int) -> bytes:
    """A large frame made cheaply from a short seed (hypothesis draws only the seed)."""
    return (seed * (size // len(seed) + 1))[:size]


def large_frames(max_size: int) -> st.SearchStrategy[bytes]:
    return st.builds(big_frame, st.binary(min_size=1, max_size=8), st.integers(65_536, max_size))


def frames_of(small: st.SearchStrategy[bytes], max_large: int) -> st.SearchStrategy[bytes]:
    """Mostly ``small`` frames; one in about forty is large (up to ``max_large`` bytes)."""
    return st.integers(0, 39).flatmap(lambda k: large_frames(max_large) if k == 0 else small)


INVALID_NAMES = [
    b"",
    b"\x00",
    b"a\x00b",
    b"\xff",
    b"caf\xc3",  # cut in the middle of a character
    b"\xc0\x80",  # overlong NUL
    b"\xed\xa0\x80",  # a UTF-16 surrogate
    b"\xf4\x90\x80\x80",  # beyond U+10FFFF
    b"x" * (MAX_NAME + 1),
    "é".encode() * (MAX_NAME // 2) + b"x",
]


def names(valid: Sequence[str] = ()) -> st.SearchStrategy[bytes]:
    """Stream-name frames: known and random valid ones, edge cases and invalid ones."""
    return st.one_of(
        st.sampled_from([n.encode() for n in valid] or [b"fz"]),
        st.text(min_size=1, max_size=12).map(lambda t: t.encode("utf-8", "surrogatepass")),
        st.sampled_from(INVALID_NAMES),
        st.sampled_from([b"x" * MAX_NAME, "é".encode() * (MAX_NAME // 2), b"\xe2\x82\xac"]),
        st.binary(max_size=16),
        large_frames(2 * 2**20),
    )


def uuid_frames(known: Sequence[bytes]) -> st.SearchStrategy[bytes]:
    """Event-id frames: known ids, their other spellings, random and broken ones."""

    def spellings(raw: bytes) -> st.SearchStrategy[bytes]:
        text = raw.decode()
        return st.sampled_from(
            [
                raw,
                text.upper().encode(),
                ("{" + text + "}").encode(),
                text.replace("-", "").encode(),
                ("urn:uuid:" + text).encode(),
                raw[:-1],
                raw + b"0",
                raw[:8] + b"\xff" + raw[9:],
            ]
        )

    return st.one_of(
        st.sampled_from(list(known) or [str(uuid.UUID(int=1)).encode()]).flatmap(spellings),
        st.uuids().map(lambda u: str(u).encode()),
        st.binary(max_size=40),
        st.just(b""),
        large_frames(2**20),
    )


def envelope_prefixes() -> st.SearchStrategy[Frames]:
    """Routing prefixes a DEALER may put first: mostly the delimiter, often broken."""
    routing = st.binary(min_size=1, max_size=12).filter(lambda f: not _COMMAND.match(f))
    return st.one_of(
        st.just([b""]),
        st.just([b""]),
        st.just([]),
        st.lists(routing, min_size=1, max_size=3).map(lambda r: [*r, b""]),
        st.just([b"", b""]),
        st.lists(routing, min_size=1, max_size=2),
    )


def numbers_u64() -> st.SearchStrategy[int]:
    """u64 field values around every documented boundary."""
    return st.one_of(
        st.sampled_from([0, 1, 2, 2**31, 2**32 - 1, 2**32, I63 - 1, I63, 2**63, U64 - 1, U64]),
        st.integers(0, U64),
    )


def packed_u64() -> st.SearchStrategy[bytes]:
    return numbers_u64().map(lambda n: struct.pack("!Q", n))


def check_exchange(target: FuzzTarget, exchange: Exchange) -> None:
    """Check a case's replies by the dialect the docs assign to its body."""
    dialect = dialect_of(exchange.body)
    if dialect == "v2":
        check_v2_reply(target, exchange)
    elif dialect == "gorewind":
        check_gorewind_reply(target, exchange)
    else:
        check_seed_reply(target, exchange)


def finish_module_check(target: FuzzTarget, started: float) -> None:
    """After a fuzz test: valid requests work, the store is intact, memory is bounded."""
    target.finish(started)
    target.client.publish(b"after-fuzzing")
    target.ledger.seed(DEFAULT_STREAM, b"after-fuzzing")
    assert target.client.ping() < 1.0
    target.check_store_intact()
    growth = target.stats.rss_end - target.stats.rss_start
    assert growth < RSS_GROWTH_BOUND, (
        f"server RSS grew by {growth / 2**20:.1f} MiB over {target.stats.cases} cases"
    )
