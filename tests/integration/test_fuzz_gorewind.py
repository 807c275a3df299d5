"""Hostile input in the Gorewind dialect: random streams, ids and data against a real server.

Stream names are valid, at the edge of the rules, or broken (empty, NUL,
invalid UTF-8, too long, megabytes long); QUERY bounds are ids of this
stream, of another stream, other spellings of them, or garbage. Every case
must get PUBLISHED with an id, EVENT messages closed by END, or one ERROR,
and the server must keep answering PING within 100 ms.
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

STREAMS = ["fz-a", "fz-b", "fz-\u00e9\u20ac", "default"]
EVENTS_PER_STREAM = 25


@pytest.fixture(scope="module")
def target(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[FuzzTarget]:
    with fuzzkit.running_target(
        "gorewind", request, tmp_path_factory.mktemp("fuzz-gore")
    ) as target:
        yield target


@pytest.fixture(scope="module")
def known_ids(target: FuzzTarget) -> list[bytes]:
    """Ids of events stored in several streams, for QUERY bounds inside and across them."""
    ids = []
    for stream in STREAMS:
        for index in range(EVENTS_PER_STREAM):
            body = [b"PUBLISH", stream.encode(), f"warm-up-{index}".encode()]
            exchange = target.exchange([b"", *body])
            assert exchange.replies[0][0] == b"PUBLISHED", exchange.replies
            ids.append(exchange.replies[0][1])
    target.begin()
    return ids


def data_frames() -> st.SearchStrategy[bytes]:
    return fuzzkit.frames_of(st.binary(max_size=64), max_large=2**20)


def gorewind_bodies(known: list[bytes]) -> st.SearchStrategy[list[bytes]]:
    names = fuzzkit.names(STREAMS)
    ids = fuzzkit.uuid_frames(known)
    return st.one_of(
        st.tuples(st.just(b"PUBLISH"), names, data_frames()).map(list),
        st.tuples(st.just(b"QUERY"), names, ids, ids).map(list),
        # Open bounds on real streams: full results, streamed as EVENT messages.
        st.tuples(st.just(b"QUERY"), st.sampled_from(STREAMS).map(str.encode)).map(
            lambda t: [*t, b"", b""]
        ),
    )


def test_hostile_gorewind_requests(target: FuzzTarget, known_ids: list[bytes]) -> None:
    """Gorewind PUBLISH and QUERY with hostile fields, behind random envelopes."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(1200)
    @given(prefix=fuzzkit.envelope_prefixes(), body=gorewind_bodies(known_ids))
    def case(prefix: list[bytes], body: list[bytes]) -> None:
        exchange = target.exchange([*prefix, *body])
        target.count_case("gorewind")
        # Broken envelopes may turn the body into a seed request; the docs say which.
        fuzzkit.check_exchange(target, exchange)

    case()
    fuzzkit.finish_module_check(target, started)


def test_gorewind_query_results_are_exact(target: FuzzTarget, known_ids: list[bytes]) -> None:
    """QUERY between two ids of one stream returns exactly the events between them."""
    started = time.monotonic()
    per_stream = {
        stream: known_ids[i * EVENTS_PER_STREAM : (i + 1) * EVENTS_PER_STREAM]
        for i, stream in enumerate(STREAMS)
    }

    @fuzzkit.fuzz_settings(300)
    @given(
        stream=st.sampled_from(STREAMS[:3]),
        bounds=st.tuples(
            st.integers(-1, EVENTS_PER_STREAM - 1), st.integers(-1, EVENTS_PER_STREAM - 1)
        ),
    )
    def case(stream: str, bounds: tuple[int, int]) -> None:
        ids = per_stream[stream]
        low, high = bounds
        from_id = b"" if low < 0 else ids[low]
        to_id = b"" if high < 0 else ids[high]
        exchange = target.exchange([b"", b"QUERY", stream.encode(), from_id, to_id])
        target.count_case("gorewind")
        fuzzkit.check_gorewind_reply(target, exchange)
        end = EVENTS_PER_STREAM - 1 if high < 0 else high
        if low >= 0 and high >= 0 and low > high:
            assert len(exchange.replies) == 1 and b"comes after" in exchange.replies[0][0]
            return
        got = [message[1] for message in exchange.replies[:-1]]
        if high < 0:
            # Fuzzing may have published more to this stream after the known ids.
            got = got[: end - low]
        assert got == ids[low + 1 : end + 1]

    case()
    fuzzkit.finish_module_check(target, started)


def test_gorewind_publish_without_delimiter_or_with_extra_routing(
    target: FuzzTarget, known_ids: list[bytes]
) -> None:
    """Envelope edge cases around a valid PUBLISH: stored once, answered behind the prefix."""
    started = time.monotonic()

    @fuzzkit.fuzz_settings(150)
    @given(prefix=fuzzkit.envelope_prefixes(), data=st.binary(max_size=32))
    def case(prefix: list[bytes], data: bytes) -> None:
        # A second empty frame would start the body (docs: the first one ends the envelope).
        assume(prefix != [b""] and prefix.count(b"") <= 1)
        exchange = target.exchange([*prefix, b"PUBLISH", b"fz-env", data])
        target.count_case("gorewind")
        assert exchange.body == [b"PUBLISH", b"fz-env", data]
        fuzzkit.check_gorewind_reply(target, exchange)
        assert exchange.replies[0][0] == b"PUBLISHED"

    case()
    fuzzkit.finish_module_check(target, started)
