"""Server configuration: one typed object, read at the edge.

Sources, strongest first: command-line flags, ``REWIND_*`` environment
variables, a TOML file (``--config``), built-in defaults. Keys are spelled the
same everywhere: ``query-bind-endpoint`` is the flag ``--query-bind-endpoint``,
the environment variable ``REWIND_QUERY_BIND_ENDPOINT`` and the TOML key
``query-bind-endpoint``.
"""

from __future__ import annotations

import logging
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from rewind.errors import ConfigError
from rewind.model import DEFAULT_STREAM
from rewind.storage import StorageURL, parse_storage_url

DEFAULT_QUERY_ENDPOINT = "tcp://127.0.0.1:9090"
DEFAULT_STREAMING_ENDPOINT = "tcp://127.0.0.1:9091"
DEFAULT_V2_STREAMING_ENDPOINT = "tcp://127.0.0.1:9092"
DEFAULT_STORAGE = "sqlite:rewind-data/events.db"

MIB = 1024 * 1024
DEFAULT_MAX_MESSAGE_BYTES = 16 * MIB
DEFAULT_MAX_EVENT_BYTES = 4 * MIB
DEFAULT_MAX_APPEND_EVENTS = 10_000
DEFAULT_MAX_STREAM_NAME_BYTES = 1024
"""The protocol's own bound on names (see ``docs/protocol.md``); lower it, never raise it."""
DEFAULT_PUB_HIGH_WATER_MARK = 1_000
DEFAULT_READ_IDLE_TIMEOUT = 600
DEFAULT_FEED_POLL_INTERVAL_MS = 100

_ENDPOINT = re.compile(r"^(tcp|ipc|inproc|ws|wss)://\S+$")
_LOG_LEVELS = ("DEBUG", "INFO", "WARNING", "ERROR", "CRITICAL")
_STREAM_NAME = re.compile(r"^[^\x00-\x1f\x7f]{1,200}$")


@dataclass(frozen=True, slots=True)
class ServerConfig:
    """Everything ``rewind serve`` needs to know, validated."""

    query_bind_endpoints: tuple[str, ...] = (DEFAULT_QUERY_ENDPOINT,)
    streaming_bind_endpoints: tuple[str, ...] = (DEFAULT_STREAMING_ENDPOINT,)
    v2_streaming_bind_endpoints: tuple[str, ...] = (DEFAULT_V2_STREAMING_ENDPOINT,)
    storage: StorageURL = field(default_factory=lambda: parse_storage_url(DEFAULT_STORAGE))
    log_level: str = "INFO"
    default_stream: str = DEFAULT_STREAM
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES
    """Largest frame ZeroMQ accepts; a peer sending a larger one is disconnected."""
    max_event_bytes: int = DEFAULT_MAX_EVENT_BYTES
    """Largest event: data, metadata and type together."""
    max_append_events: int = DEFAULT_MAX_APPEND_EVENTS
    max_stream_name_bytes: int = DEFAULT_MAX_STREAM_NAME_BYTES
    pub_high_water_mark: int = DEFAULT_PUB_HIGH_WATER_MARK
    """Feed messages queued per subscriber before the feed drops that subscriber's."""
    read_idle_timeout: int = DEFAULT_READ_IDLE_TIMEOUT
    """Seconds an open read may go without sending or receiving credit before it is closed."""
    feed_poll_interval_ms: int = DEFAULT_FEED_POLL_INTERVAL_MS
    """How often the feeds look for events other servers sharing the store committed.

    A store that announces commits (PostgreSQL) wakes the feeds at once; this
    poll is the fallback for announcements missed.
    """

    def __post_init__(self) -> None:
        if self.max_event_bytes > self.max_message_bytes:
            raise ConfigError(
                f"max-event-bytes ({self.max_event_bytes}) cannot exceed "
                f"max-message-bytes ({self.max_message_bytes}): such events could never arrive"
            )
        if len(self.default_stream.encode("utf-8")) > self.max_stream_name_bytes:
            raise ConfigError(
                f"default-stream {self.default_stream!r} is longer than "
                f"max-stream-name-bytes ({self.max_stream_name_bytes})"
            )

    curve_secret_key: Path | None = None
    """The server's CURVE secret key file; setting it turns CURVE on."""
    curve_allowed_keys: Path | None = None
    """Directory of the public keys of clients with full access."""
    curve_read_only_keys: Path | None = None
    """Directory of the public keys of clients that may read and subscribe only."""


def _endpoints(key: str, value: object) -> tuple[str, ...]:
    if isinstance(value, str):
        # The environment carries lists as comma- or space-separated text.
        items = [item for item in re.split(r"[,\s]+", value) if item]
    elif isinstance(value, list | tuple):
        items = list(value)
    else:
        raise ConfigError(f"{key}: expected an endpoint or a list of endpoints")
    if not items:
        raise ConfigError(f"{key}: at least one endpoint is needed")
    for item in items:
        if not isinstance(item, str) or not _ENDPOINT.match(item):
            raise ConfigError(
                f"{key}: {item!r} is not a ZeroMQ endpoint (like tcp://127.0.0.1:9090)"
            )
    return tuple(items)


def _storage(key: str, value: object) -> StorageURL:
    if not isinstance(value, str):
        raise ConfigError(f"{key}: expected a storage URL string")
    try:
        return parse_storage_url(value)
    except ConfigError as exc:
        raise ConfigError(f"{key}: {exc}") from None


def _log_level(key: str, value: object) -> str:
    if not isinstance(value, str) or value.upper() not in _LOG_LEVELS:
        raise ConfigError(f"{key}: {value!r} is not one of {', '.join(_LOG_LEVELS)}")
    return value.upper()


def _stream_name(key: str, value: object) -> str:
    if not isinstance(value, str) or not _STREAM_NAME.match(value):
        raise ConfigError(f"{key}: {value!r} is not a valid stream name")
    return value


def _bounded_integer(low: int, high: int) -> Callable[[str, object], int]:
    """A check for a whole number in ``low..high``; text (from the environment) is parsed."""

    def check(key: str, value: object) -> int:
        number: object = value
        if isinstance(value, str):
            try:
                number = int(value.strip().replace("_", ""))
            except ValueError:
                raise ConfigError(f"{key}: {value!r} is not a whole number") from None
        if isinstance(number, bool) or not isinstance(number, int):
            raise ConfigError(f"{key}: {value!r} is not a whole number")
        if not low <= number <= high:
            raise ConfigError(f"{key}: {number} is outside {low}..{high}")
        return number

    return check


def _curve_secret_key(key: str, value: object) -> Path:
    from rewind.keyfiles import KeyFileError, read_key_pair

    path = _path(key, value)
    try:
        read_key_pair(path)
    except KeyFileError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return path


def _curve_key_directory(key: str, value: object) -> Path:
    from rewind.keyfiles import KeyFileError, read_public_keys

    path = _path(key, value)
    try:
        read_public_keys(path)
    except KeyFileError as exc:
        raise ConfigError(f"{key}: {exc}") from None
    return path


def _path(key: str, value: object) -> Path:
    if isinstance(value, Path):
        return value
    if not isinstance(value, str) or not value:
        raise ConfigError(f"{key}: expected a path")
    return Path(value)


def _check_curve(config: ServerConfig) -> None:
    """The CURVE keys make sense together (each was checked on its own already)."""
    dirs = config.curve_allowed_keys is not None or config.curve_read_only_keys is not None
    if config.curve_secret_key is None:
        if dirs:
            named = "curve-allowed-keys" if config.curve_allowed_keys else "curve-read-only-keys"
            raise ConfigError(f"{named}: needs curve-secret-key (the server's secret key file)")
        return
    if not dirs:
        raise ConfigError(
            "curve-secret-key: needs curve-allowed-keys or curve-read-only-keys "
            "(directories of client public keys), or no client could connect"
        )
    from rewind.server.security import keys_from_config

    keys_from_config(config)  # keys in both directories, or in neither


# Each key: the dataclass field it sets and how its raw value is checked.
_KEYS: dict[str, tuple[str, Callable[[str, object], Any]]] = {
    "query-bind-endpoint": ("query_bind_endpoints", _endpoints),
    "streaming-bind-endpoint": ("streaming_bind_endpoints", _endpoints),
    "v2-streaming-bind-endpoint": ("v2_streaming_bind_endpoints", _endpoints),
    "storage": ("storage", _storage),
    "log-level": ("log_level", _log_level),
    "default-stream": ("default_stream", _stream_name),
    "max-message-bytes": ("max_message_bytes", _bounded_integer(1024, 2**31 - 1)),
    "max-event-bytes": ("max_event_bytes", _bounded_integer(1, 2**31 - 1)),
    "max-append-events": ("max_append_events", _bounded_integer(1, 1_000_000)),
    "max-stream-name-bytes": (
        "max_stream_name_bytes",
        _bounded_integer(1, DEFAULT_MAX_STREAM_NAME_BYTES),
    ),
    "pub-high-water-mark": ("pub_high_water_mark", _bounded_integer(1, 10_000_000)),
    "read-idle-timeout": ("read_idle_timeout", _bounded_integer(1, 86_400)),
    "feed-poll-interval-ms": ("feed_poll_interval_ms", _bounded_integer(1, 3_600_000)),
    "curve-secret-key": ("curve_secret_key", _curve_secret_key),
    "curve-allowed-keys": ("curve_allowed_keys", _curve_key_directory),
    "curve-read-only-keys": ("curve_read_only_keys", _curve_key_directory),
}
assert {name for name, _ in _KEYS.values()} == {f.name for f in fields(ServerConfig)}

ENV_PREFIX = "REWIND_"


def env_name(key: str) -> str:
    """The environment variable for a config key."""
    return ENV_PREFIX + key.upper().replace("-", "_")


def read_config_file(path: Path) -> dict[str, object]:
    """Read a TOML config file, rejecting keys Rewind does not know."""
    try:
        with path.open("rb") as handle:
            data = tomllib.load(handle)
    except FileNotFoundError:
        raise ConfigError(f"config file {path} does not exist") from None
    except OSError as exc:
        raise ConfigError(f"config file {path}: {exc.strerror}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
    unknown = sorted(set(data) - set(_KEYS))
    if unknown:
        raise ConfigError(
            f"config file {path}: unknown key {unknown[0]!r} (known: {', '.join(_KEYS)})"
        )
    return data


def load_config(
    *,
    flags: Mapping[str, object] | None = None,
    environ: Mapping[str, str] | None = None,
    config_file: Path | None = None,
) -> ServerConfig:
    """Merge flags, environment and file (in that precedence) over the defaults.

    ``flags`` maps config keys to values given on the command line; keys whose
    value is ``None`` were not given.
    """
    layers: list[tuple[str, Mapping[str, object]]] = []
    if config_file is not None:
        layers.append((f"config file {config_file}", read_config_file(config_file)))
    if environ is not None:
        from_env = {key: environ[env_name(key)] for key in _KEYS if env_name(key) in environ}
        layers.append(("environment", from_env))
    if flags is not None:
        layers.append(("flag", {k: v for k, v in flags.items() if v is not None}))

    values: dict[str, object] = {}
    for source, layer in layers:
        for key, raw in layer.items():
            if key not in _KEYS:
                raise ConfigError(f"{source}: unknown key {key!r}")
            field_name, check = _KEYS[key]
            label = (
                f"--{key}"
                if source == "flag"
                else (env_name(key) if source == "environment" else f"{source}: {key}")
            )
            values[field_name] = check(label, raw)
    config = ServerConfig(**values)  # type: ignore[arg-type]
    _check_curve(config)
    return config


def logging_level(config: ServerConfig) -> int:
    """The :mod:`logging` level number for the configured level name."""
    level: int = logging.getLevelName(config.log_level)
    return level
