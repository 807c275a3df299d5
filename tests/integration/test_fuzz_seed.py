"""Hostile input in the seed protocol: random PUBLISH/QUERY/garbage against a real server.

One server (SQLite) serves the whole module. Every case must get exactly the
replies docs/protocol.md promises, behind the right envelope, and leave the
server answering a PING on another connection within 100 ms. At the end the
store must hold exactly the events whose PUBLISH was acknowledged, and the
server's memory must not have grown past a bound.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from tests import fuzzkit
from tests.fuzzkit import FuzzTarget

pytestmark = pytest.mark.timeout(300)

WARM_UP_EVENTS = 120
"""More than one QUERY page, so known ids reach across page boundaries."""


@pytest.fixture(scope="module")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    with fuzzkit.running_target("seed", request, tmp_path_factory.mktemp("fuzz-seed")) as target:
        yield target


@pytest.fixture(scope="module")
def known_ids(target: FuzzTarget) -> list[bytes]:
    """Ids of real stored events, so QUERY bounds often name something that exists."""
    for index in range(WARM_UP_EVENTS):
        target.client.publish(f"warm-up-{index}".encode())
    target.begin()
    return [event.id.encode() for event in target.client.query()]


COMMAND_WORDS = [b"PUBLISH", b"QUERY"]
NEAR_MISSES = [
    b"publish",
    b"PUBLISH ",
    b" QUERY",
    b"QUERY\x00",
    b"PUBLISHED",
    b"END",
    b"ERROR",
    b"RWD",
    b"rwd2",
    b"\xff\xfePUBLISH",
]


def payloads() -> st.SearchStrategy[bytes]:
    return fuzzkit.frames_of(st.binary(max_size=64), max_large=2**20)


def garbage() -> st.SearchStrategy[bytes]:
    return fuzzkit.frames_of(st.binary(max_size=24), max_large=4 * 2**20)


def seed_bodies(known: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    """Valid requests, near misses, wrong frame counts, many frames and plain garbage."""
    ids = fuzzkit.uuid_frames(known)
    command = st.one_of(
        st.sampled_from(COMMAND_WORDS), st.sampled_from(NEAR_MISSES), st.binary(max_size=12)
    )
    return st.one_of(
        st.tuples(st.just(b"PUBLISH"), payloads()).map(list),
        st.tuples(st.just(b"QUERY"), ids, ids).map(list),
        st.tuples(
            st.sampled_from(COMMAND_WORDS), st.lists(st.one_of(ids, garbage()), max_size=6)
        ).map(lambda t: [t[0], *t[1]]),
        st.tuples(command, st.lists(garbage(), max_size=6)).map(lambda t: [t[0], *t[1]]),
        st.lists(st.one_of(st.just(b""), st.binary(max_size=4)), min_size=50, max_size=400),
        st.lists(garbage(), max_size=4),
    )


def test_hostile_seed_messages_on_dealers(target: FuzzTarget, known_ids: list[bytes]) -> None:
    """Random bodies behind random (often broken) envelopes, one DEALER message each."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(1200)
    @given(prefix=fuzzkit.envelope_prefixes(), body=seed_bodies(known_ids))
    def case(prefix: list[bytes], body: list[bytes]) -> None:
        assume(prefix or body)  # ZeroMQ cannot send a message of no frames
        exchange = target.exchange([*prefix, *body])
        target.count_case("seed")
        fuzzkit.check_exchange(target, exchange)

    case()
    fuzzkit.finish_module_check(target, started)


def req_bodies(known: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    # A REQ takes one reply per request, so bodies the docs answer with several
    # messages (Gorewind QUERY, v2 reads) are for DEALERs only.
    return seed_bodies(known).filter(lambda body: bool(body) and fuzzkit.dialect_of(body) == "seed")


def test_hostile_seed_messages_on_req(target: FuzzTarget, known_ids: list[bytes]) -> None:
    """The lockstep REQ client: every request gets exactly one reply, so it never wedges."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(600)
    @given(body=req_bodies(known_ids))
    def case(body: list[bytes]) -> None:
        reply = target.req_exchange(body)
        target.count_case("seed")
        fuzzkit.check_seed_frames(target, body, reply)

    case()
    fuzzkit.finish_module_check(target, started)


def test_pipelined_seed_requests_keep_their_order(
    target: FuzzTarget, known_ids: list[bytes]
) -> None:
    """Valid and malformed requests sent back to back are answered in order, one each."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(250)
    @given(bodies=st.lists(req_bodies(known_ids), min_size=2, max_size=8))
    def case(bodies: list[list[bytes]]) -> None:
        replies = target.pipeline(bodies)
        target.count_case("seed")
        for body, reply in zip(bodies, replies, strict=True):
            fuzzkit.check_seed_frames(target, body, reply)

    case()
    fuzzkit.finish_module_check(target, started)
