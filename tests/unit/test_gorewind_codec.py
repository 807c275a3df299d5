"""The Gorewind dialect codec: multi-stream PUBLISH and QUERY, byte for byte."""

from __future__ import annotations

import contextlib
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewind.protocol import gorewind

EVENT_ID = uuid.UUID("6f1c1f9e-1d2b-11ef-9c1a-0242ac120002")
OTHER_ID = uuid.UUID("7a2c1f9e-1d2b-11ef-9c1a-0242ac120002")
TEXT_ID = str(EVENT_ID).encode()


def test_publish_is_parsed_with_stream_and_data() -> None:
    request = gorewind.parse_request((b"PUBLISH", b"order-7", b"\x00\xffdata"))
    assert request == gorewind.Publish("order-7", b"\x00\xffdata")


def test_publish_accepts_empty_data_and_utf8_streams() -> None:
    request = gorewind.parse_request((b"PUBLISH", "kö".encode(), b""))
    assert request == gorewind.Publish("kö", b"")


def test_query_bounds_are_ids_or_open() -> None:
    assert gorewind.parse_request((b"QUERY", b"s", b"", b"")) == gorewind.Query("s", None, None)
    assert gorewind.parse_request((b"QUERY", b"s", TEXT_ID, b"")) == gorewind.Query(
        "s", EVENT_ID, None
    )
    assert gorewind.parse_request((b"QUERY", b"s", b"", TEXT_ID)) == gorewind.Query(
        "s", None, EVENT_ID
    )


@pytest.mark.parametrize(
    "request_",
    [
        gorewind.Publish("s", b"x"),
        gorewind.Query("order-7", EVENT_ID, OTHER_ID),
        gorewind.Query("order-7", None, None),
    ],
)
def test_client_requests_round_trip(request_: gorewind.Publish | gorewind.Query) -> None:
    if isinstance(request_, gorewind.Publish):
        frames = gorewind.encode_publish_request(request_.stream, request_.data)
    else:
        frames = gorewind.encode_query_request(request_.stream, request_.from_id, request_.to_id)
    assert gorewind.is_request(frames)
    assert gorewind.parse_request(frames) == request_


def test_request_frames_are_byte_exact() -> None:
    assert gorewind.encode_publish_request("s", b"d") == [b"PUBLISH", b"s", b"d"]
    assert gorewind.encode_query_request("s", EVENT_ID) == [b"QUERY", b"s", TEXT_ID, b""]


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        ((), "empty message"),
        ((b"",), "empty message"),
        ((b"PUBLISH", b"s"), "PUBLISH takes 2 frames (stream, event), got 1"),
        ((b"PUBLISH", b"s", b"a", b"b"), "PUBLISH takes 2 frames"),
        ((b"QUERY", b"s", b""), "QUERY takes 3 frames (stream, from id, to id), got 2"),
        ((b"QUERY", b"s", b"", b"", b""), "QUERY takes 3 frames"),
        ((b"FETCH", b"s", b""), "unknown command FETCH"),
        ((b"PUBLISH", b"", b"x"), "invalid stream name: empty"),
        ((b"PUBLISH", b"\xff", b"x"), "invalid stream name: not valid UTF-8"),
        ((b"PUBLISH", b"a\x00", b"x"), "invalid stream name: contains NUL"),
        ((b"PUBLISH", b"a" * 1025, b"x"), "invalid stream name: longer than 1024 bytes"),
        ((b"QUERY", b"s", b"nope", b""), "unknown from event id nope in stream s"),
        ((b"QUERY", b"s", b"", b"\xfe"), "unknown to event id \\xfe in stream s"),
        ((b"QUERY", b"s", b"bad", b"worse"), "unknown from event id bad"),
    ],
)
def test_bad_requests_name_the_problem(body: tuple[bytes, ...], reason_part: str) -> None:
    request = gorewind.parse_request(body)
    assert isinstance(request, gorewind.BadRequest)
    assert reason_part in request.reason


def test_replies_are_byte_exact() -> None:
    assert gorewind.encode_published(EVENT_ID) == [b"PUBLISHED", TEXT_ID]
    assert gorewind.encode_event(EVENT_ID, b"\x00data") == [b"EVENT", TEXT_ID, b"\x00data"]
    assert gorewind.encode_end() == [b"END"]
    assert gorewind.encode_error("unknown stream ü") == ["ERROR unknown stream ü".encode()]


def test_error_reasons_for_the_server() -> None:
    assert (
        gorewind.unknown_id_reason("to", EVENT_ID, "s")
        == f"unknown to event id {EVENT_ID} in stream s"
    )
    assert gorewind.from_after_to_reason(EVENT_ID, OTHER_ID) == (
        f"from event id {EVENT_ID} comes after to event id {OTHER_ID}"
    )


@pytest.mark.parametrize(
    "reply",
    [
        gorewind.Published(EVENT_ID),
        gorewind.Event(EVENT_ID, b"data"),
        gorewind.Event(OTHER_ID, b""),
        gorewind.End(),
        gorewind.ErrorReply("storage failure: disk full"),
        gorewind.ErrorReply(""),
    ],
)
def test_replies_round_trip(reply: gorewind.GorewindReply) -> None:
    assert gorewind.decode_reply(gorewind.encode_reply(reply)) == reply


@pytest.mark.parametrize(
    "frames",
    [
        [],
        [b"PUBLISHED"],
        [b"PUBLISHED", b"not-an-id"],
        [b"EVENT", TEXT_ID],
        [b"EVENT", b"x", b"data"],
        [b"END", b""],
        [b"ERRORS"],
        [b"HELLO"],
    ],
)
def test_broken_replies_raise(frames: list[bytes]) -> None:
    with pytest.raises(ValueError):
        gorewind.decode_reply(frames)


def test_is_request_needs_the_gorewind_frame_counts() -> None:
    assert gorewind.is_request([b"PUBLISH", b"s", b"d"])
    assert gorewind.is_request([b"QUERY", b"s", b"", b""])
    assert not gorewind.is_request([b"PUBLISH", b"d"])
    assert not gorewind.is_request([b"QUERY", b"", b""])
    assert not gorewind.is_request([])
    assert not gorewind.is_request([b"EVENT", b"s", b"d"])


streams = st.text(st.characters(codec="utf-8", exclude_characters="\x00"), min_size=1, max_size=20)


@given(st.lists(st.binary(max_size=64), max_size=6))
def test_random_frames_never_raise(body: list[bytes]) -> None:
    request = gorewind.parse_request(body)
    assert isinstance(request, gorewind.Publish | gorewind.Query | gorewind.BadRequest)


@given(st.sampled_from([b"PUBLISH", b"QUERY"]), st.lists(st.binary(max_size=64), max_size=4))
def test_random_frames_after_a_command_never_raise(command: bytes, rest: list[bytes]) -> None:
    request = gorewind.parse_request([command, *rest])
    assert isinstance(request, gorewind.Publish | gorewind.Query | gorewind.BadRequest)


@given(streams, st.binary(max_size=64))
def test_random_publishes_round_trip(stream: str, data: bytes) -> None:
    frames = gorewind.encode_publish_request(stream, data)
    assert gorewind.parse_request(frames) == gorewind.Publish(stream, data)


@given(streams, st.none() | st.uuids(), st.none() | st.uuids())
def test_random_queries_round_trip(
    stream: str, from_id: uuid.UUID | None, to_id: uuid.UUID | None
) -> None:
    frames = gorewind.encode_query_request(stream, from_id, to_id)
    assert gorewind.parse_request(frames) == gorewind.Query(stream, from_id, to_id)


@given(st.lists(st.binary(max_size=40), max_size=5))
def test_random_reply_frames_only_raise_value_errors(frames: list[bytes]) -> None:
    with contextlib.suppress(ValueError):
        gorewind.decode_reply(frames)
