"""The Rewind v2 codec: requests, replies and the feed, against docs/protocol.md."""

from __future__ import annotations

import contextlib
import struct
import uuid
from collections.abc import Callable

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewind.model import ANY_VERSION, NO_STREAM, STREAM_EXISTS, NewEvent, RecordedEvent, StreamInfo
from rewind.protocol import v2
from rewind.protocol.v2 import ErrorCode

I63 = 2**63 - 1
U64 = 2**64 - 1
EVENT_ID = uuid.UUID("0f8fad5b-d9cb-469f-a165-70867728950e")
OTHER_ID = uuid.UUID("7c9e6679-7425-40de-944b-e07fc1f90ae7")

RECORDED = RecordedEvent(
    position=42,
    event_id=EVENT_ID,
    stream="order-7",
    version=3,
    recorded_at_us=1_700_000_000_000_000,
    event_type="Shipped",
    metadata=b'{"by": "ann"}',
    data=b"\x00\xffpayload",
)


def rid(value: int) -> bytes:
    return value.to_bytes(8, "big")


# Requests: round trips ------------------------------------------------------------

REQUESTS: list[v2.Request] = [
    v2.Append(1, "order-7", (NewEvent(b"data"),)),
    v2.Append(
        2,
        "order-7",
        (
            NewEvent(b"a", EVENT_ID, "Created", b"meta"),
            NewEvent(b"", None, "", b""),
            NewEvent(b"c", OTHER_ID, "Shipped"),
        ),
        expected_version=NO_STREAM,
    ),
    v2.Append(3, "s", (NewEvent(b"x"),), expected_version=STREAM_EXISTS),
    v2.Append(4, "s", (NewEvent(b"x"),), expected_version=ANY_VERSION),
    v2.Append(U64, "s", (NewEvent(b"x"),), expected_version=I63),
    v2.ReadStream(5, "order-7"),
    v2.ReadStream(6, "order-7", None, True, 10, 1, 1),
    v2.ReadStream(7, "order-7", I63, False, I63, 2**32 - 1, 2**32 - 1),
    v2.ReadAll(8),
    v2.ReadAll(9, start=None, backwards=True, max_count=0),
    v2.ReadAll(10, start=v2.AtTime(1_700_000_000_000_000), stream_prefix="order-"),
    v2.ReadAll(11, start=17, event_types=frozenset({"Created", "", "Shipped"})),
    v2.Credit(12, 3),
    v2.Cancel(13),
    v2.StreamInfoRequest(14, "naïve-stream-ü"),
    v2.ListStreams(15),
    v2.ListStreams(16, after="order-7", limit=1),
    v2.Ping(17),
    v2.InfoRequest(18),
]


@pytest.mark.parametrize("request_", REQUESTS, ids=lambda r: type(r).__name__)
def test_every_request_round_trips(request_: v2.Request) -> None:
    assert v2.parse_request(v2.encode_request(request_)) == request_


def test_append_becomes_the_store_append() -> None:
    request = v2.Append(1, "s", (NewEvent(b"x", EVENT_ID),), NO_STREAM)
    append = request.as_append_request()
    assert (append.stream, append.events, append.expected_version) == ("s", request.events, -1)


def test_payload_frames_pass_through_untouched() -> None:
    data = bytes(range(256)) * 4
    request = v2.parse_request(v2.encode_append_request(1, "s", [NewEvent(data, metadata=data)]))
    assert isinstance(request, v2.Append)
    assert request.events[0].data == data
    assert request.events[0].metadata == data


# Requests: bytes on the wire -----------------------------------------------------


def test_ping_request_is_byte_exact() -> None:
    assert v2.encode_ping_request(1) == [b"RWD2", b"PING", b"\x00" * 7 + b"\x01"]


def test_append_request_is_byte_exact() -> None:
    frames = v2.encode_append_request(
        2, "acct-1", [NewEvent(b"{}", None, "Opened"), NewEvent(b"x", EVENT_ID, "", b"m")], -1
    )
    assert frames == [
        b"RWD2",
        b"APPEND",
        rid(2) + b"\xff" * 8 + b"\x00\x00\x00\x02",
        b"acct-1",
        b"",
        b"Opened",
        b"",
        b"{}",
        EVENT_ID.bytes,
        b"",
        b"m",
        b"x",
    ]


def test_read_all_request_is_byte_exact() -> None:
    frames = v2.encode_read_all_request(
        9,
        start=v2.AtTime(5),
        backwards=True,
        max_count=None,
        batch_size=100,
        credit=4,
        stream_prefix="order-",
        event_types=["Shipped", "Created"],
    )
    header = rid(9) + b"\x01\x01" + (5).to_bytes(8, "big") + b"\xff" * 8
    header += (100).to_bytes(4, "big") + (4).to_bytes(4, "big") + b"\x00\x02"
    assert frames == [b"RWD2", b"READ_ALL", header, b"order-", b"Created", b"Shipped"]


def test_read_stream_request_is_byte_exact() -> None:
    frames = v2.encode_read_stream_request(3, "s", from_version=None, max_count=7, credit=2)
    header = rid(3) + b"\x00" + b"\xff" * 8 + (7).to_bytes(8, "big")
    header += (500).to_bytes(4, "big") + (2).to_bytes(4, "big")
    assert frames == [b"RWD2", b"READ_STREAM", header, b"s"]


def test_header_sizes_match_the_spec() -> None:
    sizes = {
        "APPEND": 20,
        "READ_STREAM": 33,
        "READ_ALL": 36,
        "CREDIT": 12,
        "CANCEL": 8,
        "STREAM_INFO": 8,
        "LIST_STREAMS": 12,
        "PING": 8,
        "INFO": 8,
    }
    examples = {type(r).__name__: v2.encode_request(r) for r in REQUESTS}
    names = {
        "Append": "APPEND",
        "ReadStream": "READ_STREAM",
        "ReadAll": "READ_ALL",
        "Credit": "CREDIT",
        "Cancel": "CANCEL",
        "StreamInfoRequest": "STREAM_INFO",
        "ListStreams": "LIST_STREAMS",
        "Ping": "PING",
        "InfoRequest": "INFO",
    }
    for class_name, frames in examples.items():
        assert frames[1].decode() == names[class_name]
        assert len(frames[2]) == sizes[names[class_name]]


# Requests: malformed input -------------------------------------------------------


def _with(frames: list[bytes], index: int, value: bytes) -> list[bytes]:
    changed = list(frames)
    changed[index] = value
    return changed


def _header(layout: str, *values: int) -> bytes:
    return struct.pack(layout, *values)


APPEND_OK = v2.encode_append_request(7, "s", [NewEvent(b"x", EVENT_ID, "T", b"m")])
READ_STREAM_OK = v2.encode_read_stream_request(7, "s")
READ_ALL_OK = v2.encode_read_all_request(7, event_types=["T"])
LIST_OK = v2.encode_list_streams_request(7)

BAD: list[tuple[str, list[bytes], ErrorCode, str]] = [
    ("empty", [], ErrorCode.BAD_REQUEST, "empty message"),
    ("foreign", [b"PUBLISH", b"x"], ErrorCode.BAD_REQUEST, "not a Rewind v2 request"),
    ("version", [b"RWD3", b"PING", rid(7)], ErrorCode.UNSUPPORTED_VERSION, "RWD3"),
    ("version1", [b"RWD1"], ErrorCode.UNSUPPORTED_VERSION, "not supported"),
    ("two frames", [b"RWD2", b"PING"], ErrorCode.BAD_REQUEST, "at least 3 frames"),
    ("unknown", [b"RWD2", b"FETCH", rid(7)], ErrorCode.UNKNOWN_COMMAND, "unknown command FETCH"),
    ("lower case", [b"RWD2", b"ping", rid(7)], ErrorCode.UNKNOWN_COMMAND, "ping"),
    ("short", [b"RWD2", b"PING", rid(7)[:7]], ErrorCode.BAD_REQUEST, "8 bytes, got 7"),
    ("long", [b"RWD2", b"PING", rid(7) + b"\0"], ErrorCode.BAD_REQUEST, "8 bytes, got 9"),
    ("id zero", [b"RWD2", b"PING", rid(0)], ErrorCode.BAD_REQUEST, "request id 0"),
    ("ping extra", [b"RWD2", b"PING", rid(7), b""], ErrorCode.BAD_REQUEST, "takes 3 frames"),
    ("info extra", [b"RWD2", b"INFO", rid(7), b"x"], ErrorCode.BAD_REQUEST, "takes 3 frames"),
    ("cancel extra", [b"RWD2", b"CANCEL", rid(7), b""], ErrorCode.BAD_REQUEST, "takes 3"),
    ("cancel short", [b"RWD2", b"CANCEL", b""], ErrorCode.BAD_REQUEST, "8 bytes, got 0"),
    (
        "credit zero",
        [b"RWD2", b"CREDIT", _header("!QI", 7, 0)],
        ErrorCode.BAD_REQUEST,
        "grant must be at least 1",
    ),
    ("credit short", [b"RWD2", b"CREDIT", rid(7)], ErrorCode.BAD_REQUEST, "12 bytes, got 8"),
    (
        "credit extra",
        [b"RWD2", b"CREDIT", _header("!QI", 7, 1), b""],
        ErrorCode.BAD_REQUEST,
        "takes 3",
    ),
    ("info no stream", [b"RWD2", b"STREAM_INFO", rid(7)], ErrorCode.BAD_REQUEST, "takes 4"),
    (
        "info bad utf8",
        [b"RWD2", b"STREAM_INFO", rid(7), b"\xc3("],
        ErrorCode.BAD_REQUEST,
        "invalid stream name: not valid UTF-8",
    ),
    (
        "info empty name",
        [b"RWD2", b"STREAM_INFO", rid(7), b""],
        ErrorCode.BAD_REQUEST,
        "invalid stream name: empty",
    ),
    (
        "info nul",
        [b"RWD2", b"STREAM_INFO", rid(7), b"a\x00b"],
        ErrorCode.BAD_REQUEST,
        "contains NUL",
    ),
    (
        "info long name",
        [b"RWD2", b"STREAM_INFO", rid(7), b"a" * 1025],
        ErrorCode.BAD_REQUEST,
        "longer than 1024 bytes",
    ),
    ("append short", _with(APPEND_OK, 2, rid(7)), ErrorCode.BAD_REQUEST, "20 bytes, got 8"),
    (
        "append expected",
        _with(APPEND_OK, 2, _header("!QqI", 7, -3, 1)),
        ErrorCode.BAD_REQUEST,
        "expected version -3",
    ),
    (
        "append no events",
        [b"RWD2", b"APPEND", _header("!QqI", 7, -2, 0), b"s"],
        ErrorCode.BAD_REQUEST,
        "event count must be at least 1",
    ),
    ("append frames", APPEND_OK[:-1], ErrorCode.BAD_REQUEST, "takes 8 frames"),
    (
        "append count",
        _with(APPEND_OK, 2, _header("!QqI", 7, -2, 2**32 - 1)),
        ErrorCode.BAD_REQUEST,
        "frames",
    ),
    ("append id", _with(APPEND_OK, 4, b"x" * 15), ErrorCode.BAD_REQUEST, "16 bytes or empty"),
    (
        "append duplicate id",
        [
            *APPEND_OK[:2],
            _header("!QqI", 7, -2, 2),
            *APPEND_OK[3:],
            *APPEND_OK[4:],
        ],
        ErrorCode.BAD_REQUEST,
        "appears twice",
    ),
    ("append type", _with(APPEND_OK, 5, b"\xff"), ErrorCode.BAD_REQUEST, "event 0 type"),
    ("append stream", _with(APPEND_OK, 3, b""), ErrorCode.BAD_REQUEST, "stream name: empty"),
    (
        "read stream direction",
        _with(READ_STREAM_OK, 2, _header("!QBQQII", 7, 2, 0, 1, 1, 1)),
        ErrorCode.BAD_REQUEST,
        "direction",
    ),
    (
        "read stream from",
        _with(READ_STREAM_OK, 2, _header("!QBQQII", 7, 0, 2**63, 1, 1, 1)),
        ErrorCode.BAD_REQUEST,
        "from version 9223372036854775808 is out of range",
    ),
    (
        "read stream max",
        _with(READ_STREAM_OK, 2, _header("!QBQQII", 7, 0, 0, U64 - 1, 1, 1)),
        ErrorCode.BAD_REQUEST,
        "max count",
    ),
    (
        "read stream batch",
        _with(READ_STREAM_OK, 2, _header("!QBQQII", 7, 0, 0, 1, 0, 1)),
        ErrorCode.BAD_REQUEST,
        "batch size must be at least 1",
    ),
    (
        "read stream credit",
        _with(READ_STREAM_OK, 2, _header("!QBQQII", 7, 0, 0, 1, 1, 0)),
        ErrorCode.BAD_REQUEST,
        "credit must be at least 1",
    ),
    ("read stream frames", READ_STREAM_OK[:3], ErrorCode.BAD_REQUEST, "takes 4 frames"),
    (
        "read stream long header",
        _with(READ_STREAM_OK, 2, READ_STREAM_OK[2] + b"\0\0"),
        ErrorCode.BAD_REQUEST,
        "33 bytes, or 34 with read flags, got 35",
    ),
    (
        "read stream unknown flag",
        _with(READ_STREAM_OK, 2, READ_STREAM_OK[2] + b"\x02"),
        ErrorCode.BAD_REQUEST,
        "unknown read flags 0x02",
    ),
    (
        "read all unknown flag",
        _with(READ_ALL_OK, 2, READ_ALL_OK[2] + b"\x81"),
        ErrorCode.BAD_REQUEST,
        "unknown read flags 0x81",
    ),
    (
        "read all kind",
        _with(READ_ALL_OK, 2, _header("!QBBQQIIH", 7, 0, 2, 0, 1, 1, 1, 1)),
        ErrorCode.BAD_REQUEST,
        "start kind",
    ),
    (
        "read all time end",
        _with(READ_ALL_OK, 2, _header("!QBBQQIIH", 7, 0, 1, U64, 1, 1, 1, 1)),
        ErrorCode.BAD_REQUEST,
        "start time",
    ),
    (
        "read all position",
        _with(READ_ALL_OK, 2, _header("!QBBQQIIH", 7, 0, 0, 2**63, 1, 1, 1, 1)),
        ErrorCode.BAD_REQUEST,
        "start position",
    ),
    ("read all types", READ_ALL_OK[:-1], ErrorCode.BAD_REQUEST, "takes 5 frames"),
    (
        "read all too many types",
        _with(READ_ALL_OK, 2, _header("!QBBQQIIH", 7, 0, 0, 0, 1, 1, 1, 257)),
        ErrorCode.LIMIT_EXCEEDED,
        "at most 256 event types",
    ),
    (
        "read all type utf8",
        [*READ_ALL_OK[:4], b"\xed\xa0\x80"],
        ErrorCode.BAD_REQUEST,
        "event type filter: not valid UTF-8",
    ),
    ("read all prefix", _with(READ_ALL_OK, 3, b"\x00"), ErrorCode.BAD_REQUEST, "stream prefix"),
    (
        "list limit",
        _with(LIST_OK, 2, _header("!QI", 7, 0)),
        ErrorCode.BAD_REQUEST,
        "limit must be at least 1",
    ),
    ("list after", _with(LIST_OK, 3, b"\x80"), ErrorCode.BAD_REQUEST, "after name"),
    ("list frames", LIST_OK[:3], ErrorCode.BAD_REQUEST, "takes 4 frames"),
]


@pytest.mark.parametrize(
    ("body", "code", "reason_part"), [b[1:] for b in BAD], ids=[b[0] for b in BAD]
)
def test_malformed_requests_get_a_typed_error(
    body: list[bytes], code: ErrorCode, reason_part: str
) -> None:
    request = v2.parse_request(body)
    assert isinstance(request, v2.BadRequest), request
    assert request.code is code
    assert reason_part in request.reason


def test_errors_echo_the_request_id_when_it_can_be_read() -> None:
    cases = [
        ([b"RWD3", b"PING", rid(99)], 99),
        ([b"RWD2", b"NOPE", rid(98)], 98),
        ([b"RWD2", b"PING", rid(97) + b"extra"], 97),
        ([b"RWD2", b"PING", b"\x01"], 0),
        ([b"RWD2", b"PING"], 0),
    ]
    for body, expected in cases:
        request = v2.parse_request(body)
        assert isinstance(request, v2.BadRequest)
        assert request.request_id == expected


def test_limit_errors_carry_the_limit() -> None:
    body = _with(READ_ALL_OK, 2, _header("!QBBQQIIH", 7, 0, 0, 0, 1, 1, 1, 300))
    request = v2.parse_request(body)
    assert isinstance(request, v2.BadRequest)
    assert request.detail == v2.MAX_TYPE_FILTER


def test_long_garbage_is_shortened_in_reasons() -> None:
    request = v2.parse_request([b"RWD2", b"X" * 10_000, rid(1)])
    assert isinstance(request, v2.BadRequest)
    assert len(request.reason) < 100


def test_repeated_type_filters_count_once() -> None:
    body = [*READ_ALL_OK[:2], _header("!QBBQQIIH", 7, 0, 0, 0, 1, 1, 1, 2), b"", b"T", b"T"]
    request = v2.parse_request(body)
    assert isinstance(request, v2.ReadAll)
    assert request.event_types == frozenset({"T"})


def test_a_name_of_exactly_1024_bytes_is_accepted() -> None:
    name = "é" * 512
    assert len(name.encode()) == 1024
    request = v2.parse_request(v2.encode_stream_info_request(1, name))
    assert request == v2.StreamInfoRequest(1, name)


@pytest.mark.parametrize(
    "call",
    [
        lambda: v2.encode_ping_request(0),
        lambda: v2.encode_ping_request(2**64),
        lambda: v2.encode_append_request(1, "s", []),
        lambda: v2.encode_append_request(1, "", [NewEvent(b"")]),
        lambda: v2.encode_append_request(1, "s", [NewEvent(b"")], expected_version=-3),
        lambda: v2.encode_append_request(1, "s", [NewEvent(b"", event_type="a\x00")]),
        lambda: v2.encode_read_stream_request(1, "s", from_version=-1),
        lambda: v2.encode_read_stream_request(1, "s", batch_size=0),
        lambda: v2.encode_read_stream_request(1, "s", credit=2**32),
        lambda: v2.encode_read_all_request(1, start=2**63),
        lambda: v2.encode_read_all_request(1, max_count=-1),
        lambda: v2.encode_read_all_request(1, event_types=[]),
        lambda: v2.encode_read_all_request(1, event_types=[str(i) for i in range(257)]),
        lambda: v2.encode_read_all_request(1, start=v2.AtTime(-1)),
        lambda: v2.encode_credit_request(1, 0),
        lambda: v2.encode_list_streams_request(1, limit=0),
        lambda: v2.encode_stream_info_request(1, "x" * 1025),
    ],
)
def test_client_encoders_refuse_what_the_wire_cannot_carry(call: object) -> None:
    assert callable(call)
    with pytest.raises(ValueError):
        call()


# Replies ---------------------------------------------------------------------------

REPLIES: list[v2.Reply] = [
    v2.Appended(1, 42, 44, 5, 1_700_000_000_000_000, (EVENT_ID, OTHER_ID, uuid.UUID(int=3))),
    v2.EventBatch(2, (RECORDED, RECORDED._replace(position=43, version=4, event_type=""))),
    v2.ReadEnd(3, v2.EndReason.DONE, 1121, 1120),
    v2.ReadEnd(4, v2.EndReason.DONE, -1, 0),
    v2.ReadEnd(5, v2.EndReason.CANCELLED, 7, 6),
    v2.ReadEnd(6, v2.EndReason.MAX_COUNT, 0, 10),
    v2.StreamInfoReply(7, True, 3, 4, 10, 42),
    v2.StreamInfoReply(8, False, -1, 0, 0, 0),
    v2.StreamList(9, ("a", "order-1", "ü"), True),
    v2.StreamList(10, (), False),
    v2.Pong(11),
    v2.ServerInfo(
        12, "0.1.0", "sqlite", ("RWD2", "gorewind", "seed"), 42, 17, True, 1, 2, 3, 4, 5, 6
    ),
    v2.ServerInfo(13, "", "memory", (), 0, -5, False, 0, 0, 0, 0, 0, 0, "disk I/O error"),
    v2.ErrorReply(14, ErrorCode.WRONG_EXPECTED_VERSION, "stream 's': expected 1, actual 3", 3),
    v2.ErrorReply(15, ErrorCode.NOT_FOUND, "no stream 'x'"),
    v2.ErrorReply(0, ErrorCode.BAD_REQUEST, ""),
]


@pytest.mark.parametrize("reply", REPLIES, ids=lambda r: type(r).__name__)
def test_every_reply_round_trips(reply: v2.Reply) -> None:
    assert v2.decode_reply(v2.encode_reply(reply)) == reply


def test_appended_from_recorded_events() -> None:
    events = [RECORDED, RECORDED._replace(position=43, version=4, event_id=OTHER_ID)]
    frames = v2.encode_appended(5, events)
    assert frames[:2] == [b"RWD2", b"APPENDED"]
    assert frames[2] == rid(5) + struct.pack("!QQQq", 42, 43, 4, RECORDED.recorded_at_us)
    assert frames[3] == EVENT_ID.bytes + OTHER_ID.bytes
    reply = v2.decode_reply(frames)
    assert isinstance(reply, v2.Appended)
    assert reply.first_version == 3
    assert reply.event_ids == (EVENT_ID, OTHER_ID)


def test_events_batch_is_byte_exact() -> None:
    frames = v2.encode_events(3, [RECORDED])
    assert frames == [
        b"RWD2",
        b"EVENTS",
        rid(3) + b"\x00\x00\x00\x01",
        b"order-7",
        struct.pack("!QQq", 42, 3, 1_700_000_000_000_000),
        EVENT_ID.bytes,
        b"Shipped",
        b'{"by": "ann"}',
        b"\x00\xffpayload",
    ]
    assert v2.decode_reply(frames) == v2.EventBatch(3, (RECORDED,))


def test_end_error_and_stream_info_are_byte_exact() -> None:
    assert v2.encode_end(3, v2.EndReason.DONE, -1, 2) == [
        b"RWD2",
        b"END",
        rid(3) + b"\x00" + b"\xff" * 8 + (2).to_bytes(8, "big"),
    ]
    assert v2.encode_error(4, ErrorCode.WRONG_EXPECTED_VERSION, "wrong", -1) == [
        b"RWD2",
        b"ERROR",
        rid(4) + b"\x00\x04" + b"\xff" * 8,
        b"wrong",
    ]
    assert v2.encode_stream_info(5, None) == [
        b"RWD2",
        b"STREAM_INFO",
        rid(5) + b"\x00" + b"\xff" * 8 + b"\x00" * 24,
    ]
    info = StreamInfo("s", last_version=2, first_position=4, last_position=9)
    reply = v2.decode_reply(v2.encode_stream_info(5, info))
    assert reply == v2.StreamInfoReply(5, True, 2, 3, 4, 9)
    assert v2.encode_pong(6) == [b"RWD2", b"PONG", rid(6)]


def test_reply_header_sizes_match_the_spec() -> None:
    sizes = {
        b"APPENDED": 40,
        b"EVENTS": 12,
        b"END": 25,
        b"STREAM_INFO": 41,
        b"STREAMS": 13,
        b"PONG": 8,
        b"INFO": 58,
        b"ERROR": 18,
    }
    for reply in REPLIES:
        frames = v2.encode_reply(reply)
        assert len(frames[2]) == sizes[frames[1]]
        assert frames[2][:8] == rid(reply.request_id)


def test_the_append_example_in_the_docs() -> None:
    request = v2.encode_append_request(
        2, "acct-1", [NewEvent(b'{"owner": "ann"}', None, "Opened")], expected_version=NO_STREAM
    )
    assert request[2] == bytes.fromhex("0000000000000002 ffffffffffffffff 00000001")
    assert request[3:] == [b"acct-1", b"", b"Opened", b"", b'{"owner": "ann"}']
    stored = RECORDED._replace(position=42, version=0, stream="acct-1")
    reply = v2.encode_appended(2, [stored])
    assert reply[2] == bytes.fromhex(
        "0000000000000002 000000000000002a 000000000000002a 0000000000000000 00060a24181e4000"
    )


def test_info_and_streams_are_byte_exact() -> None:
    frames = v2.encode_info(
        1,
        server_version="0.1.0",
        storage_kind="sqlite",
        protocols=["RWD2", "gorewind", "seed"],
        head_position=42,
        server_time_us=7,
        durable=True,
        write_failure=None,
        max_batch_size=1000,
        max_credit=64,
        max_append_events=10_000,
        max_message_bytes=0,
        max_event_bytes=4096,
        max_stream_name_bytes=100,
    )
    assert frames[:2] == [b"RWD2", b"INFO"]
    assert frames[2] == struct.pack("!QQqBBIIIQQI", 1, 42, 7, 1, 1, 1000, 64, 10_000, 0, 4096, 100)
    assert frames[3:] == [b"0.1.0", b"sqlite", b"", b"RWD2", b"gorewind", b"seed"]


def test_info_carries_why_writes_stopped() -> None:
    frames = v2.encode_info(
        3,
        server_version="0.1.0",
        storage_kind="sqlite",
        protocols=["RWD2"],
        head_position=1,
        server_time_us=7,
        durable=True,
        write_failure="disk I/O error",
        max_batch_size=1000,
        max_credit=64,
        max_append_events=10,
        max_message_bytes=1 << 20,
        max_event_bytes=1 << 10,
        max_stream_name_bytes=100,
    )
    assert frames[2][25] == 0  # the writable flag, after id, head, time and durable
    info = v2.decode_reply(frames)
    assert isinstance(info, v2.ServerInfo)
    assert info.write_failure == "disk I/O error"
    assert (info.max_event_bytes, info.max_stream_name_bytes, info.protocols) == (
        1 << 10,
        100,
        ("RWD2",),
    )
    assert v2.encode_streams(2, ["a", "b"], more=False) == [
        b"RWD2",
        b"STREAMS",
        rid(2) + b"\x00\x00\x00\x02\x00",
        b"a",
        b"b",
    ]


def test_bad_requests_encode_as_error_replies() -> None:
    bad = v2.parse_request([b"RWD9", b"PING", rid(12)])
    assert isinstance(bad, v2.BadRequest)
    reply = v2.decode_reply(v2.encode_bad_request(bad))
    assert reply == v2.ErrorReply(12, ErrorCode.UNSUPPORTED_VERSION, bad.reason)


def test_error_codes_are_stable() -> None:
    assert {code.name: int(code) for code in ErrorCode} == {
        "BAD_REQUEST": 1,
        "UNKNOWN_COMMAND": 2,
        "UNSUPPORTED_VERSION": 3,
        "WRONG_EXPECTED_VERSION": 4,
        "EVENT_ID_CONFLICT": 5,
        "NOT_FOUND": 6,
        "STORAGE_FAILURE": 7,
        "LIMIT_EXCEEDED": 8,
        "UNAVAILABLE": 9,
        "STORAGE_FULL": 10,
        "FORBIDDEN": 11,
    }


def test_unknown_error_codes_stay_numbers() -> None:
    reply = v2.decode_reply([b"RWD2", b"ERROR", rid(1) + b"\x01\x00" + rid(0), b"new"])
    assert isinstance(reply, v2.ErrorReply)
    assert reply.code == 256
    assert not isinstance(reply.code, ErrorCode)
    assert reply.actual_version is None


def test_wrong_expected_version_exposes_the_actual_version() -> None:
    reply = v2.decode_reply(v2.encode_error(1, ErrorCode.WRONG_EXPECTED_VERSION, "x", -1))
    assert isinstance(reply, v2.ErrorReply)
    assert reply.code is ErrorCode.WRONG_EXPECTED_VERSION
    assert reply.actual_version == -1


def test_empty_batches_and_appends_are_refused_by_the_encoders() -> None:
    with pytest.raises(ValueError):
        v2.encode_events(1, [])
    with pytest.raises(ValueError):
        v2.encode_appended(1, [])


BROKEN_REPLIES: list[list[bytes]] = [
    [],
    [b"RWD2", b"PONG"],
    [b"RWD3", b"PONG", rid(1)],
    [b"RWD2", b"WHAT", rid(1)],
    [b"RWD2", b"PONG", rid(1)[:4]],
    [b"RWD2", b"PONG", rid(1), b""],
    [b"RWD2", b"END", rid(1) + b"\x07" + rid(0) + rid(0)],
    [b"RWD2", b"EVENTS", rid(1) + b"\x00\x00\x00\x00"],
    [b"RWD2", b"EVENTS", rid(1) + b"\x00\x00\x00\x01", b"s"],
    v2.encode_events(1, [RECORDED])[:-1],
    _with(v2.encode_events(1, [RECORDED]), 3, b"\xff"),
    _with(v2.encode_events(1, [RECORDED]), 4, b"short"),
    _with(v2.encode_events(1, [RECORDED]), 5, b"short"),
    [b"RWD2", b"APPENDED", rid(1) + b"\x00" * 32, b""],
    [b"RWD2", b"APPENDED", rid(1) + b"\x00" * 32, b"x" * 17],
    [b"RWD2", b"STREAMS", rid(1) + b"\x00\x00\x00\x02\x00", b"a"],
    [b"RWD2", b"STREAMS", rid(1) + b"\x00\x00\x00\x01\x00", b"\xff"],
    [b"RWD2", b"INFO", rid(1) + b"\x00" * 37, b"v"],
    [b"RWD2", b"ERROR", rid(1) + b"\x00\x01" + rid(0)],
]


@pytest.mark.parametrize("frames", BROKEN_REPLIES)
def test_broken_replies_raise_protocol_errors(frames: list[bytes]) -> None:
    with pytest.raises(v2.ProtocolError):
        v2.decode_reply(frames)


# The live feed ---------------------------------------------------------------------


def test_feed_message_starts_with_the_stream_and_round_trips() -> None:
    frames = v2.encode_feed_message(RECORDED)
    assert frames[0] == b"order-7"
    assert frames[1] == struct.pack("!QQq", 42, 3, 1_700_000_000_000_000)
    assert frames[2:] == [EVENT_ID.bytes, b"Shipped", b'{"by": "ann"}', b"\x00\xffpayload"]
    assert v2.decode_feed_message(frames) == RECORDED


def test_feed_subscriptions_select_by_prefix() -> None:
    frames = v2.encode_feed_message(RECORDED._replace(stream="order-70"))
    assert frames[0].startswith(v2.subscription_topic("order-"))
    assert frames[0].startswith(v2.subscription_topic("order-7"))
    assert not v2.is_stream(frames, "order-7")
    assert v2.is_stream(frames, "order-70")
    assert v2.subscription_topic() == b""
    with pytest.raises(ValueError):
        v2.subscription_topic("\x00control")


def test_feed_control_messages_are_skipped_and_broken_ones_raise() -> None:
    assert v2.is_control_message([b"\x00heartbeat", b""])
    assert v2.decode_feed_message([b"\x00heartbeat"]) is None
    with pytest.raises(v2.ProtocolError):
        v2.decode_feed_message(v2.encode_feed_message(RECORDED)[:5])
    with pytest.raises(v2.ProtocolError):
        v2.decode_feed_message([])


# Properties ------------------------------------------------------------------------

names = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=12)
types = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), max_size=12)
u63 = st.integers(0, I63)
ids = st.integers(1, U64)
u32 = st.integers(1, 2**32 - 1)
new_events = st.builds(
    NewEvent, st.binary(max_size=32), st.none() | st.uuids(), types, st.binary(max_size=16)
)


@st.composite
def appends(draw: st.DrawFn) -> v2.Append:
    events = draw(st.lists(new_events, min_size=1, max_size=5))
    # Ids must be unique within one append.
    seen: set[uuid.UUID] = set()
    unique = []
    for event in events:
        if event.event_id in seen:
            event = event._replace(event_id=None)
        if event.event_id is not None:
            seen.add(event.event_id)
        unique.append(event)
    expected = draw(st.sampled_from([ANY_VERSION, NO_STREAM, STREAM_EXISTS]) | u63)
    return v2.Append(draw(ids), draw(names), tuple(unique), expected)


requests = st.one_of(
    appends(),
    st.builds(
        v2.ReadStream,
        ids,
        names,
        st.none() | u63,
        st.booleans(),
        st.none() | u63,
        u32,
        u32,
        st.booleans(),
    ),
    st.builds(
        v2.ReadAll,
        ids,
        st.none() | u63 | st.builds(v2.AtTime, u63),
        st.booleans(),
        st.none() | u63,
        u32,
        u32,
        st.just("") | names,
        st.none() | st.frozensets(types, min_size=1, max_size=4),
        st.booleans(),
    ),
    st.builds(v2.Credit, ids, u32),
    st.builds(v2.Cancel, ids),
    st.builds(v2.StreamInfoRequest, ids, names),
    st.builds(v2.ListStreams, ids, st.just("") | names, u32),
    st.builds(v2.Ping, ids),
    st.builds(v2.InfoRequest, ids),
)

recorded_events = st.builds(
    RecordedEvent,
    position=st.integers(1, I63),
    event_id=st.uuids(),
    stream=names,
    version=u63,
    recorded_at_us=u63,
    event_type=types,
    metadata=st.binary(max_size=16),
    data=st.binary(max_size=32),
)

replies = st.one_of(
    st.builds(
        v2.Appended,
        ids,
        u63,
        u63,
        u63,
        st.integers(-(2**63), I63),
        st.lists(st.uuids(), min_size=1, max_size=4).map(tuple),
    ),
    st.builds(
        v2.EventBatch,
        ids,
        st.lists(recorded_events, min_size=1, max_size=3).map(tuple),
        st.booleans(),
    ),
    st.builds(v2.ReadEnd, ids, st.sampled_from(v2.EndReason), st.integers(-1, I63), u63),
    st.builds(v2.StreamInfoReply, ids, st.booleans(), st.integers(-1, I63), u63, u63, u63),
    st.builds(v2.StreamList, ids, st.lists(names, max_size=4).map(tuple), st.booleans()),
    st.builds(v2.Pong, ids),
    st.builds(
        v2.ServerInfo,
        ids,
        types,
        types,
        st.lists(types, max_size=3).map(tuple),
        u63,
        st.integers(-(2**63), I63),
        st.booleans(),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, 2**32 - 1),
        st.integers(0, U64),
        st.integers(0, U64),
        st.integers(0, 2**32 - 1),
        st.none() | types.filter(bool),
    ),
    st.builds(v2.ErrorReply, ids, st.sampled_from(ErrorCode), types, st.integers(-(2**63), I63)),
)


@given(requests)
def test_random_valid_requests_round_trip(request_: v2.Request) -> None:
    assert v2.parse_request(v2.encode_request(request_)) == request_


@given(replies)
def test_random_replies_round_trip(reply: v2.Reply) -> None:
    assert v2.decode_reply(v2.encode_reply(reply)) == reply


@given(recorded_events)
def test_random_feed_messages_round_trip(event: RecordedEvent) -> None:
    assert v2.decode_feed_message(v2.encode_feed_message(event)) == event


@given(st.lists(recorded_events, min_size=1, max_size=6))
def test_packed_and_framed_batches_carry_the_same_events(events: list[RecordedEvent]) -> None:
    framed = v2.encode_events(5, events)
    packed = v2.encode_events(5, events, packed=True)
    assert len(packed) == 4
    assert v2.decode_reply(packed) == v2.EventBatch(5, tuple(events), packed=True)
    assert v2.decode_reply(framed) == v2.EventBatch(5, tuple(events))


def test_a_packed_event_is_its_fixed_fields_then_its_four_byte_strings() -> None:
    event = RECORDED._replace(stream="s-1", event_type="T", metadata=b"m", data=b"data")
    [frame] = v2.encode_events(3, [event], packed=True)[3:]
    fixed = struct.pack(
        "!QQq16sHHII", event.position, event.version, event.recorded_at_us,
        event.event_id.bytes, 3, 1, 1, 4,
    )  # fmt: skip
    assert frame == fixed + b"s-1" + b"T" + b"m" + b"data"


@pytest.mark.parametrize(
    ("damage", "reason"),
    [
        (lambda frame: frame[:-1], "cut short"),
        (lambda frame: frame[:30], "cut short"),
        (lambda frame: frame + frame[:10], "cut short"),
        # An empty stream name (its length zeroed, its bytes taken out), then one not UTF-8.
        (lambda frame: frame[:40] + b"\0\0" + frame[42:52] + frame[55:], "name or type"),
        (lambda frame: frame[:52] + b"\xff" + frame[53:], "name or type"),
    ],
)
def test_a_damaged_packed_batch_is_a_protocol_error(
    damage: Callable[[bytes], bytes], reason: str
) -> None:
    frames = v2.encode_events(3, [RECORDED._replace(stream="s-1")], packed=True)
    with pytest.raises(v2.ProtocolError, match=reason):
        v2.decode_reply([*frames[:3], damage(frames[3])])


def test_a_packed_batch_must_hold_the_count_its_header_gives() -> None:
    frames = v2.encode_events(3, [RECORDED, RECORDED], packed=True)
    header = struct.pack("!QI", 3, 3)
    with pytest.raises(v2.ProtocolError, match="says 3 events but holds 2"):
        v2.decode_reply([*frames[:2], header, frames[3]])


frames = st.lists(st.binary(max_size=40), max_size=8)
commands = st.sampled_from(
    [
        b"APPEND",
        b"READ_STREAM",
        b"READ_ALL",
        b"CREDIT",
        b"CANCEL",
        b"STREAM_INFO",
        b"LIST_STREAMS",
        b"PING",
        b"INFO",
    ]
)


@given(frames)
def test_random_frames_never_raise(body: list[bytes]) -> None:
    assert isinstance(v2.parse_request(body), v2.BadRequest | v2.Request)


@given(commands, st.binary(max_size=40), frames)
def test_random_frames_after_a_valid_command_never_raise(
    command: bytes, header: bytes, rest: list[bytes]
) -> None:
    request = v2.parse_request([b"RWD2", command, header, *rest])
    assert isinstance(request, v2.BadRequest | v2.Request)
    if isinstance(request, v2.BadRequest):
        assert request.reason


@given(requests, st.data())
def test_mutated_valid_requests_never_raise(request_: v2.Request, data: st.DataObject) -> None:
    body = v2.encode_request(request_)
    index = data.draw(st.integers(0, len(body) - 1))
    body[index] = data.draw(st.binary(max_size=40))
    if data.draw(st.booleans()):
        del body[data.draw(st.integers(0, len(body) - 1)) :]
    assert isinstance(v2.parse_request(body), v2.BadRequest | v2.Request)


@given(st.lists(st.binary(max_size=40), max_size=10))
def test_random_reply_frames_only_raise_protocol_errors(body: list[bytes]) -> None:
    for candidate in (body, [b"RWD2", *body]):
        with contextlib.suppress(v2.ProtocolError):
            v2.decode_reply(candidate)
