"""Configuration: defaults, the three sources, their precedence, and refusals."""

from __future__ import annotations

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
    ],
)
def test_bad_values_name_the_key(flags: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        load_config(flags=flags)


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
