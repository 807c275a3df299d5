"""Configuration: defaults, the three sources, their precedence, and refusals."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from rewind.errors import ConfigError
from rewind.server.config import ServerConfig, load_config
from rewind.storage import StorageURL, parse_storage_url


def test_defaults_match_the_original_endpoints_and_a_local_sqlite_file() -> None:
    config = load_config()
    assert config.query_bind_endpoints == ("tcp://127.0.0.1:9090",)
    assert config.streaming_bind_endpoints == ("tcp://127.0.0.1:9091",)
    assert config.storage == StorageURL("sqlite", Path("rewind-data/events.db").absolute())
    assert config.log_level == "INFO"
    assert config == ServerConfig()


def test_flags_beat_environment_beat_file_beat_defaults(tmp_path: Path) -> None:
    config_file = tmp_path / "rewind.toml"
    config_file.write_text(
        'storage = "sqlite:from-file.db"\n'
        'log-level = "debug"\n'
        'query-bind-endpoint = ["tcp://127.0.0.1:7000", "ipc:///tmp/rewind.sock"]\n'
        'streaming-bind-endpoint = "tcp://127.0.0.1:7001"\n'
    )
    environ = {"REWIND_STORAGE": "sqlite:from-env.db", "REWIND_LOG_LEVEL": "warning"}
    config = load_config(
        flags={"storage": "memory:", "log-level": None},
        environ=environ,
        config_file=config_file,
    )
    assert config.storage == StorageURL("memory")
    assert config.log_level == "WARNING"
    assert config.query_bind_endpoints == ("tcp://127.0.0.1:7000", "ipc:///tmp/rewind.sock")
    assert config.streaming_bind_endpoints == ("tcp://127.0.0.1:7001",)

    from_env = load_config(environ=environ, config_file=config_file)
    assert from_env.storage.path == Path("from-env.db").absolute()
    from_file = load_config(environ={}, config_file=config_file)
    assert from_file.storage.path == Path("from-file.db").absolute()
    assert from_file.log_level == "DEBUG"


def test_environment_lists_are_comma_or_space_separated() -> None:
    config = load_config(
        environ={"REWIND_QUERY_BIND_ENDPOINT": "tcp://127.0.0.1:1, tcp://127.0.0.1:2"}
    )
    assert config.query_bind_endpoints == ("tcp://127.0.0.1:1", "tcp://127.0.0.1:2")


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        ({"storage": "foo:bar"}, "--storage: storage URL 'foo:bar': unknown scheme 'foo'"),
        ({"storage": "sqlite:"}, "needs a file path"),
        ({"storage": "nothing"}, "has no scheme"),
        ({"storage": "memory:x"}, "memory: takes no path"),
        ({"log-level": "loud"}, "--log-level: 'loud' is not one of"),
        ({"query-bind-endpoint": ["localhost:9090"]}, "is not a ZeroMQ endpoint"),
        ({"default-stream": ""}, "--default-stream"),
        ({"max-event-bytes": "0"}, "--max-event-bytes: 0 is outside 1.."),
        ({"max-event-bytes": "lots"}, "--max-event-bytes: 'lots' is not a whole number"),
        ({"max-message-bytes": "100"}, "--max-message-bytes: 100 is outside 1024.."),
        ({"max-stream-name-bytes": "1025"}, "--max-stream-name-bytes: 1025 is outside 1..1024"),
        ({"max-append-events": "1.5"}, "--max-append-events: '1.5' is not a whole number"),
        ({"pub-high-water-mark": "-1"}, "--pub-high-water-mark: -1 is outside"),
        (
            {"max-event-bytes": "5000", "max-message-bytes": "4096"},
            "max-event-bytes (5000) cannot exceed max-message-bytes (4096)",
        ),
        (
            {"max-stream-name-bytes": "3", "default-stream": "events"},
            "default-stream 'events' is longer than max-stream-name-bytes (3)",
        ),
    ],
)
def test_bad_values_name_the_key(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=re.escape(message) if "(" in message else message):
        load_config(flags=flags)


def test_limits_come_from_flags_environment_and_file(tmp_path: Path) -> None:
    config_file = tmp_path / "rewind.toml"
    config_file.write_text("max-event-bytes = 2048\npub-high-water-mark = 50\n")
    config = load_config(
        flags={"max-append-events": "7"},
        environ={"REWIND_MAX_STREAM_NAME_BYTES": "64", "REWIND_MAX_MESSAGE_BYTES": "1_048_576"},
        config_file=config_file,
    )
    assert (config.max_event_bytes, config.pub_high_water_mark) == (2048, 50)
    assert (config.max_append_events, config.max_stream_name_bytes) == (7, 64)
    assert config.max_message_bytes == 1_048_576


def test_limit_values_in_a_file_must_be_numbers(tmp_path: Path) -> None:
    config_file = tmp_path / "rewind.toml"
    config_file.write_text("max-append-events = true\n")
    with pytest.raises(ConfigError, match="max-append-events: True is not a whole number"):
        load_config(config_file=config_file)


def test_bad_environment_values_name_the_variable() -> None:
    with pytest.raises(ConfigError, match="REWIND_LOG_LEVEL"):
        load_config(environ={"REWIND_LOG_LEVEL": "chatty"})


def test_unknown_file_keys_are_refused(tmp_path: Path) -> None:
    config_file = tmp_path / "rewind.toml"
    config_file.write_text('storage = "memory:"\nstorage-path = "x"\n')
    with pytest.raises(ConfigError, match="unknown key 'storage-path'"):
        load_config(config_file=config_file)


def test_unreadable_or_invalid_files_are_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_config(config_file=tmp_path / "missing.toml")
    broken = tmp_path / "broken.toml"
    broken.write_text("storage = [unclosed\n")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(config_file=broken)


def test_sqlite_urls_accept_relative_absolute_and_triple_slash_paths() -> None:
    assert parse_storage_url("sqlite:data/x.db").path == Path("data/x.db").absolute()
    assert parse_storage_url("sqlite:/var/lib/x.db").path == Path("/var/lib/x.db")
    assert parse_storage_url("sqlite:///var/lib/x.db").path == Path("/var/lib/x.db")
