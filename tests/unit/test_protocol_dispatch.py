"""One request socket, three dialects: which parser gets a request body."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from rewind.protocol import dispatch, gorewind, seed, v2
from rewind.protocol.dispatch import Dialect
from rewind.protocol.envelope import split_envelope

EVENT_ID = uuid.UUID("6f1c1f9e-1d2b-11ef-9c1a-0242ac120002")
PING = v2.encode_ping_request(1)


@pytest.mark.parametrize(
    ("body", "dialect"),
    [
        ((), Dialect.SEED),
        ((b"",), Dialect.SEED),
        ((b"PUBLISH", b"data"), Dialect.SEED),
        ((b"QUERY", b"", b""), Dialect.SEED),
        ((b"PUBLISH",), Dialect.SEED),
        ((b"PUBLISH", b"a", b"b", b"c"), Dialect.SEED),
        ((b"QUERY", b"", b"", b"", b""), Dialect.SEED),
        ((b"FETCH", b"s", b"d"), Dialect.SEED),
        ((b"PUBLISH", b"stream", b"data"), Dialect.GOREWIND),
        ((b"QUERY", b"stream", b"", b""), Dialect.GOREWIND),
        (tuple(PING), Dialect.V2),
        ((b"RWD2",), Dialect.V2),
        ((b"RWD3", b"PING", b""), Dialect.V2),
        ((b"RWD10",), Dialect.V2),
        ((b"RWD",), Dialect.SEED),
        ((b"RWDX",), Dialect.SEED),
        ((b"rwd2",), Dialect.SEED),
    ],
)
def test_bodies_are_classified_by_first_frame_and_frame_count(
    body: tuple[bytes, ...], dialect: Dialect
) -> None:
    assert dispatch.classify(body) is dialect


def test_seed_requests_keep_their_meaning_and_errors() -> None:
    # Requests are NamedTuples, equal to any tuple of equal fields: the type
    # says which dialect answers.
    parsed = [
        dispatch.parse_request((b"PUBLISH", b"x")),
        dispatch.parse_request((b"QUERY", b"", b"")),
        dispatch.parse_request((b"PUBLISH",)),
        dispatch.parse_request((b"NOPE",)),
    ]
    expected = [
        seed.Publish(b"x"),
        seed.Query(None, None),
        seed.BadRequest("PUBLISH takes 1 frame (the event), got 0"),
        seed.BadRequest("unknown command NOPE"),
    ]
    assert [(type(request), request) for request in parsed] == [
        (type(request), request) for request in expected
    ]


def test_gorewind_requests_reach_the_gorewind_parser() -> None:
    assert dispatch.parse_request((b"PUBLISH", b"s", b"x")) == gorewind.Publish("s", b"x")
    text_id = str(EVENT_ID).encode()
    assert dispatch.parse_request((b"QUERY", b"s", text_id, b"")) == gorewind.Query(
        "s", EVENT_ID, None
    )
    bad = dispatch.parse_request((b"PUBLISH", b"\xff", b"x"))
    assert isinstance(bad, gorewind.BadRequest)


def test_v2_requests_reach_the_v2_parser() -> None:
    assert dispatch.parse_request(PING) == v2.Ping(1)
    bad = dispatch.parse_request((b"RWD7", b"PING", (5).to_bytes(8, "big")))
    assert isinstance(bad, v2.BadRequest)
    assert bad.code is v2.ErrorCode.UNSUPPORTED_VERSION
    assert bad.request_id == 5


def test_is_command_knows_every_first_frame() -> None:
    assert dispatch.is_command(b"PUBLISH")
    assert dispatch.is_command(b"QUERY")
    assert dispatch.is_command(b"RWD2")
    assert dispatch.is_command(b"RWD3")
    assert not dispatch.is_command(b"")
    assert not dispatch.is_command(b"\x00\x80\x00\x00\x29")


def test_envelopes_split_for_every_dialect() -> None:
    identity = b"\x00\x80\x00\x00\x29"
    with_delimiter = split_envelope([identity, b"", *PING], dispatch.is_command)
    assert with_delimiter.routing == (identity, b"")
    assert list(with_delimiter.body) == PING
    # A bare DEALER: the v2 marker marks the start of the body.
    bare = split_envelope([identity, *v2.encode_list_streams_request(2)], dispatch.is_command)
    assert bare.routing == (identity,)
    assert dispatch.classify(bare.body) is Dialect.V2
    gorewind_bare = split_envelope([identity, b"QUERY", b"s", b"", b""], dispatch.is_command)
    assert dispatch.classify(gorewind_bare.body) is Dialect.GOREWIND


def test_protocol_names_for_info() -> None:
    assert dispatch.PROTOCOLS == ("RWD2", "gorewind", "seed")


@given(st.lists(st.binary(max_size=16), max_size=6))
def test_any_body_is_classified_and_parsed_without_raising(body: list[bytes]) -> None:
    dialect = dispatch.classify(body)
    request = dispatch.parse_request(body)
    expected = {
        Dialect.SEED: seed.Publish | seed.Query | seed.BadRequest,
        Dialect.GOREWIND: gorewind.Publish | gorewind.Query | gorewind.BadRequest,
        Dialect.V2: v2.Request | v2.BadRequest,
    }[dialect]
    assert isinstance(request, expected)


@given(st.sampled_from([b"PUBLISH", b"QUERY", b"RWD2"]), st.lists(st.binary(max_size=8)))
def test_command_words_are_classified_without_raising(first: bytes, rest: list[bytes]) -> None:
    assert isinstance(dispatch.classify([first, *rest]), Dialect)
    dispatch.parse_request([first, *rest])
