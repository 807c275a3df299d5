"""The seed protocol codec: frames in, typed requests out, replies back to frames."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewind.model import AppendRequest, NewEvent
from rewind.protocol import dispatch, seed
from rewind.protocol.envelope import split_envelope
from rewind.server import seed_handler
from rewind.server.actions import Commit

EVENT_ID = uuid.UUID("6f1c1f9e-1d2b-11ef-9c1a-0242ac120002")


def test_publish_is_parsed_with_its_data_untouched() -> None:
    assert seed.parse_request((b"PUBLISH", b"\x00\xffdata")) == seed.Publish(b"\x00\xffdata")


def test_publish_accepts_empty_data() -> None:
    assert seed.parse_request((b"PUBLISH", b"")) == seed.Publish(b"")


def test_query_with_empty_bounds_is_unbounded() -> None:
    assert seed.parse_request((b"QUERY", b"", b"")) == seed.Query(None, None)


def test_query_parses_canonical_ids() -> None:
    text = str(EVENT_ID).encode()
    assert seed.parse_request((b"QUERY", text, b"")) == seed.Query(EVENT_ID, None)
    assert seed.parse_request((b"QUERY", b"", text)) == seed.Query(None, EVENT_ID)


@pytest.mark.parametrize(
    ("body", "reason_part"),
    [
        ((), "empty message"),
        ((b"",), "empty message"),
        ((b"PUBLISH",), "PUBLISH takes 1 frame"),
        ((b"PUBLISH", b"a", b"b"), "PUBLISH takes 1 frame"),
        ((b"QUERY", b""), "QUERY takes 2 frames"),
        ((b"QUERY", b"", b"", b""), "QUERY takes 2 frames"),
        ((b"QUERY", b"not-an-id", b""), "unknown from event id not-an-id"),
        ((b"QUERY", b"", b"\xff\xfe"), "unknown to event id"),
        ((b"FETCH",), "unknown command FETCH"),
        ((b"publish", b"x"), "unknown command publish"),
    ],
)
def test_bad_requests_name_the_problem(body: tuple[bytes, ...], reason_part: str) -> None:
    request = seed.parse_request(body)
    assert isinstance(request, seed.BadRequest)
    assert reason_part in request.reason


def test_long_garbage_is_shortened_in_the_reason() -> None:
    request = seed.parse_request((b"X" * 10_000,))
    assert isinstance(request, seed.BadRequest)
    assert len(request.reason) < 100


@given(st.lists(st.binary(max_size=64), max_size=6))
def test_any_frames_parse_to_a_request_without_raising(body: list[bytes]) -> None:
    assert isinstance(seed.parse_request(tuple(body)), seed.Publish | seed.Query | seed.BadRequest)


def test_replies_are_byte_exact() -> None:
    assert seed.encode_published() == [b"PUBLISHED"]
    assert seed.encode_error("unknown command X") == [b"ERROR unknown command X"]
    assert seed.encode_query_reply([], page_full=False) == [b"END"]
    frames = seed.encode_query_reply([(EVENT_ID, b"data")], page_full=False)
    assert frames == [str(EVENT_ID).encode(), b"data", b"END"]
    assert seed.encode_query_reply([(EVENT_ID, b"data")], page_full=True) == frames[:2]


def test_event_ids_are_36_ascii_characters() -> None:
    assert len(seed.format_event_id(EVENT_ID)) == 36
    assert seed.parse_event_id(seed.format_event_id(EVENT_ID)) == EVENT_ID


def test_stream_message_previous_id_is_empty_only_when_absent() -> None:
    assert seed.encode_stream_message(EVENT_ID, None, b"d") == [str(EVENT_ID).encode(), b"", b"d"]
    other = uuid.uuid1()
    assert seed.encode_stream_message(other, EVENT_ID, b"d")[1] == str(EVENT_ID).encode()


def test_query_reply_decoding_round_trips() -> None:
    frames = seed.encode_query_reply([(EVENT_ID, b"END")], page_full=False)
    events, done = seed.decode_query_reply(frames)
    assert events == [(str(EVENT_ID).encode(), b"END")] and done
    events, done = seed.decode_query_reply(frames[:2])
    assert len(events) == 1 and not done


def test_error_reply_decoding_raises_with_reason() -> None:
    with pytest.raises(seed.SeedReplyError) as caught:
        seed.decode_query_reply([b"ERROR unknown from event id x"])
    assert caught.value.reason == "unknown from event id x"
    with pytest.raises(seed.SeedReplyError):
        seed.check_published([b"ERROR not stored"])
    with pytest.raises(ValueError):
        seed.check_published([b"PUBLISHED", b"extra"])


def test_envelope_of_a_req_client_keeps_identity_and_delimiter() -> None:
    envelope = split_envelope([b"\x00id", b"", b"PUBLISH", b"x"], seed.is_command)
    assert envelope.routing == (b"\x00id", b"")
    assert envelope.body == (b"PUBLISH", b"x")


def test_envelope_without_delimiter_routes_by_identity() -> None:
    envelope = split_envelope([b"\x00id", b"PUBLISH", b"x"], seed.is_command)
    assert envelope.routing == (b"\x00id",)
    assert envelope.body == (b"PUBLISH", b"x")


def test_envelope_with_empty_body() -> None:
    envelope = split_envelope([b"\x00id", b""], seed.is_command)
    assert envelope.body == ()
    assert isinstance(seed.parse_request(envelope.body), seed.BadRequest)


def test_envelope_of_a_bare_dealer_keeps_empty_bounds_in_the_body() -> None:
    envelope = split_envelope([b"\x00id", b"QUERY", b"", b""], seed.is_command)
    assert envelope.routing == (b"\x00id",)
    assert envelope.body == (b"QUERY", b"", b"")


def test_envelope_through_a_broker_keeps_every_routing_frame() -> None:
    envelope = split_envelope([b"broker", b"client", b"", b"QUERY", b"", b""], seed.is_command)
    assert envelope.routing == (b"broker", b"client", b"")
    assert envelope.body == (b"QUERY", b"", b"")


@given(st.binary(min_size=1, max_size=8), st.binary(max_size=64))
def test_a_req_publish_is_what_the_server_takes_it_for_without_the_dispatcher(
    identity: bytes, data: bytes
) -> None:
    """The server recognises ``[identity, "", "PUBLISH", data]`` by shape alone.

    That shortcut stands only while the general path reads those frames the
    same way: a REQ envelope, then a seed PUBLISH of ``data``, whatever the
    data looks like.
    """
    envelope = split_envelope([identity, b"", b"PUBLISH", data], dispatch.is_command)
    assert envelope.routing == (identity, b"")
    request = dispatch.parse_request(envelope.body)
    assert type(request) is seed.Publish and request.data == data
    assert seed_handler.handle(request, "s") == seed_handler.publish(data, "s")


def test_a_publish_becomes_one_event_for_the_default_stream_with_every_default() -> None:
    """The handler builds its append without the NamedTuples' constructors: same values."""
    action = seed_handler.handle(seed.Publish(b"data"), "orders")
    assert isinstance(action, Commit)
    assert type(action.request) is AppendRequest
    assert action.request == AppendRequest("orders", (NewEvent(b"data"),))
    assert type(action.request.events[0]) is NewEvent
