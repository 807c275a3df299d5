"""Hostile input in Rewind v2: valid commands with mutated frames and fields, against a real server.

Three kinds of cases share one server (SQLite):

* valid requests of every command, then mutated: marker, command word,
  header bytes (cut, extended, overwritten), frames dropped, added or
  swapped, names made invalid, behind random envelopes;
* one header field at a time set to a boundary value, where the docs say
  exactly which error code (or success) must follow;
* pipelines of requests on one connection, each answered under its own id.

After each case the server must answer a PING on another connection within
100 ms; every request but CREDIT must get its final reply; at the end the
store holds exactly the acknowledged appends and memory is bounded.
"""

from __future__ import annotations

import struct
import time
import uuid
from collections.abc import Callable, Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from rewind.model import NewEvent
from rewind.protocol import v2
from rewind.protocol.v2 import ErrorCode
from tests import fuzzkit
from tests.fuzzkit import I63, U64, FuzzTarget

pytestmark = pytest.mark.timeout(300)

STREAMS = ["fz-a", "fz-b", "fz-\u00e9", "default"]
ORACLE_STREAM = "fz-oracle"
ID_POOL = [uuid.UUID(int=n) for n in (1, 2, 0xFFFF, 2**128 - 1)]
"""Event ids reused across cases, so retries and conflicts happen."""


@pytest.fixture(scope="module")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    with fuzzkit.running_target("v2", request, tmp_path_factory.mktemp("fuzz-v2")) as target:
        for stream in [*STREAMS, ORACLE_STREAM]:
            target.client.append(stream, [f"{stream}-{i}".encode() for i in range(3)])
        target.begin()
        yield target


# Valid requests ----------------------------------------------------------------------

request_ids = st.integers(1, U64)
stream_names = st.one_of(
    st.sampled_from(STREAMS), st.text(min_size=1, max_size=10).filter(lambda s: "\x00" not in s)
)
type_names = st.one_of(st.sampled_from(["", "Opened", "Closed"]), st.text(max_size=8)).filter(
    lambda s: "\x00" not in s
)
small = st.binary(max_size=48)


def new_events() -> st.SearchStrategy[NewEvent]:
    return st.builds(
        NewEvent,
        data=fuzzkit.frames_of(small, max_large=2**20),
        event_id=st.one_of(st.none(), st.uuids(), st.none(), st.sampled_from(ID_POOL)),
        event_type=type_names,
        metadata=small,
    )


def appends() -> st.SearchStrategy[list[bytes]]:
    return st.builds(
        v2.encode_append_request,
        request_ids,
        stream_names,
        st.lists(new_events(), min_size=1, max_size=4, unique_by=lambda e: e.event_id or id(e)),
        st.sampled_from([-2, -2, -2, -2, -1, -4, 0, 1, 2]),
    )


counts = st.one_of(st.none(), st.sampled_from([0, 1, 5, 100]))
batches = st.integers(1, 20)
credits = st.integers(1, 4)


def reads() -> st.SearchStrategy[list[bytes]]:
    read_stream = st.builds(
        v2.encode_read_stream_request,
        request_ids,
        st.sampled_from([*STREAMS, "fz-none"]),
        from_version=st.sampled_from([None, 0, 1, 2, 100, I63]),
        backwards=st.booleans(),
        max_count=counts,
        batch_size=batches,
        credit=credits,
    )
    starts = st.one_of(
        st.sampled_from([None, 0, 1, 5, I63]),
        st.sampled_from([0, int(time.time() * 1e6), I63]).map(v2.AtTime),
    )
    read_all = st.builds(
        v2.encode_read_all_request,
        request_ids,
        start=starts,
        backwards=st.booleans(),
        max_count=counts,
        batch_size=batches,
        credit=credits,
        stream_prefix=st.sampled_from(["", "fz-", "fz-a", "nothing-"]),
        event_types=st.one_of(st.none(), st.lists(type_names, min_size=1, max_size=3)),
    )
    return st.one_of(read_stream, read_all)


def others() -> st.SearchStrategy[list[bytes]]:
    return st.one_of(
        st.builds(v2.encode_credit_request, request_ids, st.integers(1, 2**32 - 1)),
        st.builds(v2.encode_cancel_request, request_ids),
        st.builds(v2.encode_stream_info_request, request_ids, stream_names),
        st.builds(
            v2.encode_list_streams_request,
            request_ids,
            after=st.sampled_from(["", "fz-", "zzz"]),
            limit=st.integers(1, 3000),
        ),
        st.builds(v2.encode_ping_request, request_ids),
        st.builds(v2.encode_info_request, request_ids),
    )


def valid_requests() -> st.SearchStrategy[list[bytes]]:
    return st.one_of(appends(), reads(), others())


# Mutations ---------------------------------------------------------------------------

Mutation = Callable[[list[bytes], st.DataObject], list[bytes]]


def _replace(index: int, value: bytes, frames: list[bytes]) -> list[bytes]:
    if index >= len(frames):
        return frames
    return [*frames[:index], value, *frames[index + 1 :]]


def _marker(frames: list[bytes], data: st.DataObject) -> list[bytes]:
    marker = data.draw(st.sampled_from([b"RWD3", b"RWD02", b"RWD99999999999", b"RWD", b"rwd2"]))
    return _replace(0, marker, frames)


def _command(frames: list[bytes], data: st.DataObject) -> list[bytes]:
    word = data.draw(
        st.one_of(
            st.sampled_from([b"append", b"PING ", b"", b"EVENTS", b"PONG", b"READ", b"ERROR"]),
            st.binary(max_size=12),
        )
    )
    return _replace(1, word, frames)


def _header(frames: list[bytes], data: st.DataObject) -> list[bytes]:
    header = frames[2]
    how = data.draw(st.sampled_from(["cut", "extend", "random", "flip", "zero id", "huge"]))
    if how == "cut":
        header = header[: data.draw(st.integers(0, max(0, len(header) - 1)))]
    elif how == "extend":
        header += data.draw(st.binary(min_size=1, max_size=9))
    elif how == "random":
        header = data.draw(st.binary(min_size=len(header), max_size=len(header)))
    elif how == "flip" and header:
        index = data.draw(st.integers(0, len(header) - 1))
        header = header[:index] + bytes([header[index] ^ 0xFF]) + header[index + 1 :]
    elif how == "zero id":
        header = bytes(8) + header[8:]
    else:
        header = header + fuzzkit.big_frame(b"\x7f", 3 * 2**20)
    return _replace(2, header, frames)


def _frames(frames: list[bytes], data: st.DataObject) -> list[bytes]:
    how = data.draw(st.sampled_from(["drop", "add", "duplicate", "swap", "empty", "many"]))
    index = data.draw(st.integers(0, len(frames) - 1))
    if how == "drop":
        return frames[:index] + frames[index + 1 :]
    if how == "add":
        return [*frames[:index], data.draw(small), *frames[index:]]
    if how == "duplicate":
        return [*frames[: index + 1], frames[index], *frames[index + 1 :]]
    if how == "swap":
        other = data.draw(st.integers(0, len(frames) - 1))
        swapped = list(frames)
        swapped[index], swapped[other] = swapped[other], swapped[index]
        return swapped
    if how == "empty":
        return _replace(index, b"", frames)
    return [*frames, *([b""] * data.draw(st.integers(50, 2000)))]


def _name(frames: list[bytes], data: st.DataObject) -> list[bytes]:
    # Frame 3 is the stream, prefix or after-name; APPEND's frames 5 + 4k are types.
    index = data.draw(st.sampled_from([3, 5, 9, 4]))
    return _replace(index, data.draw(fuzzkit.names(STREAMS)), frames)


MUTATIONS: list[Mutation | None] = [None, None, _marker, _command, _header, _frames, _name]


# The fuzz tests ----------------------------------------------------------------------


def test_mutated_v2_requests(target: FuzzTarget) -> None:
    """Valid requests of every command, mutated or not, behind random envelopes."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(1800)
    @given(
        prefix=fuzzkit.envelope_prefixes(),
        frames=valid_requests(),
        mutation=st.sampled_from(MUTATIONS),
        data=st.data(),
    )
    def case(
        prefix: list[bytes], frames: list[bytes], mutation: Mutation | None, data: st.DataObject
    ) -> None:
        body = frames if mutation is None else mutation(frames, data)
        assume(prefix or body)
        exchange = target.exchange([*prefix, *body])
        target.count_case("v2")
        if fuzzkit.dialect_of(exchange.body) != "v2":
            fuzzkit.check_exchange(target, exchange)  # a broken marker makes it a seed request
            return
        replies = fuzzkit.check_v2_reply(target, exchange)
        if mutation is None and exchange.body == frames:
            # A valid request, delimited as sent, is never a BAD_REQUEST.
            bad = [r for r in replies if isinstance(r, v2.ErrorReply) and r.code == BAD]
            assert not bad, bad

    case()
    fuzzkit.finish_module_check(target, started)


# Header fields against the spec ------------------------------------------------------

U8 = [0, 1, 2, 127, 255]
U16 = [0, 1, 2, 255, 256, 257, 300]
U32 = [0, 1, 2, 1024, 1025, 10_000, 10_001, 2**31, 2**32 - 1]
U64_EDGES = [0, 1, 2, 2**32, I63 - 1, I63, 2**63, U64 - 1, U64]
I64 = [-(2**63), -5, -4, -3, -2, -1, 0, 1, 7, I63]

BAD, LIMIT = ErrorCode.BAD_REQUEST, ErrorCode.LIMIT_EXCEEDED


def _u63_or_sentinel(value: int) -> ErrorCode | None:
    """Docs: u64 positions/counts must fit 63 bits, except the all-ones sentinel."""
    return BAD if I63 < value < U64 else None


def _positive(value: int, limit: int | None = None) -> ErrorCode | None:
    if value < 1:
        return BAD
    if limit is not None and value > limit:
        return LIMIT
    return None


def _id(value: int) -> ErrorCode | None:
    return BAD if value == 0 else None


READ_STREAM_FIELDS: dict[str, tuple[list[int], Callable[[int], ErrorCode | None]]] = {
    "id": (U64_EDGES, _id),
    "direction": (U8, lambda v: None if v in (0, 1) else BAD),
    "from": (U64_EDGES, _u63_or_sentinel),
    "max": (U64_EDGES, _u63_or_sentinel),
    "batch": (U32, lambda v: _positive(v, fuzzkit.MAX_BATCH)),
    "credit": (U32, lambda v: _positive(v, fuzzkit.MAX_CREDIT)),
}


@st.composite
def read_stream_cases(draw: st.DrawFn) -> tuple[list[bytes], ErrorCode | None, int]:
    fields = {"id": 7, "direction": 0, "from": 0, "max": U64, "batch": 2, "credit": 2}
    name = draw(st.sampled_from(sorted(READ_STREAM_FIELDS)))
    values, rule = READ_STREAM_FIELDS[name]
    fields[name] = draw(st.sampled_from(values))
    header, expected = _with_read_flags(
        draw, struct.pack("!QBQQII", *fields.values()), rule(fields[name])
    )
    frames = [b"RWD2", b"READ_STREAM", header, ORACLE_STREAM.encode()]
    return frames, expected, fields["id"]


READ_FLAGS = [None, 0, 1, 2, 0x81, 0xFF]
"""The optional read flags byte: absent, none, packed, and unknown bits."""


def _with_read_flags(
    draw: st.DrawFn, header: bytes, expected: ErrorCode | None
) -> tuple[bytes, ErrorCode | None]:
    """A read header with or without its flags byte; unknown flags are refused first."""
    flags = draw(st.sampled_from(READ_FLAGS))
    if flags is None:
        return header, expected
    return header + bytes([flags]), BAD if flags & ~1 else expected


@st.composite
def read_all_cases(draw: st.DrawFn) -> tuple[list[bytes], ErrorCode | None, int]:
    fields = {
        "id": 8,
        "direction": 0,
        "kind": draw(st.sampled_from([0, 1])),
        "start": 0,
        "max": U64,
        "batch": 2,
        "credit": 2,
        "types": 0,
    }
    name = draw(
        st.sampled_from(["id", "direction", "kind", "start", "max", "batch", "credit", "types"])
    )
    value = draw(
        st.sampled_from(
            {
                "id": U64_EDGES,
                "direction": U8,
                "kind": U8,
                "start": U64_EDGES,
                "max": U64_EDGES,
            }.get(name, U16 if name == "types" else U32)
        )
    )
    fields[name] = value
    expected: ErrorCode | None
    if name == "id":
        expected = _id(value)
    elif name in ("direction", "kind"):
        expected = None if value in (0, 1) else BAD
    elif name == "start":
        # A time must fit 63 bits (END is no time); a position may also be END.
        expected = (
            (BAD if value > I63 else None) if fields["kind"] == 1 else _u63_or_sentinel(value)
        )
    elif name == "max":
        expected = _u63_or_sentinel(value)
    elif name == "batch":
        expected = _positive(value, fuzzkit.MAX_BATCH)
    elif name == "credit":
        expected = _positive(value, fuzzkit.MAX_CREDIT)
    else:
        expected = LIMIT if value > fuzzkit.MAX_TYPES else None
    header, expected = _with_read_flags(draw, struct.pack("!QBBQQIIH", *fields.values()), expected)
    types = [f"T{i}".encode() for i in range(fields["types"])]
    return [b"RWD2", b"READ_ALL", header, ORACLE_STREAM.encode(), *types], expected, fields["id"]


@st.composite
def append_cases(draw: st.DrawFn) -> tuple[list[bytes], ErrorCode | None, int]:
    fields = {"id": 9, "expected": -2, "count": 1}
    name = draw(st.sampled_from(["id", "expected", "count"]))
    value = draw(st.sampled_from({"id": U64_EDGES, "expected": I64, "count": U32}[name]))
    fields[name] = value
    expected: ErrorCode | None = None
    if name == "id":
        expected = _id(value)
    elif name == "expected":
        if value in (-4,) or value >= 0:
            expected = ErrorCode.WRONG_EXPECTED_VERSION  # the stream is new
        elif value not in (-1, -2):
            expected = BAD
    elif value != 1:
        expected = BAD  # the header's count must match the frames
    header = struct.pack("!QqI", *fields.values())
    stream = f"fz-oracle-{uuid.uuid4().hex}".encode()
    return [b"RWD2", b"APPEND", header, stream, b"", b"T", b"", b"data"], expected, fields["id"]


@st.composite
def small_command_cases(draw: st.DrawFn) -> tuple[list[bytes], ErrorCode | None, int]:
    command = draw(
        st.sampled_from([b"CREDIT", b"CANCEL", b"STREAM_INFO", b"LIST_STREAMS", b"PING", b"INFO"])
    )
    request_id = draw(st.sampled_from(U64_EDGES))
    second = draw(st.sampled_from(U32))
    expected = _id(request_id)
    if command in (b"CREDIT", b"LIST_STREAMS"):
        header = struct.pack("!QI", request_id, second)
        expected = expected or _positive(second)
    else:
        header = struct.pack("!Q", request_id)
    frames = [b"RWD2", command, header]
    if command == b"STREAM_INFO":
        frames.append(ORACLE_STREAM.encode())
    if command == b"LIST_STREAMS":
        frames.append(b"")
    return frames, expected, request_id


@st.composite
def wrong_header_lengths(draw: st.DrawFn) -> tuple[list[bytes], ErrorCode | None, int]:
    frames, _, _ = draw(
        st.one_of(read_stream_cases(), read_all_cases(), append_cases(), small_command_cases())
    )
    header = frames[2]
    # A read's header is valid with or without its one flags byte.
    base = {b"READ_STREAM": 33, b"READ_ALL": 36}.get(frames[1], len(header))
    valid = {base, base + 1} if frames[1] in (b"READ_STREAM", b"READ_ALL") else {base}
    cut = draw(st.integers(0, len(header) + 8).filter(lambda n: n not in valid))
    header = (header + bytes(8))[:cut]
    frames = [*frames[:2], header, *frames[3:]]
    return frames, BAD, fuzzkit.peek_id(frames)


def test_header_fields_against_the_spec(target: FuzzTarget) -> None:
    """One field at a time at a boundary: the docs name the outcome, the server must match."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(900)
    @given(
        spec=st.one_of(
            read_stream_cases(),
            read_all_cases(),
            append_cases(),
            small_command_cases(),
            wrong_header_lengths(),
        )
    )
    def case(spec: tuple[list[bytes], ErrorCode | None, int]) -> None:
        frames, expected, request_id = spec
        exchange = target.exchange([b"", *frames])
        target.count_case("v2")
        replies = fuzzkit.check_v2_reply(target, exchange, expected)
        assert all(reply.request_id == request_id for reply in replies)
        if expected is None:
            assert not any(isinstance(r, v2.ErrorReply) for r in replies), replies
            if frames[1] == b"CREDIT":
                assert replies == []
        elif expected == LIMIT:
            error = replies[0]
            assert isinstance(error, v2.ErrorReply)
            limits = {fuzzkit.MAX_BATCH, fuzzkit.MAX_CREDIT, fuzzkit.MAX_TYPES}
            assert error.detail in limits, error

    case()
    fuzzkit.finish_module_check(target, started)


def test_pipelined_v2_requests_each_get_their_reply(target: FuzzTarget) -> None:
    """Several requests in flight on one connection, some broken: one final reply per id."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(200)
    @given(
        batch=st.lists(
            st.tuples(st.one_of(appends(), others()), st.sampled_from(MUTATIONS), st.data()),
            min_size=2,
            max_size=6,
        )
    )
    def case(batch: list[tuple[list[bytes], Mutation | None, st.DataObject]]) -> None:
        bodies: list[list[bytes]] = []
        for frames, mutation, data in batch:
            body = frames if mutation is None else mutation(frames, data)
            if len(body) < 3 or body[0] != b"RWD2" or len(body[2]) < 8 or body[1] == b"CREDIT":
                continue
            # Distinct ids, so every reply can be matched to its request.
            header = (len(bodies) + 1).to_bytes(8, "big") + body[2][8:]
            bodies.append([*body[:2], header, *body[3:]])
        assume(bodies)
        replies = target.pipeline_v2(bodies)
        target.count_case("v2")
        for index, body in enumerate(bodies):
            mine = [r for r in replies if r[2][:8] == (index + 1).to_bytes(8, "big")]
            exchange = fuzzkit.Exchange([b"", *body], [b""], body, mine)
            fuzzkit.check_v2_reply(target, exchange)

    case()
    fuzzkit.finish_module_check(target, started)
