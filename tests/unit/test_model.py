"""The model's helpers behave exactly like the standard library they stand in for."""

from __future__ import annotations

import copy
import os
import pickle
import time
import uuid

import pytest

from rewind.model import event_id_from_bytes, new_event_id


@pytest.mark.parametrize(
    "raw",
    [bytes(16), b"\xff" * 16, new_event_id().bytes, uuid.uuid4().bytes, os.urandom(16)],
)
def test_event_id_from_bytes_is_the_uuid_the_constructor_makes(raw: bytes) -> None:
    expected = uuid.UUID(bytes=raw)
    made = event_id_from_bytes(raw)
    assert type(made) is uuid.UUID
    assert made == expected and hash(made) == hash(expected)
    assert (made.bytes, str(made), repr(made)) == (expected.bytes, str(expected), repr(expected))
    assert (made.version, made.variant, made.is_safe) == (
        expected.version,
        expected.variant,
        expected.is_safe,
    )
    assert pickle.loads(pickle.dumps(made)) == expected
    assert copy.deepcopy(made) == expected
    with pytest.raises(TypeError):
        made.int = 0  # type: ignore[misc]


def test_event_id_from_bytes_reads_any_bytes_like_frame() -> None:
    raw = new_event_id().bytes
    assert event_id_from_bytes(memoryview(raw)) == uuid.UUID(bytes=raw)  # type: ignore[arg-type]


def test_new_event_ids_are_ordinary_type_1_uuids() -> None:
    made = [new_event_id() for _ in range(100)]
    assert all(type(event_id) is uuid.UUID and event_id.version == 1 for event_id in made)
    assert all(uuid.UUID(str(event_id)) == event_id for event_id in made)
    assert len(set(made)) == 100
    assert [event_id.time for event_id in made] == sorted(event_id.time for event_id in made)
    # The timestamp fields hold the time of making, in 100 ns units since 1582-10-15.
    now = time.time_ns() // 100 + 0x01B21DD213814000
    assert all(now - 10_000_000 < event_id.time <= now for event_id in made)
