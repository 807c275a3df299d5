"""``rewind serve``: run the server."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from pathlib import Path

from rewind.cli.common import Commands, fail
from rewind.errors import RewindError

LIMIT_FLAGS = {
    "max-message-bytes": "largest frame accepted; larger senders are disconnected (default 16 MiB)",
    "max-event-bytes": "largest event: data, metadata and type (default 4 MiB)",
    "max-append-events": "most events in one append (default 10000)",
    "max-stream-name-bytes": "longest stream name in UTF-8 bytes (default and maximum 1024)",
    "pub-high-water-mark": "feed messages queued per subscriber before dropping (default 1000)",
    "read-idle-timeout": "seconds a streamed read may wait on its client before it is closed "
    "(default 600)",
    "feed-poll-interval-ms": "how often the feeds look for other servers' commits to a shared "
    "store; PostgreSQL announces them at once, this is the fallback (default 100)",
}


def add_serve(commands: Commands) -> None:
    """Register ``serve``."""
    serve = commands.add_parser(
        "serve",
        help="run the event store server",
        description="Run the Rewind server. Flags override REWIND_* environment "
        "variables, which override the --config file, which overrides the defaults.",
    )
    serve.add_argument(
        "--query-bind-endpoint",
        action="append",
        metavar="ENDPOINT",
        help="where to serve requests (repeatable; default tcp://127.0.0.1:9090)",
    )
    serve.add_argument(
        "--streaming-bind-endpoint",
        action="append",
        metavar="ENDPOINT",
        help="where to broadcast events (repeatable; default tcp://127.0.0.1:9091)",
    )
    serve.add_argument(
        "--storage",
        metavar="URL",
        help="memory: or sqlite:PATH (default sqlite:rewind-data/events.db)",
    )
    serve.add_argument(
        "--v2-streaming-bind-endpoint",
        action="append",
        metavar="ENDPOINT",
        help="where to broadcast the v2 feed (repeatable; default tcp://127.0.0.1:9092)",
    )
    serve.add_argument("--default-stream", metavar="NAME", help="stream for seed PUBLISH")
    serve.add_argument(
        "--log-level",
        metavar="LEVEL",
        help="DEBUG, INFO, WARNING, ERROR or CRITICAL (default INFO)",
    )
    limits = serve.add_argument_group("limits (see docs/operations.md)")
    for key, meaning in LIMIT_FLAGS.items():
        limits.add_argument(f"--{key}", metavar="N", help=meaning)
    serve.add_argument(
        "--curve-secret-key",
        metavar="FILE",
        help="the server's CURVE secret key file (from `rewind keygen`); turns CURVE on",
    )
    serve.add_argument(
        "--curve-allowed-keys",
        metavar="DIR",
        help="directory of the public keys (*.key) of clients with full access",
    )
    serve.add_argument(
        "--curve-read-only-keys",
        metavar="DIR",
        help="directory of the public keys (*.key) of clients that may only read and subscribe",
    )
    serve.add_argument("--config", metavar="FILE", type=Path, help="TOML configuration file")
    serve.set_defaults(handler=run_serve)


def run_serve(args: argparse.Namespace) -> int:
    """Run the server with the configuration from flags, environment and file."""
    from rewind.server.app import run
    from rewind.server.config import env_name, load_config, logging_level

    config_file = args.config
    if config_file is None and env_name("config") in os.environ:
        config_file = Path(os.environ[env_name("config")])
    flags = {
        "query-bind-endpoint": args.query_bind_endpoint,
        "streaming-bind-endpoint": args.streaming_bind_endpoint,
        "v2-streaming-bind-endpoint": args.v2_streaming_bind_endpoint,
        "storage": args.storage,
        "default-stream": args.default_stream,
        "log-level": args.log_level,
        **{key: getattr(args, key.replace("-", "_")) for key in LIMIT_FLAGS},
        "curve-secret-key": args.curve_secret_key,
        "curve-allowed-keys": args.curve_allowed_keys,
        "curve-read-only-keys": args.curve_read_only_keys,
    }
    try:
        config = load_config(flags=flags, environ=os.environ, config_file=config_file)
    except RewindError as exc:
        return fail(str(exc))
    logging.basicConfig(
        level=logging_level(config),
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    try:
        run(config)
    except RewindError as exc:
        return fail(str(exc))
    return 0
