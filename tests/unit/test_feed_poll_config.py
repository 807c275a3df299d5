"""The ``feed-poll-interval-ms`` setting: default, sources, and refused values."""

from __future__ import annotations

import pytest

from rewind.errors import ConfigError
from rewind.server.config import load_config


def test_the_default_is_100_ms_and_every_source_sets_it() -> None:
    assert load_config(environ={}).feed_poll_interval_ms == 100
    assert load_config(flags={"feed-poll-interval-ms": "2500"}).feed_poll_interval_ms == 2500
    env = {"REWIND_FEED_POLL_INTERVAL_MS": "10_000"}
    assert load_config(environ=env).feed_poll_interval_ms == 10_000


@pytest.mark.parametrize("value", ["0", "-5", "soon", "3600001"])
def test_bad_values_are_refused_naming_the_key(value: str) -> None:
    with pytest.raises(ConfigError, match="feed-poll-interval-ms"):
        load_config(flags={"feed-poll-interval-ms": value})
